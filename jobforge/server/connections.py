"""Connection policing, all in one place, applied as uvicorn's HTTP protocol class.

- A client has ``header_timeout`` seconds, from the moment it connects or starts
  a request, to send that request's line and headers in full: a client that
  sends nothing, or trickles its headers, is closed. Request line and headers
  together are at most MAX_HEADER_BYTES.
- A kept-alive connection idle for ``idle_timeout`` seconds is closed.
- One client address holds at most ``max_per_client`` connections and all
  clients together at most ``max_total``, which stays below the process's limit
  on open files (raised to its hard limit first): a connection beyond either is
  answered 503 and closed at once, before anything of it is read.

The rest of the server never sees a connection refused here.
"""

from __future__ import annotations

import resource
from collections import Counter
from dataclasses import dataclass

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

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
    """uvicorn's httptools protocol under ``limits``; ``open_connections`` is shared by every connection."""

    limits: ConnectionLimits
    open_connections: _OpenConnections

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._client_address: str | None = None  # set once admitted
        self._header_clock = None
        self._header_bytes = 0
        self._request_begun = False  # whether this connection ever started a request

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

    def connection_lost(self, exc) -> None:
        if self._client_address is None:
            return  # refused: never admitted
        self._stop_header_clock()
        self.open_connections.release(self._client_address)
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self._client_address is None:
            return
        awaiting_headers = self._header_clock is not None
        super().data_received(data)
        if awaiting_headers and self._header_clock is not None:  # this data did not finish the headers
            self._header_bytes += len(data)
            if self._header_bytes > MAX_HEADER_BYTES:
                self._refuse(HEADERS_TOO_LARGE)

    def on_message_begin(self) -> None:
        self._request_begun = True
        if self._header_clock is None:
            self._start_header_clock()
        super().on_message_begin()

    def on_headers_complete(self) -> None:
        self._stop_header_clock()
        super().on_headers_complete()

    def _start_header_clock(self) -> None:
        self._header_bytes = 0
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
    """uvicorn.run's keyword arguments that apply the settings' connection limits."""
    open_files = raise_open_file_limit()
    most = settings.max_connections
    if open_files != resource.RLIM_INFINITY:
        most = min(most, max(open_files - RESERVED_FILES, open_files // 2))
    limits = ConnectionLimits(settings.header_timeout, settings.idle_timeout, settings.max_connections_per_client,
                              most)
    return {"http": protocol_class(limits), "timeout_keep_alive": settings.idle_timeout}
