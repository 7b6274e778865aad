"""Length-prefixed frames on a stream socket: how the server speaks to a user process it hosts.

A frame is a JSON header and a byte body, each preceded by its length (two
big-endian 32-bit numbers first). A user process's standard output is its
log, so its control channel is a socket of its own. Standard library only:
a user process may run under another Python than the server's.
"""

from __future__ import annotations

import json
import socket
import struct

_LENGTHS = struct.Struct(">II")
MAX_HEADER = 1024 * 1024


class BrokenFrame(OSError):
    """The other end sent something that is not a frame."""


def send(sock: socket.socket, header: dict, body: bytes = b"") -> None:
    encoded = json.dumps(header, separators=(",", ":")).encode()
    sock.sendall(_LENGTHS.pack(len(encoded), len(body)) + encoded + body)


def receive(sock: socket.socket, max_body: int) -> tuple[dict, bytes] | None:
    """The next frame; None once the other end has closed the socket."""
    lengths = _read(sock, _LENGTHS.size, at_start=True)
    if lengths is None:
        return None
    header_size, body_size = _LENGTHS.unpack(lengths)
    if header_size > MAX_HEADER or body_size > max_body:
        raise BrokenFrame(f"a frame of {header_size} + {body_size} bytes is past the limits")
    try:
        header = json.loads(_read(sock, header_size))
    except ValueError:
        raise BrokenFrame("a frame's header is not JSON") from None
    if not isinstance(header, dict):
        raise BrokenFrame("a frame's header is not a JSON object")
    return header, _read(sock, body_size)


def _read(sock: socket.socket, size: int, at_start: bool = False) -> bytes | None:
    data = bytearray()
    while len(data) < size:
        chunk = sock.recv(min(size - len(data), 1 << 20))
        if not chunk:
            if at_start and not data:
                return None
            raise BrokenFrame("the socket closed inside a frame")
        data += chunk
    return bytes(data)
