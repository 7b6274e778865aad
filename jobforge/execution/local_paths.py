"""Where an object key or a client-given name lands on local disk.

S3 keys are free-form: ``a/../../x``, ``a//etc/x`` and ``a/./b`` are valid
keys. Joined naively onto a directory they name files anywhere on the host, so
every key or client-given name that becomes a local path goes through here,
which maps it under its directory or refuses it with the reason.
"""

from __future__ import annotations

from pathlib import Path

NAME_MAX = 255  # bytes in one path component (Linux and macOS)


class UnsafePath(ValueError):
    """A name that cannot be a path under its directory; ``reason`` says why, after "it"."""

    def __init__(self, name: str, reason: str):
        super().__init__(f"{name!r}: it {reason}")
        self.name = name
        self.reason = reason


def path_under(root: Path, relative: str) -> Path:
    """root joined with a '/'-separated relative name that stays strictly under root."""
    if not relative:
        raise UnsafePath(relative, "is empty")
    if relative.startswith("/"):
        raise UnsafePath(relative, "is an absolute path")
    if "\0" in relative:
        raise UnsafePath(relative, "contains a NUL character")
    segments = relative.split("/")
    for segment in segments:
        if segment == "":
            raise UnsafePath(relative, "has an empty path segment ('//')")
        if segment in (".", ".."):
            raise UnsafePath(relative, f"has a '{segment}' path segment")
        if len(segment.encode("utf-8", "surrogatepass")) > NAME_MAX:
            raise UnsafePath(relative, f"has a path segment longer than {NAME_MAX} bytes")
    return Path(root, *segments)


def path_for_key(root: Path, key: str, prefix: str = "") -> Path | None:
    """Where object ``key`` goes when the objects under ``prefix`` are copied to ``root``.

    None for a folder marker (a key ending in '/', such as the console's
    "Create folder" writes), which holds no file. Raises UnsafePath, naming the
    whole key, for a key that would not stay under root.
    """
    if not key.startswith(prefix):
        raise UnsafePath(key, f"is not under the prefix {prefix!r}")
    relative = key[len(prefix):]
    if relative.startswith("/"):
        raise UnsafePath(key, f"names an absolute path after the prefix {prefix!r}")
    if not relative:
        return None  # the prefix's own folder marker
    marker = relative.endswith("/")
    try:
        path = path_under(root, relative[:-1] if marker else relative)
    except UnsafePath as err:
        raise UnsafePath(key, err.reason) from None
    return None if marker else path
