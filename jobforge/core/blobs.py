"""Where object bytes live: immutable blobs named by random ids.

A body is first written to a staging file (hashed while it is written, then
fsynced); ``commit`` makes it a blob. Nothing refers to a blob until the
index row naming it is committed, so a crash at any instant leaves at most an
unreferenced file, never a visible partial object. Two backends: a local
directory (the default) and any S3 endpoint through boto3.

Bytes are read through an open blob (``open``): a blob deleted while it is
open stays readable until it is closed, so a download that has started
returns the whole object even if its key is overwritten or deleted meanwhile.
"""

from __future__ import annotations

import hashlib
import io
import os
import threading
import uuid
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator
from urllib.parse import parse_qs, urlparse

from jobforge.core import checksums

READ_CHUNK = 1024 * 1024


@dataclass
class BlockingBody:
    """A response body read by blocking calls: the server steps ``chunks`` off its event loop, then calls
    ``close`` (if given) once the response is sent or abandoned."""

    chunks: Iterator[bytes]
    close: Callable[[], None] | None = None


@dataclass
class StagedBody:
    """A fully received body: where it is (a staging file, or in memory) and what it hashes to."""

    path: Path | None
    size: int
    md5: str  # hex
    sha256: str | None  # hex, when asked for
    checksums: dict[str, str] = field(default_factory=dict)  # algorithm → base64
    data: bytes | None = None

    def discard(self) -> None:
        if self.path is not None:
            self.path.unlink(missing_ok=True)

    def __del__(self):
        # A body nobody committed (the request failed after it was received) must not linger;
        # commit moves the file away, so this is a no-op for stored bodies.
        self.discard()


class StagingFile:
    """A body being written (to a staging file, or to memory when path is None), hashed as it goes."""

    def __init__(self, path: Path | None, algorithms=(), sha256: bool = False):
        self.path = path
        self.file = open(path, "wb") if path is not None else io.BytesIO()
        self.size = 0
        self.md5 = hashlib.md5(usedforsecurity=False)
        self.sha256 = hashlib.sha256() if sha256 else None
        self.digests = {algorithm: checksums.new(algorithm) for algorithm in algorithms}

    def write(self, data: bytes) -> None:
        self.file.write(data)
        self.size += len(data)
        self.md5.update(data)
        if self.sha256 is not None:
            self.sha256.update(data)
        for digest in self.digests.values():
            digest.update(data)

    def finish(self) -> StagedBody:
        data = None
        if self.path is None:
            data = self.file.getvalue()
        else:
            self.file.flush()
            os.fsync(self.file.fileno())
        self.file.close()
        return StagedBody(self.path, self.size, self.md5.hexdigest(),
                          self.sha256.hexdigest() if self.sha256 is not None else None,
                          {name: digest.b64digest() for name, digest in self.digests.items()}, data)

    def abort(self) -> None:
        self.file.close()
        if self.path is not None:
            self.path.unlink(missing_ok=True)


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _check_id(blob: str) -> str:
    if len(blob) != 32 or not all(c in "0123456789abcdef" for c in blob):
        raise ValueError(f"Not a blob id: {blob!r}")
    return blob


class StagingArea:
    """Where both backends write bodies before they become blobs: files in ``root/tmp`` on this machine."""

    def __init__(self, root: Path):
        self.tmp = Path(root) / "tmp"
        self.tmp.mkdir(parents=True, exist_ok=True)

    def sweep_staging(self) -> None:
        """Drop what uploads cut short by a crash left behind (run before serving)."""
        for stale in self.tmp.iterdir():
            stale.unlink(missing_ok=True)

    def staging_path(self) -> Path:
        return self.tmp / uuid.uuid4().hex

    def staging(self, algorithms=(), sha256: bool = False) -> StagingFile:
        return StagingFile(self.staging_path(), algorithms, sha256)


class LocalBlobs(StagingArea):
    """Blobs as files under ``root/blobs/<2 hex>/<32 hex>``; staging in ``root/tmp``."""

    def __init__(self, root: Path):
        super().__init__(root)
        self.data = Path(root) / "blobs"
        self.data.mkdir(parents=True, exist_ok=True)

    def path(self, blob: str) -> Path:
        return self.data / blob[:2] / _check_id(blob)

    def commit(self, staged: Path) -> str:
        blob = uuid.uuid4().hex
        target = self.path(blob)
        target.parent.mkdir(exist_ok=True)
        os.replace(staged, target)
        _fsync_dir(target.parent)
        return blob

    def open(self, blob: str) -> "OpenFile":
        """The blob held open (FileNotFoundError once it is deleted)."""
        return OpenFile(self, blob)

    def delete(self, blob: str) -> None:
        # An open blob keeps its bytes: POSIX frees an unlinked file's data when its last descriptor closes.
        self.path(blob).unlink(missing_ok=True)


