"""HTTP/2 connections (RFC 9113) for the ASGI app, framed by the h2 library.

uvicorn serves HTTP/1.1; connections.py hands a connection here when it opens
with the HTTP/2 preface (prior knowledge), negotiates h2 by ALPN over TLS, or
upgrades to h2c. Each stream is one request to the app, with the same ASGI
messages as over HTTP/1.1: the request body arrives as the app reads it (the
client may send only as much as the app has read plus the flow-control
window), a response body is sent as the client's windows allow, and the app
hears ``http.disconnect`` once the client resets the stream or goes away.

The connection is policed like an HTTP/1.1 one: its first request's headers
must arrive within the header timeout, a connection with no open stream is
closed after the idle timeout, and a header list is at most the header limit.
A connection runs at most MAX_STREAMS requests at once, counted until each
request's handling has ended, so that resetting streams does not start more.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Callable
from urllib.parse import unquote

import h2.config
import h2.connection
from h2.connection import ConnectionState
import h2.events
import h2.exceptions
import h2.settings
from h2.errors import ErrorCodes
from h2.settings import SettingCodes

log = logging.getLogger("jobforge.server")

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
MAX_STREAMS = 100
STREAM_WINDOW = 1 << 20  # request bytes a stream may have in flight beyond what the app has read
CONNECTION_WINDOW = 16 << 20  # the same, all streams of a connection together
DEFAULT_WINDOW = 65535  # the connection window every HTTP/2 connection starts with
# Headers that name a property of one HTTP/1.1 connection: not sent on an HTTP/2 stream.
CONNECTION_SPECIFIC = frozenset({b"connection", b"keep-alive", b"proxy-connection", b"transfer-encoding", b"upgrade"})


class Http2Connection(asyncio.Protocol):
    """One HTTP/2 connection, handed over by the HTTP/1.1 protocol that accepted it."""

    def __init__(self, app, server_state, *, header_timeout: float, idle_timeout: float, max_header_bytes: int,
                 client, server, scheme: str, on_lost: Callable[[], None]):
        self.app = app
        self.server_state = server_state  # uvicorn's: its connections and tasks are waited for at shutdown
        self.idle_timeout = idle_timeout
        self.client, self.server, self.scheme = client, server, scheme
        self.on_lost = on_lost
        self.loop = asyncio.get_running_loop()
        self.conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=False, header_encoding=None))
        self.conn.local_settings = h2.settings.Settings(client=False, initial_values={
            SettingCodes.MAX_CONCURRENT_STREAMS: MAX_STREAMS,
            SettingCodes.MAX_HEADER_LIST_SIZE: max_header_bytes,
            SettingCodes.INITIAL_WINDOW_SIZE: STREAM_WINDOW})
        self.conn.decoder.max_header_list_size = max_header_bytes  # h2 otherwise applies it once acknowledged
        self.streams: dict[int, _Stream] = {}  # until each request's handling ends
        self.transport = None
        self.writable = asyncio.Event()
        self.writable.set()
        self.closing = False
        self.header_timeout = header_timeout
        self.clock: asyncio.TimerHandle | None = None

    # -- taking the connection over ------------------------------------------------------------------------

    def take_over(self, transport, initial_data: bytes = b"") -> None:
        """Serve transport from now on: with prior knowledge, initial_data starts with the preface."""
        self._attach(transport)
        self.conn.initiate_connection()
        self._open_window()
        if initial_data:
            self.data_received(initial_data)
        else:
            self._flush()

    def prepare_upgrade(self, settings_header: bytes) -> None:
        """Accept an HTTP/1.1 request's HTTP2-Settings (raises ValueError or h2's ProtocolError when malformed)."""
        self.conn.initiate_upgrade_connection(settings_header)

    def take_over_upgraded(self, transport, request_headers: list[tuple[bytes, bytes]]) -> None:
        """Serve transport, whose HTTP/1.1 request (without a body) was answered 101 and becomes stream 1."""
        self._attach(transport)
        self._open_window()
        self._flush()
        self._start_request(1, request_headers, body_ended=True)

    def _attach(self, transport) -> None:
        self.transport = transport
        self.clock = self.loop.call_later(self.header_timeout, self._close)  # until the first request's headers
        self.server_state.connections.add(self)
        transport.set_protocol(self)

    def _open_window(self) -> None:
        self.conn.increment_flow_control_window(CONNECTION_WINDOW - DEFAULT_WINDOW)

    # -- asyncio.Protocol ----------------------------------------------------------------------------------

    def data_received(self, data: bytes) -> None:
        if self.transport.is_closing():
            return
        try:
            events = self.conn.receive_data(data)
        except h2.exceptions.ProtocolError as err:
            log.debug("HTTP/2 connection from %s closed: %s", self.client, err)
            self.conn.close_connection(getattr(err, "error_code", ErrorCodes.PROTOCOL_ERROR))
            self._flush()
            self.transport.close()
            return
        for event in events:
            self._on_event(event)
        self._flush()

    def connection_lost(self, exc) -> None:
        self.clock.cancel()
        self.server_state.connections.discard(self)
        self.writable.set()  # a sender waiting to write learns the connection is gone
        for stream in self.streams.values():
            stream.close()
        self.on_lost()

    def pause_writing(self) -> None:
        self.writable.clear()

    def resume_writing(self) -> None:
        self.writable.set()

    def shutdown(self) -> None:
        """uvicorn's graceful shutdown: take no new stream, finish those running, then close."""
        self.closing = True
        self.conn.close_connection()
        self._flush()
        self._keep_streams_open()
        if not self.streams:
            self.transport.close()

    def _keep_streams_open(self) -> None:
        """After a GOAWAY either way, the streams already begun may still finish (RFC 9113 6.8), but h2 closes
        the whole connection (python-hyper/h2#1181): reopen it; ``closing`` refuses new streams."""
        self.conn.state_machine.state = ConnectionState.SERVER_OPEN

    # -- frames from the client ----------------------------------------------------------------------------

    def _on_event(self, event) -> None:
        if isinstance(event, h2.events.RequestReceived):
            self._start_request(event.stream_id, event.headers, body_ended=event.stream_ended is not None)
        elif isinstance(event, h2.events.DataReceived):
            stream = self.streams.get(event.stream_id)
            if stream is None or stream.closed:
                self.conn.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
            else:
                stream.received(event.data, event.flow_controlled_length)
        elif isinstance(event, h2.events.StreamEnded):
            if (stream := self.streams.get(event.stream_id)) is not None:
                stream.body_ended = True
                stream.changed.set()
        elif isinstance(event, h2.events.StreamReset):
            if (stream := self.streams.get(event.stream_id)) is not None:
                stream.close()
        elif isinstance(event, h2.events.WindowUpdated):
            for stream in self.streams.values() if event.stream_id == 0 else [self.streams.get(event.stream_id)]:
                if stream is not None:
                    stream.window_opened.set()
        elif isinstance(event, h2.events.RemoteSettingsChanged):
            for stream in self.streams.values():
                stream.window_opened.set()
        elif isinstance(event, h2.events.ConnectionTerminated):  # the client opens no more streams
            self.closing = True
            self._keep_streams_open()
            if not self.streams:
                self.transport.close()

    def _start_request(self, stream_id: int, headers, body_ended: bool) -> None:
        if self.closing or len(self.streams) >= MAX_STREAMS:
            self.conn.reset_stream(stream_id, ErrorCodes.REFUSED_STREAM)
            return
        scope = self._scope(headers)
        if scope is None:  # CONNECT: no resource of this server is a tunnel
            self.conn.send_headers(stream_id, [(b":status", b"405")], end_stream=True)
            return
        self.clock.cancel()
        stream = self.streams[stream_id] = _Stream(self, stream_id, scope, body_ended)
        task = self.loop.create_task(stream.run(self.app))
        self.server_state.tasks.add(task)
        task.add_done_callback(self.server_state.tasks.discard)
        task.add_done_callback(lambda _: self._request_done(stream_id))

    def _scope(self, headers) -> dict | None:
        pseudo, regular = {}, []
        for name, value in headers:
            if name.startswith(b":"):
                pseudo[name] = value
            else:
                regular.append((name, value))
        if b":path" not in pseudo:
            return None
        if b":authority" in pseudo:
            # SigV4 signs the host as "host" (botocore) or as ":authority" (the JavaScript SDK over HTTP/2).
            if not any(name == b"host" for name, _ in regular):
                regular.insert(0, (b"host", pseudo[b":authority"]))
            regular.insert(0, (b":authority", pseudo[b":authority"]))
        raw_path, _, query = pseudo[b":path"].partition(b"?")
        return {"type": "http", "asgi": {"version": "3.0", "spec_version": "2.3"}, "http_version": "2",
                "method": pseudo[b":method"].decode("ascii"), "scheme": self.scheme,
                "path": unquote(raw_path.decode("latin-1")), "raw_path": raw_path, "query_string": query,
                "root_path": "", "headers": regular, "client": self.client, "server": self.server}

    def _request_done(self, stream_id: int) -> None:
        self.streams.pop(stream_id, None)
        if self.transport.is_closing() or self.streams:
            return
        if self.closing:
            self.transport.close()
        else:
            self.clock = self.loop.call_later(self.idle_timeout, self._close)

    # -- to the client -------------------------------------------------------------------------------------

    def _close(self) -> None:
        """Close a connection idle too long, or whose first request's headers did not come in time."""
        if not self.transport.is_closing():
            self.conn.close_connection()
            self._flush()
            self.transport.close()

    def _flush(self) -> None:
        data = self.conn.data_to_send()
        if data and not self.transport.is_closing():
            self.transport.write(data)


