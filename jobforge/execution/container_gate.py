"""What a container reaches of this host: ports jobforge listens on for it, answering only the container.

A container on the engine's network reaches the host by the engine's alias for it
(``host.containers.internal``, ``host.docker.internal``); jobforge listens there on ports of the
container's own (a Lambda environment's Runtime API, a relay to the server's endpoint). Other containers
could reach those ports too, so each connection is admitted only from the container's own address, which
the engine tells once the container runs: a connection that comes first waits for it.
"""

from __future__ import annotations

import socket
import threading

ADDRESS_WAIT = 60.0  # the longest a connection waits for the engine to tell the container's address
LISTEN_ON = "0.0.0.0"  # every address: the engine's bridge to its containers may not exist before the container
RELAY_CHUNK = 65536


class Gate:
    """Which peer a container's listeners admit: none until the container's address is known, then only it."""

    def __init__(self):
        self._address: str | None = None
        self._settled = threading.Event()

    def open_to(self, address: str) -> None:
        self._address = address
        self._settled.set()

    def close(self) -> None:
        self._address = None
        self._settled.set()

    def admits(self, peer: str) -> bool:
        self._settled.wait(ADDRESS_WAIT)
        return self._address is not None and peer == self._address


def listener() -> socket.socket:
    return socket.create_server((LISTEN_ON, 0), backlog=64)


def close_listener(sock: socket.socket) -> None:
    """Close a listening socket, waking the thread blocked in its accept (close alone does not)."""
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass
    sock.close()


class Relay:
    """Carries the container's connections to the server's endpoint, byte for byte (TLS included)."""

    def __init__(self, gate: Gate, target: tuple[str, int]):
        self.gate = gate
        self.target = target
        self._listening = listener()
        self.port = self._listening.getsockname()[1]
        self._open: set[socket.socket] = set()
        self._lock = threading.Lock()
        self._closed = False
        threading.Thread(target=self._accept, name=f"relay-{self.port}", daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                connection, peer = self._listening.accept()
            except OSError:
                return
            threading.Thread(target=self._carry, args=(connection, peer[0]), daemon=True).start()

    def _carry(self, inside: socket.socket, peer: str) -> None:
        if not self.gate.admits(peer):
            inside.close()
            return
        try:
            outside = socket.create_connection(self.target, timeout=10.0)
        except OSError:
            inside.close()
            return
        outside.settimeout(None)
        for sock in (inside, outside):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        with self._lock:
            if self._closed:
                inside.close()
                outside.close()
                return
            self._open.update((inside, outside))
        other = threading.Thread(target=_pump, args=(outside, inside), daemon=True)
        other.start()
        _pump(inside, outside)
        other.join()
        with self._lock:
            self._open.difference_update((inside, outside))
        inside.close()
        outside.close()

    def close(self) -> None:
        with self._lock:
            self._closed = True
            doomed = list(self._open)
        close_listener(self._listening)
        for sock in doomed:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


def _pump(source: socket.socket, sink: socket.socket) -> None:
    try:
        while chunk := source.recv(RELAY_CHUNK):
            sink.sendall(chunk)
    except OSError:
        pass
    try:
        sink.shutdown(socket.SHUT_WR)
    except OSError:
        pass
