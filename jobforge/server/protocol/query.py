"""awsQuery (IAM, STS): form-encoded in, XML out."""

from __future__ import annotations

from urllib.parse import parse_qsl
from xml.sax.saxutils import escape

from jobforge.core.errors import ServiceError
from jobforge.server.protocol import models
from jobforge.server.protocol.http import HttpRequest, HttpResponse
from jobforge.server.protocol.wire import from_text, to_xml

XML = "text/xml"


def form(request: HttpRequest) -> dict[str, str]:
    if "form" not in request.scratch:
        pairs = request.query()
        if request.body:
            try:
                pairs += parse_qsl(request.body.decode("utf-8"), keep_blank_values=True, strict_parsing=False)
            except UnicodeDecodeError:
                raise ServiceError("MalformedInput", "The request body is not valid form data", 400) from None
        request.scratch["form"] = dict(pairs)
    return request.scratch["form"]


def match(service: str, request: HttpRequest) -> str | None:
    action = form(request).get("Action")
    if action is None:
        return None
    if action not in models.service_model(service).operation_names:
        raise ServiceError("InvalidAction", f"Could not find operation {action} for version "
                           f"{models.service_model(service).api_version}", 400)
    return action


def _present(fields: dict, key: str) -> bool:
    dotted = key + "."
    return key in fields or any(k.startswith(dotted) for k in fields)


def _unflatten(shape, fields: dict, key: str):
    kind = shape.type_name
    if kind == "structure":
        if not _present(fields, key):
            return None
        out = {}
        for name, member in shape.members.items():
            value = _unflatten(member, fields, f"{key}.{member.serialization.get('name', name)}")
            if value is not None:
                out[name] = value
        return out
    if kind == "list":
        if fields.get(key) == "":
            return []
        base = key if shape.serialization.get("flattened") else f"{key}.{shape.member.serialization.get('name', 'member')}"
        items, n = [], 1
        while _present(fields, f"{base}.{n}"):
            items.append(_unflatten(shape.member, fields, f"{base}.{n}"))
            n += 1
        return items or None
    if kind == "map":
        base = key if shape.serialization.get("flattened") else f"{key}.entry"
        out, n = {}, 1
        while _present(fields, f"{base}.{n}"):
            k = fields.get(f"{base}.{n}.{shape.key.serialization.get('name', 'key')}")
            v = _unflatten(shape.value, fields, f"{base}.{n}.{shape.value.serialization.get('name', 'value')}")
            if k is not None:
                out[k] = v
            n += 1
        return out or None
    value = fields.get(key)
    return None if value is None else from_text(shape, value)


def parse(service: str, operation: str, request: HttpRequest) -> dict:
    shape = models.operation(service, operation).input_shape
    if shape is None:
        return {}
    fields = form(request)
    params = {}
    for name, member in shape.members.items():
        value = _unflatten(member, fields, member.serialization.get("name", name))
        if value is not None:
            params[name] = value
    return params


def _namespace(service: str) -> str:
    return models.service_model(service).metadata.get("xmlNamespace", "")


def serialize(service: str, operation: str, result: dict, request_id: str) -> HttpResponse:
    shape = models.operation(service, operation).output_shape
    inner = ""
    if shape is not None:
        inner = to_xml(shape, result, shape.serialization.get("resultWrapper", f"{operation}Result"))
    body = (f'<{operation}Response xmlns="{_namespace(service)}">{inner}'
            f"<ResponseMetadata><RequestId>{request_id}</RequestId></ResponseMetadata></{operation}Response>")
    return HttpResponse(200, [("Content-Type", XML), ("x-amzn-RequestId", request_id)], body.encode())


def error(service: str, err: ServiceError, request_id: str) -> HttpResponse:
    status, _ = models.error_index(service).get(err.code, (400, None))
    body = (f'<ErrorResponse xmlns="{_namespace(service)}"><Error><Type>Sender</Type>'
            f"<Code>{escape(err.code)}</Code><Message>{escape(err.message)}</Message></Error>"
            f"<RequestId>{request_id}</RequestId></ErrorResponse>")
    return HttpResponse(err.status or status, [("Content-Type", XML), ("x-amzn-RequestId", request_id)], body.encode())
