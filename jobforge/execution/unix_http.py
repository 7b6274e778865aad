"""HTTP/1.1 to a model server over its Unix socket, with kept-alive connections reused."""

from __future__ import annotations

import http.client
import os
import socket
import threading
from pathlib import Path

MAX_SOCKET_PATH = 100  # sun_path holds 108 bytes; a longer path is reached through its directory's descriptor


class UnixConnection(http.client.HTTPConnection):
    def __init__(self, path: Path, timeout: float):
        super().__init__("localhost", timeout=timeout)
        self.socket_path = path

    def connect(self):
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        path = str(self.socket_path)
        try:
            if len(path) < MAX_SOCKET_PATH:
                sock.connect(path)
            else:
                folder = os.open(self.socket_path.parent, os.O_PATH)
                try:
                    sock.connect(f"/proc/self/fd/{folder}/{self.socket_path.name}")
                finally:
                    os.close(folder)
        except BaseException:
            sock.close()
            raise
        self.sock = sock


class ConnectionPool:
    """Idle connections to one socket, taken for a request and given back once its answer is read."""

    def __init__(self, path: Path, timeout: float, keep: int = 64):
        self.path, self.timeout, self.keep = path, timeout, keep
        self._idle: list[UnixConnection] = []
        self._lock = threading.Lock()

    def take(self) -> UnixConnection:
        with self._lock:
            if self._idle:
                return self._idle.pop()
        return UnixConnection(self.path, self.timeout)

    def give_back(self, connection: UnixConnection) -> None:
        with self._lock:
            if len(self._idle) < self.keep:
                self._idle.append(connection)
                return
        connection.close()

    def close(self) -> None:
        with self._lock:
            idle, self._idle = self._idle, []
        for connection in idle:
            connection.close()
