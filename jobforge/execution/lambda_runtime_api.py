"""The Lambda Runtime API of one container environment, as Lambda serves it at ``$AWS_LAMBDA_RUNTIME_API``:
what a container image's runtime (the Runtime Interface Client AWS's base images run, or any custom
runtime) polls for events and posts their results to.

- ``GET /2018-06-01/runtime/invocation/next``: the next event, once there is one, with the headers
  ``Lambda-Runtime-Aws-Request-Id``, ``-Deadline-Ms``, ``-Invoked-Function-Arn``, ``-Trace-Id`` and
  ``-Client-Context``; the runtime's first call ends its init phase.
- ``POST /2018-06-01/runtime/invocation/{id}/response``: the result (202); more than 6 MB answers 413 and
  the invocation fails with ``Function.ResponseSizeTooLarge``, as on Lambda.
- ``POST /2018-06-01/runtime/invocation/{id}/error``: an error document (202), its type in
  ``Lambda-Runtime-Function-Error-Type``.
- ``POST /2018-06-01/runtime/init/error``: the init phase failed (202).

An environment runs one invocation at a time: its owner hands each one over (``invoke``) and waits for the
answer. Extensions, the Telemetry API and response streaming are not served (404 naming what is asked).
"""

from __future__ import annotations

import http.server
import json
import re
import secrets
import socket
import threading
import time
from dataclasses import dataclass

from jobforge.execution.container_gate import Gate, close_listener, listener

PREFIX = "/2018-06-01/runtime"
MAX_RESPONSE = 6 * 1024 * 1024
READ_CHUNK = 65536
_ANSWER = re.compile(rf"{PREFIX}/invocation/(?P<id>[^/]+)/(?P<kind>response|error)")


@dataclass
class Answer:
    """What the runtime posted: a result, or an error document with its type."""

    status: str  # "ok" or "error"
    body: bytes
    error_type: str | None = None


@dataclass
class _Invocation:
    request_id: str
    event: bytes
    headers: dict[str, str]
    answer: Answer | None = None


