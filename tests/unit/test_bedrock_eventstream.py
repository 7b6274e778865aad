"""The event-stream encoder, checked by botocore's own decoder and parser."""

import asyncio

import botocore.session
import pytest
from botocore.eventstream import EventStream, EventStreamBuffer
from botocore.exceptions import EventStreamError
from botocore.parsers import create_parser

from jobforge.server.protocol import eventstream

MODEL = botocore.session.get_session().get_service_model("bedrock-runtime")
STREAM = MODEL.operation_model("ConverseStream").output_shape.members["stream"]


def test_messages_decode_with_botocore():
    raw = eventstream.encode_message({":message-type": "event", "x": "ü" * 3}, b'{"a": 1}')
    buffer = EventStreamBuffer()
    buffer.add_data(raw[:7])
    assert list(buffer) == []  # an incomplete message waits for more bytes
    buffer.add_data(raw[7:])
    (message,) = list(buffer)
    assert message.headers == {":message-type": "event", "x": "ü" * 3}
    assert message.payload == b'{"a": 1}'


def _parse(chunks: list[bytes]):
    class Raw:
        def stream(self):
            yield from chunks

    return EventStream(Raw(), STREAM, create_parser("rest-json")._event_stream_parser, "ConverseStream")


def _collect(events):
    async def produce():
        for item in events:
            if isinstance(item, Exception):
                raise item
            yield item

    async def run():
        return [chunk async for chunk in eventstream.encode_stream(STREAM, produce())]

    return asyncio.run(run())


def test_converse_stream_events_round_trip():
    events = [("messageStart", {"role": "assistant"}),
              ("contentBlockDelta", {"contentBlockIndex": 0, "delta": {"text": "hello"}}),
              ("contentBlockStop", {"contentBlockIndex": 0}),
              ("messageStop", {"stopReason": "end_turn"}),
              ("metadata", {"usage": {"inputTokens": 3, "outputTokens": 1, "totalTokens": 4},
                            "metrics": {"latencyMs": 12}})]
    chunks = _collect(events)
    # Split messages across reads the way a socket does.
    joined = b"".join(chunks)
    parsed = list(_parse([joined[i:i + 5] for i in range(0, len(joined), 5)]))
    assert parsed == [{name: value} for name, value in events]


def test_an_error_mid_stream_ends_it_with_a_modelled_exception():
    from jobforge.core.errors import ServiceError

    chunks = _collect([("messageStart", {"role": "assistant"}),
                       ServiceError("ValidationException", "bad input")])
    stream = iter(_parse(chunks))
    assert next(stream) == {"messageStart": {"role": "assistant"}}
    with pytest.raises(EventStreamError) as err:
        next(stream)
    assert err.value.response["Error"] == {"Code": "validationException", "Message": "bad input"}
