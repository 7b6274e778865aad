"""Every served operation through the protocol layer both ways, with no server process and no handler.

botocore's own client serializes a valid request generated from the operation's input shape and signs it;
the server's protocol layer routes it, parses it and validates it, and must find the same operation and the
same values. Then the server serializes a valid output generated from the output shape, and the client's
response parser must read back the same values.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import io
from urllib.parse import urlsplit

import boto3
import pytest
import urllib3
from botocore import httpchecksum, xform_name
from botocore.awsrequest import AWSResponse
from botocore.config import Config
from botocore.eventstream import EventStream

from model_values import valid_value
from jobforge.api.base import HANDLERS
from jobforge.core import service_models
from jobforge.server import router
from jobforge.server.auth import credential_scope
from jobforge.server.app import load_api_modules
from jobforge.server.protocol.http import HttpRequest
from jobforge.server.protocol.validate import check_input

ENDPOINT = "http://jobforge.invalid:1"
# What each protocol must escape or encode somewhere: URI and query delimiters, XML and JSON markup, a
# percent sign, spaces, non-ASCII and astral characters.
ESCAPED_TEXT = "a b/c?d=e&f+g%2Fh<i>&amp;'j\"k\\l ]]> é€😀"
# Input members botocore checks or rewrites beyond the model, which keep text written from the model instead:
# S3's bucket names (botocore's own pattern), user metadata (ASCII only) and the copy source (percent-encoded).
CLIENT_CHECKED = {("s3", "Bucket"), ("s3", "Metadata"), ("s3", "CopySource")}
CLIENT_CHECKSUMS = httpchecksum._CHECKSUM_CLS  # the algorithms botocore checks a response body with, by name


def served_operations() -> list:
    load_api_modules()
    return [pytest.param(service, operation, id=f"{service}.{operation}") for service, operation in sorted(HANDLERS)]


class Wire:
    """Where a client's request would go on the network: the server's protocol layer, in this process.

    Registered as the client's ``before-send`` hook, it answers the request itself, so nothing is sent.
    """

    def __init__(self, output: dict):
        self.output = output  # what the handler returns
        self.routed = None
        self.params = None

    def __call__(self, request, **_):
        http_request = _server_request(request)
        service, operation = router.route(credential_scope(http_request).service, http_request)
        self.routed = service, operation
        protocol = router.protocol_of(service)
        parsed = protocol.parse(service, operation, http_request)
        parsed.update(_streamed_payload(service, operation, http_request))
        self.params = check_input(service_models.operation(service, operation).input_shape, parsed,
                                  router.protocol_name(service))
        output = {name: _event_source(value) if isinstance(value, EventList) else value
                  for name, value in self.output.items()}
        return _client_response(request.url, protocol.serialize(service, operation, output, "round-trip"))


class EventList(list):
    """The events of an event-stream output, as (event name, members); a handler yields them one by one."""


async def _event_source(events: EventList):
    for event in events:
        yield event


def valid_members(service: str, shape, text: str | None) -> dict:
    """A valid value of an input or output shape, each member written with the text its place can carry."""
    if shape is None:
        return {}
    return {name: valid_value(member, 1, _text_for(service, name, member, text)) for name, member in shape.members.items()}


def _text_for(service: str, name: str, member, text: str | None) -> str | None:
    if text is None or (service, name) in CLIENT_CHECKED:
        return None
    if member.serialization.get("location") in ("header", "headers"):
        return text.encode("ascii", "ignore").decode().strip()  # HTTP header values carry no other text
    return text


def valid_output(service: str, shape, text: str | None) -> dict:
    """A valid output; an event stream carries one of each of its events, and an object body the length and
    checksums its headers state (the client checks them)."""
    output = valid_members(service, shape, text)
    payload = shape.serialization.get("payload") if shape is not None else None
    member = shape.members[payload] if payload else None
    if member is not None and member.serialization.get("eventstream"):
        output[payload] = EventList((name, valid_value(event, free_text=text)) for name, event in member.members.items()
                                    if not event.metadata.get("exception"))
    elif member is not None and member.type_name == "blob":
        body = output[payload]
        for name, header in shape.members.items():
            wire = header.serialization.get("name", "").lower()
            if wire == "content-length":
                output[name] = len(body)
            elif wire.removeprefix("x-amz-checksum-") in CLIENT_CHECKSUMS:
                output[name] = CLIENT_CHECKSUMS[wire.removeprefix("x-amz-checksum-")]().handle(body)
    return output


def _server_request(request) -> HttpRequest:
    """The HTTP request botocore prepared, as the server's app reads it off the socket."""
    url = urlsplit(request.url)
    body = request.body
    if body is None:
        body = b""
    elif hasattr(body, "read"):
        body = body.read()
    elif isinstance(body, str):
        body = body.encode()
    headers = {name.lower(): value.decode() if isinstance(value, bytes) else value
               for name, value in request.headers.items()}
    return HttpRequest(request.method, url.path, url.query, headers, body)


