"""A streamed response stops once the client has gone away."""

import asyncio

from jobforge.server.app import App


def test_stream_stops_and_closes_when_client_disconnects():
    produced, closed, sent = [], [], []
    disconnect = asyncio.Event()

    async def body():
        try:
            for index in range(1000):
                produced.append(index)
                if index == 2:
                    disconnect.set()
                await asyncio.sleep(0)
                yield b"x" * 10
        finally:
            closed.append(True)

    async def receive():
        await disconnect.wait()
        return {"type": "http.disconnect"}

    async def send(message):
        sent.append(message)
        await asyncio.sleep(0)

    asyncio.run(App._send_stream(None, send, body(), receive))
    assert closed == [True]
    assert len(produced) < 10
    assert all(message.get("more_body") for message in sent)  # no final empty chunk for a gone client


def test_stream_runs_to_its_end_without_a_disconnect():
    async def body():
        for _ in range(5):
            yield b"abc"

    async def receive():
        await asyncio.Event().wait()

    sent = []

    async def send(message):
        sent.append(message)

    asyncio.run(App._send_stream(None, send, body(), receive))
    assert b"".join(m["body"] for m in sent) == b"abc" * 5
    assert sent[-1] == {"type": "http.response.body", "body": b""}
