"""One endpoint instance's model server, inside its confined process (started by ``confined_start``).

It follows SageMaker's container contract over HTTP/1.1 on a Unix socket in the instance's own directory
(``settings["socket"]``), which only the server and the account's own processes can reach: ``GET /ping``
answers 200 and ``POST /invocations`` answers a prediction (the request's ``Content-Type`` and ``Accept``
are the client's); a request carrying ``X-Jobforge-Response-Stream`` is answered in chunks as the model
produces them (InvokeEndpointWithResponseStream). The socket appears at its path only once the model is
loaded, so a server that answers is a ready one.

It pins itself to the CPUs it is given (its instance type's vCPUs) before any model code runs, and with
``SAGEMAKER_MODEL_SERVER_WORKERS`` above 1 serves from that many processes (each loads the model), as
SageMaker's framework containers do. It ends when the server goes away (its control socket closes) or when
one of its workers dies (the supervisor then starts it again).
"""

from __future__ import annotations

import os
import socket
import socketserver
import sys
import threading
import traceback
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler
from pathlib import Path

STREAM_HEADER = "X-Jobforge-Response-Stream"
MAX_BODY = 6 * 1024 * 1024 + 65536


class _Server(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True
    request_queue_size = 128

    def __init__(self, listener: socket.socket, predictor):
        socketserver.BaseServer.__init__(self, "", _Handler)
        self.socket = listener
        self.predictor = predictor


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def log_message(self, format, *args):  # noqa: A002 (the base class's name)
        pass  # no access log: what the model prints is the endpoint's log

    def address_string(self) -> str:
        return "local"

    def do_GET(self):
        if self.path == "/ping":
            self._answer(200, b"", "text/plain")
        else:
            self._answer(404, b"Not found\n", "text/plain")

    def do_POST(self):
        if self.path != "/invocations":
            self._answer(404, b"Not found\n", "text/plain")
            return
        length = int(self.headers.get("Content-Length") or 0)
        if length > MAX_BODY:
            self._answer(413, b"Request body too large\n", "text/plain")
            return
        body = self.rfile.read(length)
        content_type, accept = self.headers.get("Content-Type"), self.headers.get("Accept")
        predictor = self.server.predictor
        from jobforge.workloads.serving.predictor import ClientError

        try:
            if self.headers.get(STREAM_HEADER):
                parts, kind = predictor.stream(body, content_type, accept)
                self._stream(parts, kind)
                return
            answer, kind = predictor.invoke(body, content_type, accept)
        except ClientError as err:
            self._answer(err.status, str(err).encode(), "text/plain")
            return
        except Exception as err:  # noqa: BLE001 — the model's error is the caller's ModelError, and its log
            traceback.print_exc()
            self._answer(500, f"{type(err).__name__}: {err}".encode(), "text/plain")
            return
        self._answer(200, answer, kind)

    def _answer(self, status: int, body: bytes, content_type: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _stream(self, parts, content_type: str) -> None:
        self.send_response(200)
        self.send_header("Content-Type", content_type)
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        try:
            for part in parts:
                if part:
                    self.wfile.write(b"%x\r\n%s\r\n" % (len(part), part))
                    self.wfile.flush()
        except Exception:  # noqa: BLE001 — the stream is cut short (no last chunk): the caller sees it fail
            traceback.print_exc()
            self.close_connection = True
            return
        self.wfile.write(b"0\r\n\r\n")


def _exit_with_server(control: socket.socket) -> None:
    try:
        while control.recv(1):
            pass
    except OSError:
        pass
    os._exit(0)


def _watch_workers(children: list[int]) -> None:
    pid, status = os.wait()
    print(f"A model server worker (pid {pid}) exited with status {os.waitstatus_to_exitcode(status)}; the model "
          "server restarts.", file=sys.stderr, flush=True)
    os._exit(1)


def main(control: socket.socket, settings: dict) -> None:
    if settings.get("cpus"):
        os.sched_setaffinity(0, settings["cpus"])
    final = Path(settings["socket"])
    loading = final.with_name(final.name + ".loading")
    for path in (final, loading):
        path.unlink(missing_ok=True)
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(str(loading))
    listener.listen(128)
    workers = max(1, int(os.environ.get("SAGEMAKER_MODEL_SERVER_WORKERS") or 1))
    children = []
    for _ in range(workers - 1):  # before any thread or model: each worker loads its own copy
        pid = os.fork()
        if pid == 0:
            children = None
            break
        children.append(pid)
    threading.Thread(target=_exit_with_server, args=(control,), daemon=True).start()
    from jobforge.workloads.serving import frameworks

    code_dir = Path(settings["code_dir"]) if settings.get("code_dir") else None
    predictor = frameworks.load(settings["kind"], Path(settings["model_dir"]), code_dir, settings.get("framework"),
                                dict(os.environ), settings["threads"])
    if children is not None:  # the first worker says the server is ready
        if children:
            threading.Thread(target=_watch_workers, args=(children,), daemon=True).start()
        os.rename(loading, final)
        print(f"The model server is ready ({settings['kind']}, {workers} worker(s)).", flush=True)
    _Server(listener, predictor).serve_forever()
