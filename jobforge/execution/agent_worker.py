"""One AgentCore runtime session, inside its confined process and its network namespace of its own.

Started by ``confined_start`` with the session's settings (``code_dir``, ``entry_point``, ``agent_port``,
``endpoint_port``), it runs the agent as AgentCore runs code it was given: ``python ENTRY_POINT`` in the
code's directory, with the standard library and what the runtime's .zip archive holds (``-S``: no
site-packages of this host). The agent serves HTTP on ``agent_port`` of the namespace's loopback, where
nothing outside can reach it; this process bridges the two ways across:

- inbound: for each byte ``c`` the server sends on the control socket, it connects to the agent and passes
  the connected socket back over the control socket (SCM_RIGHTS), so that the server speaks HTTP to the
  agent itself;
- outbound: jobforge's endpoint is ``127.0.0.1:endpoint_port`` on the loopback; each connection accepted
  there is relayed to one the server makes to itself, asked for with a byte ``d`` on the dial socket (the
  first descriptor the server sends).

When the agent exits, this process exits with its status; when the server goes away (the control socket
closes), the agent is ended.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading

RELAY_CHUNK = 65536
CONNECT_SECONDS = 5.0


def _relay(source: socket.socket, sink: socket.socket) -> None:
    try:
        while data := source.recv(RELAY_CHUNK):
            sink.sendall(data)
    except OSError:
        pass
    finally:
        for sock, how in ((sink, socket.SHUT_WR), (source, socket.SHUT_RD)):
            try:
                sock.shutdown(how)
            except OSError:
                pass


def _bridge(accepted: socket.socket, dialed: socket.socket) -> None:
    # A relay passes on each piece as it comes: Nagle's algorithm would hold a response's body back until the
    # agent acknowledged its headers (a delayed ACK, 40 ms) on every call.
    accepted.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    back = threading.Thread(target=_relay, args=(dialed, accepted), daemon=True)
    back.start()
    _relay(accepted, dialed)
    back.join()
    accepted.close()
    dialed.close()


class _Dialer:
    """Connections to jobforge's endpoint, made by the server (this namespace has no route to it)."""

    def __init__(self, dial: socket.socket):
        self.dial = dial
        self.lock = threading.Lock()

    def connect(self) -> socket.socket | None:
        with self.lock:
            self.dial.sendall(b"d")
            message, fds, _, _ = socket.recv_fds(self.dial, 1, 1)
        if not fds:
            return None
        return socket.socket(fileno=fds[0])


def _serve_endpoint(listener: socket.socket, dialer: _Dialer) -> None:
    while True:
        accepted, _ = listener.accept()
        try:
            dialed = dialer.connect()
        except OSError:
            accepted.close()
            return  # the server went away
        if dialed is None:
            accepted.close()
            continue
        threading.Thread(target=_bridge, args=(accepted, dialed), daemon=True).start()


def _exit_with(agent: subprocess.Popen) -> None:
    code = agent.wait()
    how = f"signal {-code}" if code < 0 else f"status {code}"
    print(f"The agent exited with {how}.", file=sys.stderr, flush=True)
    os._exit(code if code >= 0 else 128 - code)


def main(control: socket.socket, settings: dict) -> None:
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    _, fds, _, _ = socket.recv_fds(control, 1, 1)
    dialer = _Dialer(socket.socket(fileno=fds[0]))
    listener = socket.create_server(("127.0.0.1", settings["endpoint_port"]))
    threading.Thread(target=_serve_endpoint, args=(listener, dialer), daemon=True).start()
    code_dir = settings["code_dir"]
    agent = subprocess.Popen([sys.executable, "-S", os.path.join(code_dir, settings["entry_point"])],
                             cwd=code_dir, stdin=subprocess.DEVNULL)
    threading.Thread(target=_exit_with, args=(agent,), daemon=True).start()
    while control.recv(1):
        try:
            connection = socket.create_connection(("127.0.0.1", settings["agent_port"]), timeout=CONNECT_SECONDS)
        except OSError:
            control.sendall(b"e")  # not listening (yet)
            continue
        socket.send_fds(control, [b"c"], [connection.fileno()])
        connection.close()
    agent.kill()
    agent.wait()
