"""AWS event-stream encoding (``application/vnd.amazon.eventstream``).

One message: a 12-byte prelude (total length, headers length, CRC32 of the
first 8 bytes), headers, payload, and a CRC32 of everything before it. Header
values here are always strings (type 7). botocore has the decoder
(``botocore.eventstream``); this is the matching encoder.
"""

from __future__ import annotations

import binascii
import json
import logging
import struct
from typing import AsyncIterator

from jobforge.server.protocol.wire import to_json

CONTENT_TYPE = "application/vnd.amazon.eventstream"
STRING = 7
log = logging.getLogger("jobforge.eventstream")


def _headers(headers: dict[str, str]) -> bytes:
    out = bytearray()
    for name, value in headers.items():
        raw_name, raw_value = name.encode(), value.encode()
        out += struct.pack("!B", len(raw_name)) + raw_name
        out += struct.pack("!BH", STRING, len(raw_value)) + raw_value
    return bytes(out)


def encode_message(headers: dict[str, str], payload: bytes) -> bytes:
    raw_headers = _headers(headers)
    total = 12 + len(raw_headers) + len(payload) + 4
    prelude = struct.pack("!II", total, len(raw_headers))
    prelude += struct.pack("!I", binascii.crc32(prelude))
    body = prelude + raw_headers + payload
    return body + struct.pack("!I", binascii.crc32(body))


def event_message(stream_shape, event: str, value: dict) -> bytes:
    """An event of the stream's union: its members serialized as JSON, or its one ``eventpayload`` blob as it
    is (sagemaker-runtime's ``PayloadPart.Bytes``)."""
    member = stream_shape.members[event]
    raw = next((name for name, shape in member.members.items() if shape.serialization.get("eventpayload")), None)
    if raw is not None and member.members[raw].type_name == "blob":
        return encode_message({":message-type": "event", ":event-type": event,
                               ":content-type": "application/octet-stream"}, bytes(value.get(raw, b"")))
    payload = json.dumps(to_json(member, value, "unixTimestamp")).encode()
    return encode_message({":message-type": "event", ":event-type": event,
                           ":content-type": "application/json"}, payload)


def exception_message(event: str, message: str) -> bytes:
    """A modelled error inside the stream (``validationException``, …)."""
    return encode_message({":message-type": "exception", ":exception-type": event,
                           ":content-type": "application/json"}, json.dumps({"message": message}).encode())


async def encode_stream(stream_shape, events: AsyncIterator[tuple[str, dict]]) -> AsyncIterator[bytes]:
    """Encode ``(event name, members)`` pairs as they come. An error raised by
    the producer ends the stream with an exception message, as AWS does once
    the HTTP status has been sent."""
    from jobforge.core.errors import ServiceError

    try:
        async for event, value in events:
            yield event_message(stream_shape, event, value)
    except ServiceError as err:
        name = err.code[:1].lower() + err.code[1:]
        yield exception_message(name if name in stream_shape.members else "internalServerException", err.message)
    except Exception as err:  # noqa: BLE001 — the client must see the stream end with an error
        log.exception("event stream failed")
        yield exception_message("internalServerException", f"{type(err).__name__}: {err}")
