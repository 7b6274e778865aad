"""restJson1 (Bedrock, Braket, SageMaker job runtime): method + URI template."""

from __future__ import annotations

import json

from jobforge.api.base import HEADER_MEMBERS_IN_BODY, UNMODELED_HEADERS
from jobforge.core import service_models
from jobforge.core.errors import ServiceError
from jobforge.server.protocol import awsjson, eventstream, rest
from jobforge.server.protocol.http import HttpRequest, HttpResponse
from jobforge.server.protocol.wire import to_json

JSON = "application/json"


def match(service: str, request: HttpRequest) -> str | None:
    return rest.match(service, request)


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
            params[payload] = awsjson.json_document(request.body)
    elif request.body and body_members:
        body = awsjson.json_object(request.body)
        wire_names = {shape.members[n].serialization.get("name", n): n for n in body_members}
        for key, value in body.items():
            if key in wire_names:
                params[wire_names[key]] = value
        for name in HEADER_MEMBERS_IN_BODY.get((service, operation), ()):
            if name not in params and name in body:
                params[name] = body[name]
    return params


def serialize(service: str, operation: str, result: dict, request_id: str) -> HttpResponse:
    op = service_models.operation(service, operation)
    response = HttpResponse(op.http.get("responseCode", 200), [("x-amzn-RequestId", request_id)])
    shape = op.output_shape
    if shape is None:
        response.header("Content-Type", JSON).body = b"{}"
        return response
    payload = shape.serialization.get("payload")
    body_members = rest.bind_output(shape, result, response)
    for name, value in result.get(UNMODELED_HEADERS, {}).items():
        response.header(name, value)
    content_type = response.pop_header("Content-Type")  # set once the body is known
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
        response.body = json.dumps(to_json(shape, body_members, "unixTimestamp")).encode()
    response.header("Content-Type", content_type or JSON)
    return response


def error(service: str, err: ServiceError, request_id: str) -> HttpResponse:
    return awsjson.json_error(service, err, request_id, JSON)
