"""restJson1 (Bedrock, Braket, SageMaker job runtime): method + URI template."""

from __future__ import annotations

import json

from jobforge.core import service_models
from jobforge.core.errors import ServiceError
from jobforge.server.protocol import eventstream, rest
from jobforge.server.protocol.http import HttpRequest, HttpResponse
from jobforge.server.protocol.wire import format_timestamp, to_json

JSON = "application/json"


def match(service: str, request: HttpRequest) -> str | None:
    return rest.match(service, request)


def _json_body(request: HttpRequest):
    try:
        return json.loads(request.body)
    except (ValueError, UnicodeDecodeError):
        raise ServiceError("SerializationException", "The request body is not valid JSON", 400) from None


def parse(service: str, operation: str, request: HttpRequest) -> dict:
    shape = service_models.operation(service, operation).input_shape
    params, body_members = rest.bound_members(service, operation, request)
    if shape is None:
        return params
    payload = shape.serialization.get("payload")
    if payload:
        member = shape.members[payload]
        if member.type_name == "blob":
            params[payload] = request.body
        elif member.type_name == "string":
            params[payload] = request.body.decode("utf-8", "surrogateescape")  # invalid UTF-8 is refused by name
        elif request.body:
            params[payload] = _json_body(request)
    elif request.body and body_members:
        body = _json_body(request)
        if not isinstance(body, dict):
            raise ServiceError("SerializationException", "The request body must be a JSON object", 400)
        wire_names = {shape.members[n].serialization.get("name", n): n for n in body_members}
        for key, value in body.items():
            if key in wire_names:
                params[wire_names[key]] = value
    return params


def _header_text(member, value) -> str:
    if member.type_name == "timestamp":
        return str(format_timestamp(value, member.serialization.get("timestampFormat", "rfc822")))
    if member.type_name == "boolean":
        return "true" if value else "false"
    return str(value)


def serialize(service: str, operation: str, result: dict, request_id: str) -> HttpResponse:
    op = service_models.operation(service, operation)
    response = HttpResponse(op.http.get("responseCode", 200), [("x-amzn-RequestId", request_id)])
    shape = op.output_shape
    if shape is None:
        response.header("Content-Type", JSON).body = b"{}"
        return response
    payload = shape.serialization.get("payload")
    body_members = {}
    content_type = None
    for name, member in shape.members.items():
        value = result.get(name)
        location = member.serialization.get("location")
        wire = member.serialization.get("name", name)
        if location == "header":
            if value is not None:
                if wire.lower() == "content-type":
                    content_type = str(value)
                else:
                    response.header(wire, _header_text(member, value))
        elif location == "headers":
            for key, item in (value or {}).items():
                response.header(wire + key, str(item))
        elif location == "statusCode":
            if value is not None:
                response.status = int(value)
        elif name != payload and value is not None:
            body_members[name] = value
    if payload:
        member = shape.members[payload]
        value = result.get(payload)
        if member.serialization.get("eventstream"):
            # The handler returns an async iterator of (event name, members).
            response.body = eventstream.encode_stream(member, value)
            content_type = eventstream.CONTENT_TYPE
        elif member.type_name in ("blob", "string"):
            response.body = value.encode() if isinstance(value, str) else (value if value is not None else b"")
            content_type = content_type or "application/octet-stream"
        else:
            response.body = json.dumps(to_json(member, value, "unixTimestamp") if value is not None else {}).encode()
    else:
        values = {n: v for n, v in body_members.items()}
        response.body = json.dumps(to_json(shape, values, "unixTimestamp")).encode()
    response.header("Content-Type", content_type or JSON)
    return response


def error(service: str, err: ServiceError, request_id: str) -> HttpResponse:
    status, member = service_models.error_index(service).get(err.code, (400, None))
    body = {"__type": err.code, member or service_models.message_member(service): err.message, **err.fields}
    return HttpResponse(err.status or status, [
        ("Content-Type", JSON), ("x-amzn-RequestId", request_id), ("X-Amzn-ErrorType", err.code),
    ], json.dumps(body).encode())
