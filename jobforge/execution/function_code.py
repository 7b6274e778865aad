"""A Lambda function's code: a .zip archive checked as AWS checks it, kept under the data dir, and unpacked
into each execution environment's directory.

Every member name must be a path under the function's directory (no absolute
name, no ``..``); the members together must unzip to less than AWS's 250 MB.
"""

from __future__ import annotations

import base64
import hashlib
import io
import os
import stat
import zipfile
from pathlib import Path

from jobforge.execution.local_paths import UnsafePath, path_under

MAX_DIRECT_UPLOAD = 50 * 1024 * 1024  # a ZipFile sent in the request itself
MAX_UNZIPPED = 262_144_000


class CodeError(Exception):
    """Code AWS would refuse; the message is AWS's."""


def check(data: bytes, max_unzipped: int = MAX_UNZIPPED) -> None:
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
        members = archive.infolist()
    except (zipfile.BadZipFile, zipfile.LargeZipFile, ValueError, EOFError):
        raise CodeError("Could not unzip uploaded file. Please check your file, then try to upload again.") \
            from None
    if sum(member.file_size for member in members) > max_unzipped:
        raise CodeError(f"Unzipped size must be smaller than {max_unzipped} bytes")
    for member in members:
        name = member.filename.rstrip("/")
        if not name and member.is_dir():
            continue
        try:
            path_under(Path("/"), name)
        except UnsafePath as err:
            raise CodeError(f"Could not unzip uploaded file: the member {err.name} cannot be a file of the "
                            f"function: it {err.reason}.") from None


def sha256(data: bytes) -> str:
    """CodeSha256 as Lambda reports it: the base64 of the archive's SHA-256."""
    return base64.b64encode(hashlib.sha256(data).digest()).decode()


def store(root: Path, function_id: str, data: bytes) -> Path:
    """Keep an archive (checked) under root; its path."""
    folder = root / function_id
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{hashlib.sha256(data).hexdigest()}.zip"
    if not path.exists():
        staged = path.with_suffix(".tmp")
        with open(staged, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(staged, path)
    return path


def extract(archive_path: Path, target: Path) -> None:
    """Unpack an archive into target: read-only to the function (as /var/task is), executables kept so."""
    target.mkdir(mode=0o755, parents=True, exist_ok=True)
    target.chmod(0o755)
    with zipfile.ZipFile(archive_path) as archive:
        for member in archive.infolist():
            name = member.filename.rstrip("/")
            if not name:
                continue
            path = path_under(target, name)
            if member.is_dir():
                path.mkdir(mode=0o755, parents=True, exist_ok=True)
                continue
            path.parent.mkdir(mode=0o755, parents=True, exist_ok=True)
            executable = (member.external_attr >> 16) & stat.S_IXUSR
            with archive.open(member) as source, open(path, "wb") as sink:
                while chunk := source.read(1 << 20):
                    sink.write(chunk)
            path.chmod(0o755 if executable else 0o644)
    for folder in target.rglob("*"):  # made under the server's private umask
        if folder.is_dir() and not folder.is_symlink():
            folder.chmod(0o755)