class RuntimeApi:
    def __init__(self, gate: Gate):
        self.gate = gate
        self._changed = threading.Condition()
        self._waiting: _Invocation | None = None  # handed over, not yet taken by the runtime
        self._current: _Invocation | None = None  # taken, not yet answered
        self._init: Answer | str | None = None  # "ok" at the runtime's first /next, an Answer at /init/error
        self._stopped = False
        self._listening = listener()
        self.port = self._listening.getsockname()[1]
        self._connections: set[socket.socket] = set()
        threading.Thread(target=self._accept, name=f"runtime-api-{self.port}", daemon=True).start()

    # -- the owner's side --------------------------------------------------------------
    def wait_init(self, timeout: float) -> Answer | str | None:
        """"ok" once the runtime asks for its first event, the Answer it posted to /init/error, or None (the
        time ran out, or ``stop_waiting`` was called)."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while self._init is None and not self._stopped and (left := deadline - time.monotonic()) > 0:
                self._changed.wait(left)
            return self._init

    def invoke(self, request_id: str, event: bytes, headers: dict[str, str], timeout: float) -> Answer | None:
        """Hand the event to the runtime and wait for its answer; None when the time runs out or waiting stops."""
        invocation = _Invocation(request_id, event, headers)
        deadline = time.monotonic() + timeout
        with self._changed:
            self._waiting = invocation
            self._changed.notify_all()
            while invocation.answer is None and not self._stopped and (left := deadline - time.monotonic()) > 0:
                self._changed.wait(left)
            if self._waiting is invocation:
                self._waiting = None
            return invocation.answer

    def stop_waiting(self) -> None:
        """The environment is gone: wake every wait."""
        with self._changed:
            self._stopped = True
            self._changed.notify_all()

    def close(self) -> None:
        self.stop_waiting()
        close_listener(self._listening)
        with self._changed:
            doomed = list(self._connections)
        for connection in doomed:
            try:
                connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    # -- the runtime's side ------------------------------------------------------------
    def _accept(self) -> None:
        while True:
            try:
                connection, peer = self._listening.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(connection, peer), daemon=True).start()

    def _serve(self, connection: socket.socket, peer) -> None:
        if not self.gate.admits(peer[0]):
            connection.close()
            return
        connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        with self._changed:
            self._connections.add(connection)
        try:
            _Handler(connection, peer, self)
        except OSError:
            pass
        finally:
            with self._changed:
                self._connections.discard(connection)
            connection.close()

    def next_invocation(self) -> _Invocation | None:
        with self._changed:
            if self._init is None:
                self._init = "ok"
                self._changed.notify_all()
            while self._waiting is None and not self._stopped:
                self._changed.wait()
            if self._stopped:
                return None
            self._current, self._waiting = self._waiting, None
            return self._current

    def answered(self, request_id: str, answer: Answer) -> bool:
        with self._changed:
            current = self._current
            if current is None or current.request_id != request_id or current.answer is not None:
                return False
            current.answer = answer
            self._current = None
            self._changed.notify_all()
            return True

    def init_failed(self, answer: Answer) -> None:
        with self._changed:
            if self._init is None:
                self._init = answer
                self._changed.notify_all()


def _error(kind: str, message: str) -> bytes:
    return json.dumps({"errorMessage": message, "errorType": kind}).encode()


def too_large(size: int) -> bytes:
    """The error document of a result over the limit, as Lambda answers the invocation."""
    return _error("Function.ResponseSizeTooLarge", f"Response payload size ({size} bytes) exceeded maximum "
                  f"allowed payload size ({MAX_RESPONSE} bytes).")


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "jobforge-lambda-runtime-api"
    sys_version = ""

    def __init__(self, connection, peer, api: RuntimeApi):
        self.api = api
        super().__init__(connection, peer, None)

    def log_message(self, format, *args):  # noqa: A002  (the base class's signature)
        pass

    def _send(self, status: int, body: bytes, headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.send_header("Content-Type", (headers or {}).get("Content-Type", "application/json"))
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
        self.wfile.flush()

    def _body(self, limit: int) -> tuple[bytes, int]:
        """The request's body, kept up to limit + 1 bytes and read to its end, and its full size."""
        kept, size = bytearray(), 0

        def take(chunk: bytes) -> None:
            nonlocal size
            size += len(chunk)
            if len(kept) <= limit:
                kept.extend(chunk[: limit + 1 - len(kept)])

        if "chunked" in (self.headers.get("Transfer-Encoding") or "").lower():
            while (length := int(self.rfile.readline().split(b";", 1)[0].strip() or b"0", 16)) > 0:
                while length > 0:
                    chunk = self.rfile.read(min(length, READ_CHUNK))
                    if not chunk:
                        raise ConnectionError("the body ended early")
                    take(chunk)
                    length -= len(chunk)
                self.rfile.readline()
            while self.rfile.readline() not in (b"\r\n", b"\n", b""):  # trailers
                pass
        else:
            left = int(self.headers.get("Content-Length") or 0)
            while left > 0:
                chunk = self.rfile.read(min(left, READ_CHUNK))
                if not chunk:
                    raise ConnectionError("the body ended early")
                take(chunk)
                left -= len(chunk)
        return bytes(kept), size

    def do_GET(self):  # noqa: N802  (the base class's name)
        if self.path != f"{PREFIX}/invocation/next":
            return self._not_served()
        invocation = self.api.next_invocation()
        if invocation is None:
            self.close_connection = True
            return
        self._send(200, invocation.event, invocation.headers)

    def do_POST(self):  # noqa: N802
        if self.path == f"{PREFIX}/init/error":
            body, _ = self._body(MAX_RESPONSE)
            self.api.init_failed(Answer("error", body, self.headers.get("Lambda-Runtime-Function-Error-Type")))
            return self._send(202, b'{"status":"OK"}')
        found = _ANSWER.fullmatch(self.path)
        if found is None:
            return self._not_served()
        body, size = self._body(MAX_RESPONSE)
        if found["kind"] == "response" and size > MAX_RESPONSE:
            self.api.answered(found["id"], Answer("error", too_large(size), "Function.ResponseSizeTooLarge"))
            return self._send(413, _error("RequestEntityTooLarge", "Exceeded maximum allowed payload size "
                                                                   f"({MAX_RESPONSE} bytes)."))
        if found["kind"] == "response":
            answer = Answer("ok", body)
        else:
            answer = Answer("error", body, self.headers.get("Lambda-Runtime-Function-Error-Type"))
        if not self.api.answered(found["id"], answer):
            return self._send(400, _error("InvalidRequestID", "Invalid request ID"))
        self._send(202, b'{"status":"OK"}')

    def _not_served(self) -> None:
        self._body(0)
        self._send(404, _error("NotFound", f"{self.command} {self.path} is not served by jobforge's Lambda "
                                           "Runtime API (extensions, the Telemetry API and response streaming "
                                           "are not supported)."))


def invocation_headers(request_id: str, deadline_ms: int, function_arn: str, client_context: dict | None
                       ) -> dict[str, str]:
    """The headers /next answers with."""
    headers = {"Lambda-Runtime-Aws-Request-Id": request_id, "Lambda-Runtime-Deadline-Ms": str(deadline_ms),
               "Lambda-Runtime-Invoked-Function-Arn": function_arn,
               "Lambda-Runtime-Trace-Id": f"Root=1-{int(time.time()):08x}-{secrets.token_hex(12)};"
                                          f"Parent={secrets.token_hex(8)};Sampled=0",
               "Content-Type": "application/json"}
    if client_context is not None:
        headers["Lambda-Runtime-Client-Context"] = json.dumps(client_context)
    return headers

