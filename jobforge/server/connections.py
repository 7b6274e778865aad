"""Connections: HTTP/1.1 and HTTP/2 on one port, and their policing, all in one place, applied as uvicorn's
HTTP protocol class.

uvicorn's httptools protocol serves HTTP/1.1. A connection becomes HTTP/2 (http2.py) when it opens with the
HTTP/2 preface (prior knowledge), when TLS negotiates h2 by ALPN, or when a request without a body asks to
upgrade to h2c (it is answered 101 and becomes the connection's first stream). An h2c upgrade asked with a
body is answered over HTTP/1.1 and the connection then closed.

- A client has ``header_timeout`` seconds, from the moment it connects or starts
  a request, to send that request's line and headers in full: a client that
  sends nothing, or trickles its headers, is closed. Request line and headers
  together are at most MAX_HEADER_BYTES.
- A kept-alive connection idle for ``idle_timeout`` seconds is closed.
- One client address holds at most ``max_per_client`` connections and all
  clients together at most ``max_total``, which stays below the process's limit
  on open files (raised to its hard limit first): a connection beyond either is
  answered 503 and closed at once, before anything of it is read.

The rest of the server never sees a connection refused here. http2.py applies the same timeouts and header
limit to HTTP/2 connections, which count against the same caps.
"""

from __future__ import annotations

import resource
from collections import Counter
from dataclasses import dataclass

import httptools
import h2.exceptions
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from jobforge.server.http2 import PREFACE, Http2Connection

MAX_HEADER_BYTES = 64 * 1024
# Open files kept back from connections: the database, staged uploads, object blobs, job processes' pipes.
RESERVED_FILES = 256


@dataclass(frozen=True)
class ConnectionLimits:
    header_timeout: float
    idle_timeout: float
    max_per_client: int
    max_total: int


class _OpenConnections:
    """The connections a server holds: in all, and per client address."""

    def __init__(self):
        self.total = 0
        self.by_address: Counter = Counter()

    def admit(self, address: str, limits: ConnectionLimits) -> bool:
        if self.total >= limits.max_total or self.by_address[address] >= limits.max_per_client:
            return False
        self.total += 1
        self.by_address[address] += 1
        return True

    def release(self, address: str) -> None:
        self.total -= 1
        self.by_address[address] -= 1
        if self.by_address[address] <= 0:
            del self.by_address[address]


def _refusal(status: str, *extra: str) -> bytes:
    """A bodiless answer: an SDK then reads the error from the status alone (and retries a 503)."""
    return ("\r\n".join([f"HTTP/1.1 {status}", "content-length: 0", "connection: close", *extra]) +
            "\r\n\r\n").encode()


TOO_MANY_CONNECTIONS = _refusal("503 Service Unavailable", "retry-after: 1")
HEADERS_TOO_LARGE = _refusal("431 Request Header Fields Too Large")
HEADERS_TOO_SLOW = _refusal("408 Request Timeout")