def _streamed_payload(service: str, operation: str, request: HttpRequest) -> dict:
    """An S3 object body: the server streams it to a staging file rather than parsing it."""
    shape = service_models.operation(service, operation).input_shape
    payload = shape.serialization.get("payload") if shape is not None else None
    if service == "s3" and payload and shape.members[payload].type_name == "blob":
        return {payload: request.body}
    return {}


def _client_response(url: str, response) -> AWSResponse:
    """The server's response as botocore reads it off the socket (the app frames a whole body by its length)."""
    headers = dict(response.headers)
    body = response.body
    if isinstance(body, (bytes, bytearray)):
        headers["Content-Length"] = str(len(body))
    else:
        body = asyncio.run(_drain(body))
    raw = urllib3.HTTPResponse(io.BytesIO(bytes(body)), preload_content=False)
    return AWSResponse(url, response.status, headers, raw)


async def _drain(chunks) -> bytes:
    return b"".join([chunk async for chunk in chunks])


@pytest.fixture(scope="module")
def clients():
    session = boto3.Session(aws_access_key_id="AKIAROUNDTRIP", aws_secret_access_key="secret", region_name="us-east-1")
    made = {}

    def client(service: str):
        if service not in made:
            made[service] = session.client(service, endpoint_url=ENDPOINT, config=Config(
                retries={"max_attempts": 1}, s3={"addressing_style": "path"}))
        return made[service]

    return client


def _comparable(shape, value):
    """A value as both sides must hold it: timestamps in UTC, streamed bodies and events read."""
    if value is None:
        return None
    if shape.metadata.get("document"):
        return value
    kind = shape.type_name
    if isinstance(value, EventList):
        return [{name: _comparable(shape.members[name], item)} for name, item in value]
    if isinstance(value, EventStream):
        return [{name: _comparable(shape.members[name], item) for name, item in event.items()} for event in value]
    if kind == "structure":
        # Members outside the model are the client's own additions (S3's ExpiresString beside Expires).
        return {name: _comparable(shape.members[name], item) for name, item in value.items()
                if name in shape.members}
    if kind == "list":
        return [_comparable(shape.member, item) for item in value]
    if kind == "map":
        return {key: _comparable(shape.value, item) for key, item in value.items()}
    if kind == "timestamp":
        return value.astimezone(dt.timezone.utc)
    if kind == "blob":
        return value.read() if hasattr(value, "read") else value
    return value


@pytest.mark.parametrize("text", [None, ESCAPED_TEXT], ids=["pattern text", "text to escape"])
@pytest.mark.parametrize("service,operation", served_operations())
def test_round_trip(clients, service, operation, text):
    model = service_models.service_model(service)
    op = model.operation_model(operation)
    request = valid_members(service, op.input_shape, text)
    wire = Wire(valid_output(service, op.output_shape, text))
    client = clients(service)
    client.meta.events.register_first(f"before-send.{model.service_id.hyphenize()}.{operation}", wire)
    try:
        answer = getattr(client, xform_name(operation))(**request)
    finally:
        client.meta.events.unregister(f"before-send.{model.service_id.hyphenize()}.{operation}", wire)
    assert wire.routed == (service, operation)
    if op.input_shape is not None:
        assert _comparable(op.input_shape, wire.params) == _comparable(op.input_shape, request)
    answer.pop("ResponseMetadata", None)
    if op.output_shape is not None:
        assert _comparable(op.output_shape, answer) == _comparable(op.output_shape, wire.output)
