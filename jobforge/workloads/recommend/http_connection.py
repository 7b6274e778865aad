"""Keep-alive HTTP/1.1 client connections for the load generator: one request in flight on each.

A request is sent as prepared bytes and its answer is parsed by httptools (llhttp, the parser uvicorn uses);
the body of a success is not kept, the first bytes of an error's body are, to say what went wrong. The protocol
class avoids the stream layer's per-request coroutines, which is what lets one core drive tens of thousands of
requests a second.
"""

from __future__ import annotations

import asyncio
import os
import socket

import httptools

ERROR_BODY_BYTES = 512
MAX_SOCKET_PATH = 100  # sun_path holds 108 bytes; a longer path is reached through its folder's descriptor
CONNECT_SECONDS = 5.0


class Connection(asyncio.Protocol):
    def __init__(self, loop: asyncio.AbstractEventLoop):
        self._loop = loop
        self._parser = httptools.HttpResponseParser(self)
        self._transport: asyncio.Transport | None = None
        self._reply: asyncio.Future | None = None
        self._status = 0
        self._error_body = bytearray()
        self.open = False
        self.sent_at = 0.0  # when the request in flight was written, for the generator's request timeout

    # -- asyncio.Protocol
    def connection_made(self, transport):
        self._transport = transport
        self.open = True

    def data_received(self, data):
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserError as err:
            self.abort(ConnectionError(f"malformed HTTP response: {err}"))

    def connection_lost(self, exc):
        self.open = False
        self._fail(exc or ConnectionResetError("the server closed the connection"))

    # -- httptools callbacks
    def on_headers_complete(self):
        self._status = self._parser.get_status_code()

    def on_body(self, body: bytes):
        if self._status >= 400 and len(self._error_body) < ERROR_BODY_BYTES:
            self._error_body += body[:ERROR_BODY_BYTES - len(self._error_body)]

    def on_message_complete(self):
        reply, self._reply = self._reply, None
        if reply is not None and not reply.done():
            reply.set_result((self._status, bytes(self._error_body)))
        self._error_body.clear()
        if not self._parser.should_keep_alive():
            self.close()

    # -- use
    def send(self, request: bytes, now: float) -> asyncio.Future:
        """Write one prepared request; the future gives (status, first bytes of an error's body)."""
        self._reply = self._loop.create_future()
        self.sent_at = now
        self._transport.write(request)
        return self._reply

    @property
    def busy(self) -> bool:
        return self._reply is not None

    def abort(self, error: Exception) -> None:
        """End the connection, failing the request in flight with error."""
        self._fail(error)
        self.close()

    def close(self) -> None:
        self.open = False
        if self._transport is not None:
            self._transport.close()

    def _fail(self, error: BaseException) -> None:
        reply, self._reply = self._reply, None
        if reply is not None and not reply.done():
            reply.set_exception(error)


async def connect(host: str, port: int, unix_path: str | None = None) -> Connection:
    """A connection to host:port over TCP, or to the Unix socket at unix_path."""
    loop = asyncio.get_running_loop()
    if unix_path is not None:
        _, connection = await loop.create_unix_connection(lambda: Connection(loop), sock=_unix_socket(unix_path))
    else:
        _, connection = await loop.create_connection(lambda: Connection(loop), host, port)
    return connection


def _unix_socket(path: str) -> socket.socket:
    """A socket connected to the Unix socket at path (a local connect answers at once, or the backlog is full)."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(CONNECT_SECONDS)
    try:
        if len(path) < MAX_SOCKET_PATH:
            sock.connect(path)
        else:
            folder = os.open(os.path.dirname(path), os.O_PATH)
            try:
                sock.connect(f"/proc/self/fd/{folder}/{os.path.basename(path)}")
            finally:
                os.close(folder)
    except BaseException:
        sock.close()
        raise
    sock.setblocking(False)
    return sock


def prepare_request(authority: str, path: str, body: bytes, content_type: str,
                    headers: dict[str, str] | None = None) -> bytes:
    """The bytes of one POST, written as they are for every request that carries this body."""
    lines = [f"POST {path} HTTP/1.1", f"Host: {authority}", f"Content-Type: {content_type}",
             f"Content-Length: {len(body)}"]
    lines += [f"{name}: {value}" for name, value in (headers or {}).items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body