class _PolicedProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol under ``limits``, handing HTTP/2 connections over to http2.py;
    ``open_connections`` is shared by every connection."""

    limits: ConnectionLimits
    open_connections: _OpenConnections
    alpn_protocols = ["h2", "http/1.1"]  # offered by uvicorn's TLS context

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._client_address: str | None = None  # set once admitted, unset once handed over to HTTP/2
        self._header_clock = None
        self._header_deadline = 0.0
        self._header_bytes = 0
        self._request_begun = False  # whether this connection ever started a request
        self._opening = b""  # the first bytes, while they may still be the HTTP/2 preface; None once decided

    def connection_made(self, transport) -> None:
        peer = transport.get_extra_info("peername")
        address = peer[0] if isinstance(peer, (tuple, list)) and peer else ""
        if not self.open_connections.admit(address, self.limits):
            transport.write(TOO_MANY_CONNECTIONS)
            transport.close()
            return
        self._client_address = address
        super().connection_made(transport)
        self._start_header_clock()
        ssl_object = transport.get_extra_info("ssl_object")
        if ssl_object is not None and ssl_object.selected_alpn_protocol() == "h2":
            self._hand_over(self._http2()).take_over(transport)

    def connection_lost(self, exc) -> None:
        if self._client_address is None:
            return  # refused (never admitted), or served by HTTP/2 since
        self._stop_header_clock()
        self.open_connections.release(self._client_address)
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self._client_address is None:
            return
        if self._opening is not None:
            data = self._opening + data
            if len(data) < len(PREFACE) and PREFACE.startswith(data):
                self._opening = data
                return
            self._opening = None
            if data.startswith(PREFACE):
                self._hand_over(self._http2()).take_over(self.transport, data)
                return
        awaiting_headers = self._header_clock is not None
        super().data_received(data)
        if awaiting_headers and self._header_clock is not None:  # this data did not finish the headers
            self._header_bytes += len(data)
            if self._header_bytes > MAX_HEADER_BYTES:
                self._refuse(HEADERS_TOO_LARGE)

    def on_message_begin(self) -> None:
        self._request_begun = True
        self._opening = None
        if self._header_clock is None:
            self._start_header_clock()
        super().on_message_begin()

    def on_headers_complete(self) -> None:
        self._stop_header_clock()
        super().on_headers_complete()
        if self.parser.should_upgrade() and not self._should_upgrade():
            self.cycle.keep_alive = False  # the parser reads nothing after an upgrade it was asked for

    # -- HTTP/2 ----------------------------------------------------------------------------------------------

    def _should_upgrade(self) -> bool:
        return self._asks_for_h2c() or super()._should_upgrade()

    def _asks_for_h2c(self) -> bool:
        upgrade = self._get_upgrade()
        if upgrade is None or b"h2c" not in [token.strip() for token in upgrade.split(b",")]:
            return False
        headers = dict(self.headers)
        return (b"http2-settings" in headers and b"transfer-encoding" not in headers
                and headers.get(b"content-length", b"0") == b"0")

    def handle_websocket_upgrade(self) -> None:
        if not self._asks_for_h2c():
            super().handle_websocket_upgrade()
            return
        connection = self._http2()
        try:
            connection.prepare_upgrade(dict(self.headers)[b"http2-settings"])
        except (ValueError, h2.exceptions.ProtocolError):
            self.send_400_response("Invalid HTTP2-Settings header")
            return
        self._hand_over(connection)
        self.transport.write(b"HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: h2c\r\n\r\n")
        url = httptools.parse_url(self.url)
        target = url.path + (b"?" + url.query if url.query else b"")
        host = dict(self.headers).get(b"host", b"")
        hop_by_hop = {b"connection", b"upgrade", b"http2-settings", b"keep-alive", b"host"}
        connection.take_over_upgraded(self.transport, [
            (b":method", self.scope["method"].encode()), (b":path", target), (b":scheme", b"http"),
            (b":authority", host), *[(name, value) for name, value in self.headers if name not in hop_by_hop]])

    def _unsupported_upgrade_warning(self) -> None:
        pass  # an upgrade not taken is answered over HTTP/1.1, on a connection then closed

    def _http2(self) -> Http2Connection:
        """An HTTP/2 connection that can serve this one; it releases this connection's place when lost."""
        address = self._client_address
        return Http2Connection(
            self.app, self.server_state, header_timeout=max(self._header_deadline - self.loop.time(), 0),
            idle_timeout=self.limits.idle_timeout, max_header_bytes=MAX_HEADER_BYTES, client=self.client,
            server=self.server, scheme=self.scheme, on_lost=lambda: self.open_connections.release(address))

    def _hand_over(self, connection: Http2Connection) -> Http2Connection:
        """Leave the connection to ``connection`` from now on."""
        self._client_address = None
        self._stop_header_clock()
        self._unset_keepalive_if_required()
        self.connections.discard(self)
        return connection

    def _start_header_clock(self) -> None:
        self._header_bytes = 0
        self._header_deadline = self.loop.time() + self.limits.header_timeout
        self._header_clock = self.loop.call_later(self.limits.header_timeout, self._headers_too_slow)

    def _stop_header_clock(self) -> None:
        if self._header_clock is not None:
            self._header_clock.cancel()
            self._header_clock = None

    def _headers_too_slow(self) -> None:
        self._header_clock = None
        if self._request_begun:
            self._refuse(HEADERS_TOO_SLOW)
        elif not self.transport.is_closing():
            self.transport.close()

    def _refuse(self, response: bytes) -> None:
        self._stop_header_clock()
        if not self.transport.is_closing():
            self.transport.write(response)
            self.transport.close()


def protocol_class(limits: ConnectionLimits) -> type[HttpToolsProtocol]:
    """A protocol class of its own for one server: the connections it counts are that server's alone."""
    return type("PolicedHttpProtocol", (_PolicedProtocol,),
                {"limits": limits, "open_connections": _OpenConnections()})


def raise_open_file_limit() -> int:
    """Raise the soft limit on open files to the hard limit; return the soft limit now in force."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and soft < hard:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
            soft = hard
        except (ValueError, OSError):
            pass
    return soft


def uvicorn_options(settings) -> dict:
    """uvicorn.run's keyword arguments that apply the settings' connection limits and TLS."""
    open_files = raise_open_file_limit()
    most = settings.max_connections
    if open_files != resource.RLIM_INFINITY:
        most = min(most, max(open_files - RESERVED_FILES, open_files // 2))
    limits = ConnectionLimits(settings.header_timeout, settings.idle_timeout, settings.max_connections_per_client,
                              most)
    tls = {"ssl_certfile": str(settings.tls_cert), "ssl_keyfile": str(settings.tls_key)} if settings.tls_cert else {}
    return {"http": protocol_class(limits), "timeout_keep_alive": settings.idle_timeout, **tls}