class OpenFile:
    """A local blob held by an open descriptor, readable until closed even if the blob is deleted."""

    def __init__(self, blobs: LocalBlobs, blob: str):
        self.blobs = blobs
        self.blob = blob
        self.fd = os.open(blobs.path(blob), os.O_RDONLY)

    def read(self, start: int, length: int) -> Iterator[bytes]:
        while length > 0:
            chunk = os.pread(self.fd, min(READ_CHUNK, length), start)  # no shared offset: reads may interleave
            if not chunk:
                raise OSError(f"Blob {self.blob} is shorter than recorded")
            start += len(chunk)
            length -= len(chunk)
            yield chunk

    def copy(self) -> str:
        """A new blob with the same bytes: a hard link (blobs never change), or a copy once this one is deleted."""
        staged = self.blobs.staging_path()
        try:
            os.link(self.blobs.path(self.blob), staged)
        except OSError:
            with open(staged, "wb") as target:
                for chunk in self.read(0, os.fstat(self.fd).st_size):
                    target.write(chunk)
                target.flush()
                os.fsync(target.fileno())
        return self.blobs.commit(staged)

    def close(self) -> None:
        os.close(self.fd)


class S3Blobs(StagingArea):
    """Blobs as objects ``<prefix>blobs/<id>`` in an external S3 endpoint; staging in ``tmp_root/tmp``.

    ``url`` is ``s3://bucket/prefix?endpoint=URL&region=R&profile=P``;
    credentials come from boto3's usual chain (or the named profile).
    """

    def __init__(self, url: str, tmp_root: Path):
        super().__init__(tmp_root)
        import boto3
        from boto3.s3.transfer import TransferConfig
        from botocore.config import Config

        parsed = urlparse(url)
        if parsed.scheme != "s3" or not parsed.netloc:
            raise ValueError(f"--object-store must look like s3://bucket/prefix?endpoint=URL, not {url!r}")
        options = {k: v[-1] for k, v in parse_qs(parsed.query).items()}
        self.bucket = parsed.netloc
        prefix = parsed.path.lstrip("/")
        self.prefix = prefix + "/" if prefix and not prefix.endswith("/") else prefix
        session = boto3.session.Session(profile_name=options.get("profile"))
        self.client = session.client("s3", endpoint_url=options.get("endpoint"), region_name=options.get("region"),
                                     config=Config(s3={"addressing_style": "path"}, retries={"mode": "standard"}))
        self.transfer_config = TransferConfig(multipart_threshold=64 * 1024 * 1024,
                                              multipart_chunksize=64 * 1024 * 1024)
        # An object in another store has no descriptor to hold: deleting a blob that is open waits for its
        # last reader (a crash before then leaves an unreferenced blob, as an interrupted upload does).
        self._lock = threading.Lock()
        self._readers: Counter[str] = Counter()
        self._deleted_while_open: set[str] = set()

    def _key(self, blob: str) -> str:
        return f"{self.prefix}blobs/{_check_id(blob)}"

    def commit(self, staged: Path) -> str:
        blob = uuid.uuid4().hex
        try:
            self.client.upload_file(str(staged), self.bucket, self._key(blob), Config=self.transfer_config)
        finally:
            staged.unlink(missing_ok=True)
        return blob

    def open(self, blob: str) -> "PinnedBlob":
        with self._lock:
            self._readers[blob] += 1
        return PinnedBlob(self, blob)

    def release(self, blob: str) -> None:
        """One reader of the blob is done; the last one deletes it if it was deleted while open."""
        with self._lock:
            self._readers[blob] -= 1
            if self._readers[blob] > 0:
                return
            del self._readers[blob]
            if blob not in self._deleted_while_open:
                return
            self._deleted_while_open.discard(blob)
        self.client.delete_object(Bucket=self.bucket, Key=self._key(blob))

    def delete(self, blob: str) -> None:
        with self._lock:
            if self._readers[blob] > 0:
                self._deleted_while_open.add(blob)
                return
        self.client.delete_object(Bucket=self.bucket, Key=self._key(blob))


class PinnedBlob:
    """A blob of an external store held by this server: not deleted until closed."""

    def __init__(self, blobs: S3Blobs, blob: str):
        self.blobs = blobs
        self.blob = blob

    def read(self, start: int, length: int) -> Iterator[bytes]:
        if length <= 0:
            return
        body = self.blobs.client.get_object(Bucket=self.blobs.bucket, Key=self.blobs._key(self.blob),
                                            Range=f"bytes={start}-{start + length - 1}")["Body"]
        try:
            yield from body.iter_chunks(READ_CHUNK)
        finally:
            body.close()

    def copy(self) -> str:
        new = uuid.uuid4().hex
        self.blobs.client.copy({"Bucket": self.blobs.bucket, "Key": self.blobs._key(self.blob)}, self.blobs.bucket,
                               self.blobs._key(new), Config=self.blobs.transfer_config)
        return new

    def close(self) -> None:
        self.blobs.release(self.blob)


def open_blobs(object_store: str | None, data_dir: Path):
    root = Path(data_dir) / "objects"
    return S3Blobs(object_store, root) if object_store else LocalBlobs(root)