class _Stream:
    """One request: the ASGI receive and send of its app call."""

    def __init__(self, connection: Http2Connection, stream_id: int, scope: dict, body_ended: bool):
        self.connection = connection
        self.conn = connection.conn
        self.id = stream_id
        self.scope = scope
        self.body: deque[tuple[bytes, int]] = deque()  # (data, its flow-controlled length)
        self.body_ended = body_ended
        self.body_delivered = False  # the app has had the request's last body message
        self.closed = False  # reset by the client, or the connection is gone
        self.response_started = False
        self.response_complete = False
        self.changed = asyncio.Event()  # body arrived or ended, or the stream closed
        self.window_opened = asyncio.Event()

    async def run(self, app) -> None:
        try:
            await app(self.scope, self.receive, self.send)
        except Exception:
            log.exception("Exception in ASGI application")
        if not self.response_complete:
            if self.response_started:
                self._frame(self.conn.reset_stream, self.id, ErrorCodes.INTERNAL_ERROR)
            else:
                self._frame(self.conn.send_headers, self.id, [(b":status", b"500"), (b"content-length", b"0")],
                            end_stream=True)

    def _frame(self, method, *args, **kwargs) -> None:
        """Send a frame of this stream, unless the client has closed it."""
        if self.closed:
            return
        try:
            method(*args, **kwargs)
        except h2.exceptions.StreamClosedError:
            self.closed = True
            return
        self.connection._flush()

    def received(self, data: bytes, flow_controlled_length: int) -> None:
        self.body.append((data, flow_controlled_length))
        self.changed.set()

    def close(self) -> None:
        self.closed = True
        self._release_unread_body()
        self.changed.set()
        self.window_opened.set()

    def _release_unread_body(self) -> None:
        """Give the connection window back for body the app will never read."""
        while self.body:
            self.conn.acknowledge_received_data(self.body.popleft()[1], self.id)
        self.connection._flush()

    async def receive(self) -> dict:
        while True:
            if self.closed or self.response_complete:
                return {"type": "http.disconnect"}
            if self.body:
                data, length = self.body.popleft()
                self.conn.acknowledge_received_data(length, self.id)
                self.connection._flush()
                more = bool(self.body) or not self.body_ended
                self.body_delivered = not more
                return {"type": "http.request", "body": data, "more_body": more}
            if self.body_ended and not self.body_delivered:
                self.body_delivered = True
                return {"type": "http.request", "body": b"", "more_body": False}
            self.changed.clear()
            await self.changed.wait()

    async def send(self, message: dict) -> None:
        if message["type"] == "http.response.start":
            if self.response_started:
                raise RuntimeError("the response has already started")
            self.response_started = True
            headers = [(b":status", str(message["status"]).encode())]
            headers += [(name.lower(), value) for name, value in message.get("headers", ())
                        if name.lower() not in CONNECTION_SPECIFIC]
            headers += self.connection.server_state.default_headers  # date and server, as over HTTP/1.1
            self._frame(self.conn.send_headers, self.id, headers)
        elif message["type"] == "http.response.body":
            if not self.response_started or self.response_complete:
                raise RuntimeError("a response body outside a response")
            more = message.get("more_body", False)
            await self._send_data(message.get("body", b""), end=not more)
            if not more:
                self.response_complete = True
                self.changed.set()
                if not self.body_ended:
                    # Answered before the body was sent in full: the client may stop sending it (RFC 9113 8.1).
                    self._frame(self.conn.reset_stream, self.id, ErrorCodes.NO_ERROR)
                    self._release_unread_body()

    async def _send_data(self, data: bytes, end: bool) -> None:
        """Send data as the client's flow-control windows and the socket's buffer allow; nothing once closed."""
        view = memoryview(data)
        if not view and not end:
            return
        while not self.closed:
            try:
                size = min(len(view), self.conn.local_flow_control_window(self.id), self.conn.max_outbound_frame_size)
            except h2.exceptions.StreamClosedError:
                self.closed = True
                return
            if size <= 0 and view:
                self.window_opened.clear()
                await self.window_opened.wait()
                continue
            self._frame(self.conn.send_data, self.id, view[:size].tobytes(), end_stream=end and size == len(view))
            view = view[size:]
            if not self.connection.writable.is_set():
                await self.connection.writable.wait()
            if not view:
                return
