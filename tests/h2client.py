"""A small HTTP/2 client over the h2 library: prior knowledge (h2c), the HTTP/1.1 upgrade to h2c, or TLS with
ALPN h2; requests signed as botocore signs them. Several requests may share one connection, at once."""

from __future__ import annotations

import socket
import ssl
from dataclasses import dataclass, field

import h2.config
import h2.connection
import h2.events
from botocore.auth import S3SigV4Auth, SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials


@dataclass
class Response:
    status: int = 0
    headers: dict = field(default_factory=dict)
    body: bytearray = field(default_factory=bytearray)
    reset: bool = False  # the server reset the stream
    ended: bool = False


def signed(endpoint: str, method: str, path: str, *, service: str, credentials: dict, body: bytes = b"",
           headers: dict | None = None) -> tuple[list[tuple[str, str]], bytes]:
    """The request's headers, SigV4-signed (S3's signer for s3), as HTTP/2 sends them, and its body."""
    request = AWSRequest(method=method, url=endpoint + path, data=body, headers=dict(headers or {}))
    auth = S3SigV4Auth if service == "s3" else SigV4Auth
    auth(Credentials(credentials["aws_access_key_id"], credentials["aws_secret_access_key"]), service,
         "us-east-1").add_auth(request)
    prepared = request.prepare()
    authority = endpoint.split("://", 1)[1]
    pseudo = [(":method", method), (":path", path), (":scheme", endpoint.split("://")[0]), (":authority", authority)]
    return pseudo + [(k.lower(), v) for k, v in prepared.headers.items() if k.lower() != "host"], body


class Http2Client:
    def __init__(self, port: int, *, ca_file=None, upgrade_request: bytes | None = None, timeout: float = 30,
                 source: str = "127.0.0.1"):
        """ca_file: TLS with ALPN h2, trusting that certificate; upgrade_request: an HTTP/1.1 request
        asking to upgrade, whose 101 answer makes it stream 1 (read it with ``response(1)``)."""
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout, source_address=(source, 0))
        self.conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True, header_encoding="utf-8"))
        self.responses: dict[int, Response] = {}
        self.pending: dict[int, memoryview] = {}  # request bodies not yet sent in full
        self.alpn = None
        if ca_file is not None:
            context = ssl.create_default_context(cafile=str(ca_file))
            context.set_alpn_protocols(["h2"])
            self.sock = context.wrap_socket(self.sock, server_hostname="127.0.0.1")
            self.alpn = self.sock.selected_alpn_protocol()
        if upgrade_request is None:
            self.conn.initiate_connection()
        else:
            settings = self.conn.initiate_upgrade_connection().decode()
            self.sock.sendall(upgrade_request.replace(b"\r\n\r\n", f"\r\nConnection: Upgrade, HTTP2-Settings\r\n"
                                                      f"Upgrade: h2c\r\nHTTP2-Settings: {settings}\r\n\r\n".encode(), 1))
            self.status_line, rest = self._read_upgrade_answer()
            self.responses[1] = Response()
            self._receive(rest)
        self._flush()

    def _read_upgrade_answer(self) -> tuple[bytes, bytes]:
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError(f"closed during the upgrade: {data!r}")
            data += chunk
        head, rest = data.split(b"\r\n\r\n", 1)
        return head.split(b"\r\n")[0], rest

    def send(self, headers: list[tuple[str, str]], body: bytes = b"") -> int:
        """Start a request; its body is sent as the server's windows allow, while responses are read."""
        stream_id = self.conn.get_next_available_stream_id()
        self.conn.send_headers(stream_id, headers, end_stream=not body)
        self.responses[stream_id] = Response()
        if body:
            self.pending[stream_id] = memoryview(body)
        self._send_pending()
        return stream_id

    def request(self, headers, body: bytes = b"") -> Response:
        return self.response(self.send(headers, body))

    def response(self, stream_id: int) -> Response:
        """Read until the stream's response has ended or been reset."""
        response = self.responses[stream_id]
        while not (response.ended or response.reset):
            data = self.sock.recv(65536)
            if not data:
                raise ConnectionError("the server closed the connection")
            self._receive(data)
        return response

    def _receive(self, data: bytes) -> None:
        for event in self.conn.receive_data(data):
            response = self.responses.get(getattr(event, "stream_id", 0))
            if isinstance(event, h2.events.ResponseReceived):
                response.headers = dict(event.headers)
                response.status = int(response.headers[":status"])
            elif isinstance(event, h2.events.DataReceived):
                response.body += event.data
                self.conn.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
            elif isinstance(event, h2.events.StreamEnded):
                response.ended = True
                self.pending.pop(event.stream_id, None)
            elif isinstance(event, h2.events.StreamReset):
                response.reset = True
                self.pending.pop(event.stream_id, None)  # the server wants no more of it
        self._send_pending()

    def _send_pending(self) -> None:
        for stream_id, view in list(self.pending.items()):
            while view:
                size = min(len(view), self.conn.local_flow_control_window(stream_id),
                           self.conn.max_outbound_frame_size)
                if size <= 0:
                    break
                self.conn.send_data(stream_id, view[:size].tobytes(), end_stream=size == len(view))
                view = view[size:]
            if view:
                self.pending[stream_id] = view
            else:
                del self.pending[stream_id]
        self._flush()

    def _flush(self) -> None:
        data = self.conn.data_to_send()
        if data:
            self.sock.sendall(data)

    def close(self) -> None:
        self.conn.close_connection()
        self._flush()
        self.sock.close()
