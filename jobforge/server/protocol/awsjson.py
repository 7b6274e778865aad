"""awsJson1.0 and 1.1 (SageMaker, CloudWatch Logs, CloudWatch metrics): POST / with X-Amz-Target."""

from __future__ import annotations

import json
import zlib

from jobforge.core import service_models
from jobforge.core.errors import ServiceError
from jobforge.server.protocol.http import HttpRequest, HttpResponse
from jobforge.server.protocol.wire import to_json


def content_type(service: str) -> str:
    return f"application/x-amz-json-{service_models.service_model(service).metadata.get('jsonVersion', '1.1')}"


def match(service: str, request: HttpRequest) -> str | None:
    target = request.headers.get("x-amz-target")
    if not target:
        return None
    prefix, _, name = target.rpartition(".")
    model = service_models.service_model(service)
    if prefix != model.metadata.get("targetPrefix") or name not in model.operation_names:
        raise ServiceError("UnknownOperationException", f"Unknown operation {target}", 400)
    return name


# The most a gzip-encoded body may inflate to (botocore compresses the bodies of operations whose model asks
# for it, CloudWatch's PutMetricData among them, once they pass 10 KB; AWS takes 1 MB of such a request).
INFLATED_BODY = 1024 * 1024


def parse(service: str, operation: str, request: HttpRequest) -> dict:
    body = request.body or b"{}"
    if request.headers.get("content-encoding", "").strip().lower() == "gzip":
        body = _gunzip(body)
    return json_object(body)


def _gunzip(body: bytes) -> bytes:
    inflater = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)
    try:
        out = inflater.decompress(body, INFLATED_BODY)
    except zlib.error:
        raise ServiceError("SerializationException", "The request body is not valid gzip", 400) from None
    if inflater.unconsumed_tail:
        raise ServiceError("RequestEntityTooLarge", f"The request body inflates to more than {INFLATED_BODY} "
                           "bytes", 413)
    if not inflater.eof:
        raise ServiceError("SerializationException", "The request body is not valid gzip", 400)
    return out


def json_document(body: bytes):
    """A request body read as JSON (restJson1 reads its bodies the same way)."""
    try:
        return json.loads(body)
    except (ValueError, UnicodeDecodeError):
        raise ServiceError("SerializationException", "The request body is not valid JSON", 400) from None


def json_object(body: bytes) -> dict:
    document = json_document(body)
    if not isinstance(document, dict):
        raise ServiceError("SerializationException", "The request body must be a JSON object", 400)
    return document


def serialize(service: str, operation: str, result: dict, request_id: str) -> HttpResponse:
    shape = service_models.operation(service, operation).output_shape
    body = to_json(shape, result, "unixTimestamp") if shape is not None else {}
    return HttpResponse(200, [("Content-Type", content_type(service)), ("x-amzn-RequestId", request_id)],
                        json.dumps(body).encode())


def error(service: str, err: ServiceError, request_id: str) -> HttpResponse:
    return json_error(service, err, request_id, content_type(service))


def json_error(service: str, err: ServiceError, request_id: str, content_type: str) -> HttpResponse:
    """An error as both JSON protocols write it: the code in ``__type`` and the header, the message under the
    member the model names."""
    status, member = service_models.error_index(service).get(err.code, (400, None))
    body = {"__type": err.code, member or service_models.message_member(service): err.message, **err.fields}
    return HttpResponse(err.status or status, [
        ("Content-Type", content_type), ("x-amzn-RequestId", request_id), ("X-Amzn-ErrorType", err.code),
    ], json.dumps(body).encode())
