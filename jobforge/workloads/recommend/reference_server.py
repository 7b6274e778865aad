"""A trivial keep-alive HTTP/1.1 server: what the load generator's own ceiling is measured against.

It answers every request with ``200 {"ok": true}`` as soon as it is parsed, from one event loop (uvloop
where present), so that what limits a test against it is the generator. ``answer_delay`` is the seam for
servers that answer later (the tests' servers with known delays and stalls).

    python -m jobforge.workloads.recommend.reference_server [--cores 1,2]   # prints its port, serves until stdin closes
"""

from __future__ import annotations

import argparse
import asyncio
import subprocess
import sys
import threading

import httptools

from jobforge.workloads.recommend.generator_process import event_loop_policy, pin

BODY = b'{"ok": true}'
RESPONSE = (b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n" % len(BODY)) + BODY


class ReferenceProtocol(asyncio.Protocol):
    def __init__(self, server: "ReferenceServer"):
        self._server = server
        self._parser = httptools.HttpRequestParser(self)
        self._transport: asyncio.Transport | None = None

    def connection_made(self, transport):
        self._transport = transport

    def data_received(self, data):
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserError:
            self._transport.close()

    def on_message_complete(self):
        delay = self._server.answer_delay()
        if delay <= 0:
            self._transport.write(RESPONSE)
        else:
            asyncio.get_running_loop().call_later(delay, self._answer)

    def _answer(self):
        if not self._transport.is_closing():
            self._transport.write(RESPONSE)


class ReferenceServer:
    def answer_delay(self) -> float:
        """Seconds to wait before answering the request just parsed."""
        return 0.0

    async def serve(self, host: str = "127.0.0.1") -> None:
        loop = asyncio.get_running_loop()
        server = await loop.create_server(lambda: ReferenceProtocol(self), host, 0, backlog=4096)
        closed = loop.create_future()
        print(server.sockets[0].getsockname()[1], flush=True)
        threading.Thread(target=lambda: (sys.stdin.read(), loop.call_soon_threadsafe(closed.set_result, None)),
                         daemon=True).start()
        async with server:
            await closed


def cores_argument(text: str) -> list[int]:
    return [int(core) for core in text.split(",") if core]


def serve_main(server: ReferenceServer, argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--cores", type=cores_argument, default=None)
    args, _ = parser.parse_known_args(argv)
    pin(args.cores)
    event_loop_policy()
    asyncio.run(server.serve())


class ServerProcess:
    """A server started as ``argv`` that prints its port and serves until its stdin closes."""

    def __init__(self, argv: list[str] | None = None, cores: list[int] | None = None):
        argv = argv or [sys.executable, "-m", __name__]
        if cores:
            argv = [*argv, "--cores", ",".join(map(str, cores))]
        self._process = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        line = self._process.stdout.readline()
        if not line.strip().isdigit():
            self.close()
            raise RuntimeError(f"the server {argv} did not start (exit status {self._process.returncode})")
        self.port = int(line)

    def close(self) -> None:
        if self._process.poll() is None:
            self._process.stdin.close()
            try:
                self._process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()

    def __enter__(self) -> "ServerProcess":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


if __name__ == "__main__":
    serve_main(ReferenceServer())
