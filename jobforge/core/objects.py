"""The object store: buckets, object versions and multipart uploads of every account.

The index (bucket ownership, keys, versions, ETags, checksums, headers) lives
in the database; bytes live in blobs (``jobforge.core.blobs``). A version
becomes visible when its index row commits, after its blobs are durable; blobs
no version names any more are deleted after that commit. A reader holds the
blobs of the version it opened (``open``), so it reads that version whole
whatever happens to the key meanwhile. Every bucket belongs to one account and
only that account may use it.

Versioning follows S3: a bucket that never had it, or has it suspended, writes
each key's "null" version (replacing it); one with versioning enabled writes a
new version each time, and a delete without a version id there leaves a
delete marker as the key's latest version.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import re
import time
import weakref
from dataclasses import asdict, dataclass
from typing import Iterable, Iterator

import sqlalchemy as sa

from jobforge.core import checksums
from jobforge.core.blobs import StagedBody, open_blobs
from jobforge.core.errors import ServiceError
from jobforge.core.object_tables import s3_buckets, s3_completed_uploads, s3_objects, s3_parts, s3_uploads
from jobforge.core.object_versions import (ENABLED, NULL_VERSION, check_version_id, cli_safe_token, deleted_key,
                                           marker_addressed, new_version_id, no_such_version)
from jobforge.core.store import reading

MAX_KEY_BYTES = 1024
MIN_PART_SIZE = 5 * 1024 * 1024
MAX_PARTS = 10000
OPEN_ATTEMPTS = 10  # a key rewritten between reading its row and opening its blobs is looked up again
COMPLETED_UPLOADS_KEPT = 24 * 3600  # seconds a repeated CompleteMultipartUpload is answered as the first was
_BUCKET_NAME = re.compile(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]")
_IP_ADDRESS = re.compile(r"\d+\.\d+\.\d+\.\d+")


def no_such_bucket(name: str) -> ServiceError:
    return ServiceError("NoSuchBucket", "The specified bucket does not exist", 404, BucketName=name)


def no_such_key(key: str) -> ServiceError:
    return ServiceError("NoSuchKey", "The specified key does not exist.", 404, Key=key)


def no_such_upload(upload_id: str) -> ServiceError:
    return ServiceError("NoSuchUpload", "The specified upload does not exist. The upload ID may be invalid, or the "
                        "upload may have been aborted or completed.", 404, UploadId=upload_id)


def malformed_xml() -> ServiceError:
    return ServiceError("MalformedXML", "The XML you provided was not well-formed or did not validate against our "
                        "published schema", 400)


def precondition_failed(headers: dict | None = None, **fields) -> ServiceError:
    return ServiceError("PreconditionFailed", "At least one of the pre-conditions you specified did not hold", 412,
                        headers=headers, **fields)


def valid_bucket_name(name: str) -> bool:
    return bool(_BUCKET_NAME.fullmatch(name)) and ".." not in name and not _IP_ADDRESS.fullmatch(name) \
        and not name.startswith("xn--") and not name.endswith("-s3alias")


def check_bucket_name(name: str) -> None:
    if not valid_bucket_name(name):
        raise ServiceError("InvalidBucketName", "The specified bucket is not valid.", 400, BucketName=name)


def check_key(key: str) -> None:
    """Keys are opaque strings (they never become paths); refuse only what S3 cannot store or list."""
    if not key:
        raise ServiceError("InvalidArgument", "Object key must not be empty", 400)
    if len(key.encode("utf-8", "surrogatepass")) > MAX_KEY_BYTES:
        raise ServiceError("KeyTooLongError", "Your key is too long", 400)
    if "\x00" in key or any(0xD800 <= ord(c) <= 0xDFFF for c in key):
        raise ServiceError("InvalidArgument", "Object key contains a character S3 cannot store", 400)


def quoted(etag: str) -> str:
    return f'"{etag}"'


def _unquote_etag(etag: str) -> str:
    return etag.strip().strip('"')


def _etag_matches(condition: str, etag: str) -> bool:
    return any(item.strip() == "*" or _unquote_etag(item) == etag for item in condition.split(","))


@dataclass(frozen=True)
class ObjectInfo:
    """One version of a key (a delete marker has no data)."""

    bucket: str
    key: str
    size: int
    etag: str  # unquoted
    segments: list  # [[blob, size], ...]
    headers: dict
    user_metadata: dict
    checksum: dict | None
    tags: dict
    last_modified: float
    version_id: str = NULL_VERSION
    is_latest: bool = True
    delete_marker: bool = False
    versioned: bool = False  # whether the bucket has had versioning, so that responses name versions

    @classmethod
    def from_row(cls, row, versioned: bool) -> "ObjectInfo":
        return cls(row.bucket, row.key, row.size, row.etag, row.segments, row.headers, row.user_metadata,
                   row.checksum, row.tags, row.last_modified, row.version_id, row.is_latest, row.delete_marker,
                   versioned)

    @property
    def shown_version_id(self) -> str | None:
        """The version id responses carry: none in a bucket that never had versioning, as in S3."""
        return self.version_id if self.versioned else None

    @property
    def parts_count(self) -> int | None:
        return len(self.segments) if self.etag.endswith(f"-{len(self.segments)}") else None

    def part_range(self, part_number: int) -> tuple[int, int]:
        """(first byte, length) of one part of a multipart object (the whole object is part 1 otherwise)."""
        if part_number < 1 or part_number > len(self.segments):
            raise ServiceError("InvalidPartNumber", "The requested partnumber is not satisfiable", 416)
        start = sum(size for _, size in self.segments[:part_number - 1])
        return start, self.segments[part_number - 1][1]


def _close_all(handles: list) -> None:
    for handle in handles:
        handle.close()


class OpenObject:
    """One version of an object held for reading: its blobs stay readable until ``close``."""

    def __init__(self, info: ObjectInfo, handles: list):
        self.info = info
        self._handles = handles
        # Closed once: by close(), or when dropped unclosed (a response that was never sent).
        self._closer = weakref.finalize(self, _close_all, handles)

    def read(self, start: int, length: int) -> Iterator[bytes]:
        """The bytes [start, start + length) of the object, across its segments."""
        offset = 0
        for handle, (_, size) in zip(self._handles, self.info.segments):
            if length <= 0:
                return
            if start < offset + size:
                begin = max(start - offset, 0)
                take = min(size - begin, length)
                yield from handle.read(begin, take)
                length -= take
                start = offset + begin + take
            offset += size

    def digest(self, algorithm: str) -> str:
        """The checksum of the object's bytes, read back from its blobs."""
        digest = checksums.new(algorithm)
        for chunk in self.read(0, self.info.size):
            digest.update(chunk)
        return digest.b64digest()

    def copied_segments(self) -> Iterator[list]:
        """New blobs with the object's bytes, one [blob, size] per segment."""
        for handle, (_, size) in zip(self._handles, self.info.segments):
            yield [handle.copy(), size]

    def close(self) -> None:
        self._closer()

    def __enter__(self) -> "OpenObject":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


@dataclass(frozen=True)
class Listing:
    contents: list[ObjectInfo]
    common_prefixes: list[str]
    truncated: bool
    resume: str | None  # opaque: where the next page starts


@dataclass(frozen=True)
class VersionListing:
    versions: list[ObjectInfo]  # delete markers included, by key then newest first
    common_prefixes: list[str]
    truncated: bool

    @property
    def last(self) -> tuple[str, str | None] | None:
        """(key, version id) of the last entry, (prefix, None) when it is a common prefix."""
        if self.common_prefixes and (not self.versions or self.common_prefixes[-1] > self.versions[-1].key):
            return self.common_prefixes[-1], None
        return (self.versions[-1].key, self.versions[-1].version_id) if self.versions else None


@dataclass(frozen=True)
class Deletion:
    """What a delete did: the version it removed or the delete marker it wrote (None where no version is named)."""

    version_id: str | None
    delete_marker: bool


@dataclass(frozen=True)
class Completion:
    """What CompleteMultipartUpload answers (again, to a repeated request)."""

    etag: str  # unquoted
    checksum: dict | None
    version_id: str | None  # as responses show it


@dataclass(frozen=True)
class UploadListing:
    uploads: list  # s3_uploads rows
    common_prefixes: list[str]
    truncated: bool

    @property
    def last(self) -> tuple[str, str | None] | None:
        """(key, upload id) of the last entry, (prefix, None) when it is a common prefix."""
        if self.common_prefixes and (not self.uploads or self.common_prefixes[-1] > self.uploads[-1].key):
            return self.common_prefixes[-1], None
        return (self.uploads[-1].key, self.uploads[-1].upload_id) if self.uploads else None


def _grouped_walk(conn, base, order: tuple, after, key, prefix: str, delimiter: str, limit: int, item_of,
                  after_item) -> tuple[list, list[str], bool]:
    """(items, common prefixes, truncated): the rows of ``base`` in ``order`` from ``after`` on, up to ``limit``
    entries, each key holding the delimiter past the prefix collapsed into its common prefix. Read 1000 rows at a
    time, and past a common prefix at once, so no prefix's rows are read one by one."""
    items, prefixes = [], []
    while True:
        query = base if after is None else base.where(after)
        rows = conn.execute(query.order_by(*order).limit(1000)).all()
        if not rows:
            return items, prefixes, False
        for row in rows:
            if len(items) + len(prefixes) == limit:
                return items, prefixes, True
            cut = row.key.find(delimiter, len(prefix)) if delimiter else -1
            if cut >= 0:
                prefixes.append(row.key[:cut + len(delimiter)])
                after = key >= _successor(prefixes[-1])
                break  # query again past every row under this prefix
            items.append(item_of(row))
            after = after_item(row)


def _successor(prefix: str) -> str:
    """The smallest string greater than every string that starts with prefix."""
    return prefix[:-1] + chr(ord(prefix[-1]) + 1)


def encode_resume(key: str, skip_prefix: bool) -> str:
    return base64.urlsafe_b64encode(json.dumps([key, skip_prefix]).encode()).decode()


def decode_resume(token: str) -> tuple[str, bool]:
    try:
        key, skip_prefix = json.loads(base64.urlsafe_b64decode(token.encode()))
        return str(key), bool(skip_prefix)
    except (ValueError, TypeError):
        raise ServiceError("InvalidArgument", "The continuation token provided is incorrect", 400) from None


def full_object_checksum(body: StagedBody, algorithm: str = checksums.DEFAULT) -> dict:
    """The checksum record of a body staged with ``algorithm``, as S3 reports it for a single-part object."""
    return {"algorithm": algorithm, "type": "FULL_OBJECT", "value": body.checksums[algorithm]}


def _latest(bucket: str, key: str) -> tuple:
    c = s3_objects.c
    return c.bucket == bucket, c.key == key, c.is_latest == sa.true()


def _version(bucket: str, key: str, version_id: str) -> tuple:
    c = s3_objects.c
    return c.bucket == bucket, c.key == key, c.version_id == version_id


def _find(conn, bucket: str, key: str, version_id: str | None = None):
    """A key's latest version (a delete marker, maybe), or the version named; None if there is none."""
    where = _latest(bucket, key) if version_id is None else _version(bucket, key, version_id)
    return conn.execute(sa.select(s3_objects).where(*where)).first()


def _readable(row, key: str, version_id: str | None):
    """The version a read or a tagging request names, refused as S3 refuses a missing one or a delete marker."""
    if row is None:
        raise no_such_key(key) if version_id is None else no_such_version(key, version_id)
    if row.delete_marker:
        raise deleted_key(key, row) if version_id is None else marker_addressed(row)
    return row


def _visible(row):
    """The key's latest version as conditions see it: a delete marker is no object."""
    return None if row is None or row.delete_marker else row


def _after_version(row):
    """Versions listed after this one: by key, then from newest to oldest."""
    c = s3_objects.c
    return sa.or_(c.key > row.key, sa.and_(c.key == row.key, c.sequence < row.sequence))


def _after_upload(row):
    """Uploads listed after this one: by key, then initiation, then id."""
    c = s3_uploads.c
    return sa.or_(c.key > row.key, sa.and_(c.key == row.key, sa.or_(
        c.initiated > row.initiated, sa.and_(c.initiated == row.initiated, c.upload_id > row.upload_id))))


class ObjectStore:
    def __init__(self, engine: sa.Engine, blobs):
        self.engine = engine
        self.blobs = blobs

    # -- buckets ---------------------------------------------------------------

    def create_bucket(self, account_id: str, name: str, region: str) -> None:
        check_bucket_name(name)
        with self.engine.begin() as conn:
            row = conn.execute(sa.select(s3_buckets).where(s3_buckets.c.name == name)).first()
            if row is not None:
                if row.account_id == account_id:
                    raise ServiceError("BucketAlreadyOwnedByYou", "Your previous request to create the named bucket "
                                       "succeeded and you already own it.", 409, BucketName=name)
                raise ServiceError("BucketAlreadyExists", "The requested bucket name is not available. The bucket "
                                   "namespace is shared by all users of the system. Please select a different name "
                                   "and try again.", 409, BucketName=name)
            conn.execute(s3_buckets.insert().values(name=name, account_id=account_id, region=region, tags={},
                                                    created_at=time.time()))

    def bucket(self, account_id: str, name: str, conn=None):
        """The bucket's row, if it exists and belongs to the account."""
        if not valid_bucket_name(name):
            raise no_such_bucket(name)  # no store can hold it (a NUL, say), so none is asked
        query = sa.select(s3_buckets).where(s3_buckets.c.name == name)
        if conn is None:
            with reading(self.engine) as own:
                row = own.execute(query).first()
        else:
            row = conn.execute(query).first()
        if row is None:
            raise no_such_bucket(name)
        if row.account_id != account_id:
            raise ServiceError("AccessDenied", "Access Denied", 403)
        return row

    def list_buckets(self, account_id: str) -> list:
        with reading(self.engine) as conn:
            return conn.execute(sa.select(s3_buckets).where(s3_buckets.c.account_id == account_id)
                                .order_by(s3_buckets.c.name)).all()

    def delete_bucket(self, account_id: str, name: str) -> None:
        with self.engine.begin() as conn:
            row = self.bucket(account_id, name, conn)
            if conn.execute(sa.select(s3_objects.c.key).where(s3_objects.c.bucket == name).limit(1)).first():
                versions = ". You must delete all versions in the bucket." if row.versioning is not None else ""
                raise ServiceError("BucketNotEmpty", f"The bucket you tried to delete is not empty{versions}", 409,
                                   BucketName=name)
            uploads = [r.upload_id for r in conn.execute(
                sa.select(s3_uploads.c.upload_id).where(s3_uploads.c.bucket == name))]
            blobs = self._drop_uploads(conn, uploads)
            conn.execute(s3_completed_uploads.delete().where(s3_completed_uploads.c.bucket == name))
            conn.execute(s3_buckets.delete().where(s3_buckets.c.name == name))
        self._delete_blobs(blobs)

    def versioning(self, account_id: str, name: str) -> str | None:
        """The bucket's versioning status: None if it never had versioning, else "Enabled" or "Suspended"."""
        return self.bucket(account_id, name).versioning

    def set_versioning(self, account_id: str, name: str, status: str) -> None:
        with self.engine.begin() as conn:
            self.bucket(account_id, name, conn)
            conn.execute(s3_buckets.update().where(s3_buckets.c.name == name).values(versioning=status))

    # -- objects ---------------------------------------------------------------

    def head(self, account_id: str, bucket: str, key: str, version_id: str | None = None) -> ObjectInfo:
        """The key's latest version, or the version named (never a delete marker: reads of one are refused)."""
        if version_id is not None:
            check_version_id(version_id)
        with reading(self.engine) as conn:
            bucket_row = self.bucket(account_id, bucket, conn)
            row = _readable(_find(conn, bucket, key, version_id), key, version_id)
        return ObjectInfo.from_row(row, bucket_row.versioning is not None)

    def open(self, account_id: str, bucket: str, key: str, version_id: str | None = None) -> OpenObject:
        """The key's latest version, or the version named, held for reading (close it, or use it as a context
        manager)."""
        for _ in range(OPEN_ATTEMPTS):
            info = self.head(account_id, bucket, key, version_id)
            try:
                held = self._hold(info)
            except FileNotFoundError:
                continue  # deleted after its row was read: the key has a newer version, or none
            # A blob is deleted only after the row naming it is gone, so one still named now was held in time.
            if self._segments_of(bucket, key, info.version_id) == info.segments:
                return held
            held.close()
        raise ServiceError("SlowDown", "Please reduce your request rate.", 503)

    def _hold(self, info: ObjectInfo) -> OpenObject:
        """The blobs of the version info describes, opened (FileNotFoundError once one is deleted)."""
        handles = []
        try:
            for blob, _ in info.segments:
                handles.append(self.blobs.open(blob))
        except BaseException:
            _close_all(handles)
            raise
        return OpenObject(info, handles)

    def _segments_of(self, bucket: str, key: str, version_id: str) -> list | None:
        with reading(self.engine) as conn:
            return conn.execute(sa.select(s3_objects.c.segments).where(*_version(bucket, key, version_id))).scalar()

    def read(self, info: ObjectInfo, start: int, length: int) -> Iterator[bytes]:
        """The bytes [start, start + length) of the version info describes, held from the first chunk."""
        with self._hold(info) as held:
            yield from held.read(start, length)

    @contextlib.contextmanager
    def staged(self, chunks: Iterable[bytes], algorithms=()) -> Iterator[StagedBody]:
        """A body staged from chunks, discarded once used (or aborted if staging fails)."""
        staging = self.blobs.staging(algorithms)
        try:
            for chunk in chunks:
                staging.write(chunk)
            body = staging.finish()
        except BaseException:
            staging.abort()
            raise
        try:
            yield body
        finally:
            body.discard()

    def put_bytes(self, account_id: str, bucket: str, key: str, data: bytes, content_type: str) -> ObjectInfo:
        """Store a small object written by the server itself (a task's results, an invocation log)."""
        with self.staged([data], [checksums.DEFAULT]) as body:
            return self.put(account_id, bucket, key, body, headers={"ContentType": content_type}, user_metadata={},
                            tags={}, checksum=full_object_checksum(body))

    def put(self, account_id: str, bucket: str, key: str, body: StagedBody, *, headers: dict, user_metadata: dict,
            tags: dict, checksum: dict | None, if_match: str | None = None,
            if_none_match: str | None = None) -> ObjectInfo:
        check_key(key)
        self.bucket(account_id, bucket)
        blob = self.blobs.commit(body.path)
        values = dict(bucket=bucket, key=key, size=body.size, etag=body.md5, segments=[[blob, body.size]],
                      headers=headers, user_metadata=user_metadata, checksum=checksum, tags=tags)
        try:
            info, replaced = self._write(account_id, values, if_match, if_none_match)
        except BaseException:
            self.blobs.delete(blob)
            raise
        self._delete_blobs(replaced)
        return info

    def _write(self, account_id: str, values: dict, if_match: str | None,
               if_none_match: str | None) -> tuple[ObjectInfo, list[str]]:
        """Write values as the key's latest version; the version written and the blobs no version names any
        more."""
        with self._writing(values["bucket"], values["key"]) as conn:
            bucket_row = self.bucket(account_id, values["bucket"], conn)
            return self._write_in(conn, bucket_row, values, if_match, if_none_match)

    @contextlib.contextmanager
    def _writing(self, bucket: str, key: str) -> Iterator:
        """A transaction that changes a key's versions. On PostgreSQL it first waits for the key's other
        writers (SQLite has one writer at a time), so that each finds the latest version the last one left."""
        with self.engine.begin() as conn:
            if conn.dialect.name == "postgresql":
                digest = hashlib.blake2b(f"{bucket}/{key}".encode(), digest_size=8).digest()
                conn.execute(sa.text("SELECT pg_advisory_xact_lock(:lock)"),
                             {"lock": int.from_bytes(digest, "big", signed=True)})
            yield conn

    def _write_in(self, conn, bucket_row, values: dict, if_match: str | None,
                  if_none_match: str | None) -> tuple[ObjectInfo, list[str]]:
        current = _find(conn, bucket_row.name, values["key"])
        self._write_conditions(_visible(current), values["key"], if_match, if_none_match)
        row, replaced = self._push(conn, bucket_row, dict(values, delete_marker=False))
        return ObjectInfo(**row, versioned=bucket_row.versioning is not None), replaced

    @staticmethod
    def _push(conn, bucket_row, values: dict) -> tuple[dict, list[str]]:
        """Insert values as the key's latest version: a new version where versioning is enabled, else the
        key's "null" version, replacing the one it had. The row inserted, and the blobs it replaced."""
        c = s3_objects.c
        bucket, key = bucket_row.name, values["key"]
        replaced = []
        if bucket_row.versioning == ENABLED:
            version_id = new_version_id()
        else:
            version_id = NULL_VERSION
            null = _find(conn, bucket, key, NULL_VERSION)
            if null is not None:
                conn.execute(s3_objects.delete().where(*_version(bucket, key, NULL_VERSION)))
                replaced = [blob for blob, _ in null.segments]
        conn.execute(s3_objects.update().where(*_latest(bucket, key)).values(is_latest=False))
        newest = conn.execute(sa.select(sa.func.max(c.sequence)).where(c.bucket == bucket, c.key == key)).scalar()
        row = dict(values, version_id=version_id, sequence=(newest or 0) + 1, is_latest=True,
                   last_modified=time.time())
        conn.execute(s3_objects.insert().values(**row))
        del row["sequence"]
        return row, replaced

    @staticmethod
    def _delete_conditions(old, key: str, if_match: str | None, if_modified_at, if_size: int | None) -> None:
        if old is None:
            raise no_such_key(key)
        if (if_match is not None and not _etag_matches(if_match, old.etag)) \
                or (if_modified_at is not None and int(old.last_modified) != int(if_modified_at.timestamp())) \
                or (if_size is not None and old.size != if_size):
            raise precondition_failed()

    @staticmethod
    def _write_conditions(old, key: str, if_match: str | None, if_none_match: str | None) -> None:
        if if_none_match is not None and old is not None and _etag_matches(if_none_match, old.etag):
            raise precondition_failed(Condition="If-None-Match")
        if if_match is not None:
            if old is None:
                raise no_such_key(key)
            if not _etag_matches(if_match, old.etag):
                raise precondition_failed(Condition="If-Match")

    def delete(self, account_id: str, bucket: str, key: str, *, version_id: str | None = None,
               if_match: str | None = None, if_modified_at=None, if_size: int | None = None) -> Deletion:
        """Delete a version (for good), or the key: it goes where the bucket never had versioning, and gets a
        delete marker as its latest version where it has. Deleting what does not exist is no error in S3.

        A conditional delete (ETag, last-modified time as a datetime, size) removes only the version it names.
        """
        if version_id is not None:
            check_version_id(version_id)
        conditions = (if_match, if_modified_at, if_size)

        with self._writing(bucket, key) as conn:
            bucket_row = self.bucket(account_id, bucket, conn)
            row = _find(conn, bucket, key, version_id)
            if conditions != (None, None, None):
                self._delete_conditions(_visible(row), key, *conditions)
            if version_id is None and bucket_row.versioning is not None:
                marker = dict(bucket=bucket, key=key, size=0, etag="", segments=[], headers={}, user_metadata={},
                              checksum=None, tags={}, delete_marker=True)
                written, blobs = self._push(conn, bucket_row, marker)
                deletion = Deletion(written["version_id"], True)
            elif row is None:
                deletion, blobs = Deletion(version_id, False), []
            else:
                deletion, blobs = Deletion(version_id, row.delete_marker), self._remove(conn, row)
        self._delete_blobs(blobs)
        return deletion

    @staticmethod
    def _remove(conn, row) -> list[str]:
        """Delete one version row; the next newest becomes the key's latest. The blobs it named."""
        c = s3_objects.c
        conn.execute(s3_objects.delete().where(*_version(row.bucket, row.key, row.version_id)))
        if row.is_latest:
            newest = conn.execute(sa.select(sa.func.max(c.sequence))
                                  .where(c.bucket == row.bucket, c.key == row.key)).scalar()
            if newest is not None:
                conn.execute(s3_objects.update().where(c.bucket == row.bucket, c.key == row.key,
                                                       c.sequence == newest).values(is_latest=True))
        return [blob for blob, _ in row.segments]

    def copy(self, account_id: str, source: OpenObject, bucket: str, key: str, *, headers: dict,
             user_metadata: dict, tags: dict, checksum: dict | None, if_match=None,
             if_none_match=None) -> ObjectInfo:
        check_key(key)
        self.bucket(account_id, bucket)
        etag = source.info.etag
        if "-" in etag:  # a multipart source: the copy is one object, and its ETag the MD5 of its bytes
            digest = hashlib.md5(usedforsecurity=False)
            for chunk in source.read(0, source.info.size):
                digest.update(chunk)
            etag = digest.hexdigest()
        segments = []
        try:
            for segment in source.copied_segments():
                segments.append(segment)
            values = dict(bucket=bucket, key=key, size=source.info.size, etag=etag, segments=segments,
                          headers=headers, user_metadata=user_metadata, checksum=checksum, tags=tags)
            info, replaced = self._write(account_id, values, if_match, if_none_match)
        except BaseException:
            self._delete_blobs([blob for blob, _ in segments])
            raise
        self._delete_blobs(replaced)
        return info

    def set_tags(self, account_id: str, bucket: str, key: str, tags: dict,
                 version_id: str | None = None) -> ObjectInfo:
        """Replace the tags of the key's latest version, or of the version named; the version tagged."""
        if version_id is not None:
            check_version_id(version_id)
        with self.engine.begin() as conn:
            bucket_row = self.bucket(account_id, bucket, conn)
            row = _readable(_find(conn, bucket, key, version_id), key, version_id)
            conn.execute(s3_objects.update().where(*_version(bucket, key, row.version_id)).values(tags=tags))
        return ObjectInfo.from_row(row, bucket_row.versioning is not None)

    def list(self, account_id: str, bucket: str, *, prefix: str = "", delimiter: str = "", after: str = "",
             resume: str | None = None, max_keys: int = 1000) -> Listing:
        """Keys (their latest versions, unless a delete marker) after ``after`` (or from a resume token), grouped
        by delimiter into common prefixes."""
        versioned = self.bucket(account_id, bucket).versioning is not None
        cursor, inclusive = after, False
        if resume is not None:
            key, skip_prefix = decode_resume(resume)
            cursor, inclusive = (_successor(key), True) if skip_prefix else (key, False)
        contents, prefixes = [], []
        if max_keys <= 0:
            return Listing(contents, prefixes, False, None)
        last = None
        c = s3_objects.c
        with reading(self.engine) as conn:
            while True:
                query = sa.select(s3_objects).where(c.bucket == bucket, c.is_latest == sa.true(),
                                                    c.delete_marker == sa.false())
                if prefix:
                    query = query.where(c.key >= prefix, c.key < _successor(prefix))
                if cursor:
                    query = query.where(c.key >= cursor if inclusive else c.key > cursor)
                rows = conn.execute(query.order_by(c.key).limit(1000)).all()
                if not rows:
                    return Listing(contents, prefixes, False, None)
                for row in rows:
                    if len(contents) + len(prefixes) == max_keys:
                        return Listing(contents, prefixes, True, encode_resume(*last))
                    cut = row.key.find(delimiter, len(prefix)) if delimiter else -1
                    if cut >= 0:
                        common = row.key[:cut + len(delimiter)]
                        prefixes.append(common)
                        last = (common, True)
                        cursor, inclusive = _successor(common), True
                        break  # query again past every key under this prefix
                    contents.append(ObjectInfo.from_row(row, versioned))
                    last = (row.key, False)
                    cursor, inclusive = row.key, False

    def list_versions(self, account_id: str, bucket: str, *, prefix: str = "", delimiter: str = "",
                      key_marker: str = "", version_id_marker: str = "", limit: int = 1000) -> VersionListing:
        """Every version and delete marker, by key then newest first, after the markers, grouped by delimiter
        into common prefixes.

        A version id marker places the listing after that version of ``key_marker`` (after the whole key once
        that version is gone); a key marker inside a common prefix skips the prefix.
        """
        if version_id_marker and not key_marker:
            raise ServiceError("InvalidArgument", "A version-id marker cannot be specified without a key marker.",
                               400, ArgumentName="version-id-marker", ArgumentValue=version_id_marker)
        if version_id_marker:
            check_version_id(version_id_marker)
        c = s3_objects.c
        with reading(self.engine) as conn:
            versioned = self.bucket(account_id, bucket, conn).versioning is not None
            if limit <= 0:
                return VersionListing([], [], False)
            base = sa.select(s3_objects).where(c.bucket == bucket)
            if prefix:
                base = base.where(c.key >= prefix, c.key < _successor(prefix))
            after = c.key > key_marker if key_marker else None
            cut = key_marker.find(delimiter, len(prefix)) if delimiter and key_marker.startswith(prefix) else -1
            if cut >= 0:
                after = c.key >= _successor(key_marker[:cut + len(delimiter)])
            elif version_id_marker:
                marker = _find(conn, bucket, key_marker, version_id_marker)
                if marker is not None:
                    after = _after_version(marker)
            return VersionListing(*_grouped_walk(
                conn, base, (c.key, c.sequence.desc()), after, c.key, prefix, delimiter, limit,
                lambda row: ObjectInfo.from_row(row, versioned), _after_version))

    # -- multipart uploads -----------------------------------------------------

    def create_upload(self, account_id: str, principal: str, bucket: str, key: str, *, headers: dict,
                      user_metadata: dict, tags: dict, algorithm: str | None, checksum_type: str | None) -> str:
        check_key(key)
        if checksum_type == "COMPOSITE" and algorithm == "CRC64NVME":
            raise ServiceError("InvalidRequest", "The COMPOSITE checksum type is not supported by the CRC64NVME "
                               "checksum algorithm; CRC64NVME supports only the FULL_OBJECT checksum type", 400)
        if checksum_type == "FULL_OBJECT" and algorithm and not checksums.supports_full_object(algorithm):
            raise ServiceError("InvalidRequest", f"The {algorithm} algorithm does not support the FULL_OBJECT "
                               "checksum type", 400)
        upload_id = cli_safe_token(48)
        with self.engine.begin() as conn:
            self.bucket(account_id, bucket, conn)
            conn.execute(s3_uploads.insert().values(
                upload_id=upload_id, bucket=bucket, key=key, headers=headers, user_metadata=user_metadata,
                tags=tags, checksum_algorithm=algorithm,
                checksum_type=(checksum_type or checksums.default_type(algorithm)) if algorithm else None,
                initiator=principal, initiated=time.time()))
        return upload_id

    def upload(self, account_id: str, bucket: str, key: str, upload_id: str, conn=None):
        query = sa.select(s3_uploads).where(s3_uploads.c.upload_id == upload_id)
        if conn is None:
            with reading(self.engine) as own:
                self.bucket(account_id, bucket, own)
                row = own.execute(query).first()
        else:
            self.bucket(account_id, bucket, conn)
            row = conn.execute(query).first()
        if row is None or row.bucket != bucket or row.key != key:
            raise no_such_upload(upload_id)
        return row

    def put_part(self, account_id: str, bucket: str, key: str, upload_id: str, part_number: int,
                 body: StagedBody) -> dict:
        if not 1 <= part_number <= MAX_PARTS:
            raise ServiceError("InvalidArgument", f"Part number must be an integer between 1 and {MAX_PARTS}, "
                               "inclusive", 400)
        upload = self.upload(account_id, bucket, key, upload_id)
        algorithm = upload.checksum_algorithm
        if algorithm and algorithm not in body.checksums:
            body.checksums[algorithm] = self._digest_file(body, algorithm)
        blob = self.blobs.commit(body.path)
        values = dict(upload_id=upload_id, part_number=part_number, blob=blob, size=body.size, etag=body.md5,
                      checksums=body.checksums, last_modified=time.time())
        try:
            with self.engine.begin() as conn:
                self.upload(account_id, bucket, key, upload_id, conn)
                where = (s3_parts.c.upload_id == upload_id, s3_parts.c.part_number == part_number)
                old = conn.execute(sa.select(s3_parts.c.blob).where(*where)).first()
                if old is None:
                    conn.execute(s3_parts.insert().values(**values))
                else:
                    conn.execute(s3_parts.update().where(*where).values(**values))
        except BaseException:
            self.blobs.delete(blob)
            raise
        if old is not None:
            self.blobs.delete(old.blob)
        return values

    @staticmethod
    def _digest_file(body: StagedBody, algorithm: str) -> str:
        digest = checksums.new(algorithm)
        with open(body.path, "rb") as handle:
            for chunk in iter(lambda: handle.read(1024 * 1024), b""):
                digest.update(chunk)
        return digest.b64digest()

    def parts(self, upload_id: str, after: int = 0, limit: int = 1000) -> list:
        with reading(self.engine) as conn:
            return conn.execute(sa.select(s3_parts).where(s3_parts.c.upload_id == upload_id,
                                                          s3_parts.c.part_number > after)
                                .order_by(s3_parts.c.part_number).limit(limit)).all()

    def complete(self, account_id: str, bucket: str, key: str, upload_id: str, requested: list[dict], *,
                 whole_checksum: dict | None = None, checksum_type: str | None = None,
                 object_size: int | None = None, if_match=None, if_none_match=None) -> Completion:
        """Assemble the parts named into the key's latest version. ``whole_checksum`` ({algorithm: value}) is
        what the client expects of the whole object, checked as S3 checks it; a repeated request for an upload
        completed within COMPLETED_UPLOADS_KEPT seconds, with the same parts, is answered as the first was."""
        if not requested or any("PartNumber" not in part or "ETag" not in part for part in requested):
            raise malformed_xml()  # S3's schema requires both in every part (the model does not say so)
        numbers = [part["PartNumber"] for part in requested]
        if numbers != sorted(set(numbers)):
            raise ServiceError("InvalidPartOrder", "The list of parts was not in ascending order. Parts must be "
                               "ordered by part number.", 400, UploadId=upload_id)
        named = [[part["PartNumber"], _unquote_etag(part["ETag"])] for part in requested]

        with self._writing(bucket, key) as conn:
            bucket_row = self.bucket(account_id, bucket, conn)
            upload = conn.execute(sa.select(s3_uploads).where(s3_uploads.c.upload_id == upload_id)).first()
            if upload is None or upload.bucket != bucket or upload.key != key:
                return self._completed_before(conn, bucket, key, upload_id, named)
            stored = {row.part_number: row for row in conn.execute(
                sa.select(s3_parts).where(s3_parts.c.upload_id == upload_id))}
            chosen = [self._requested_part(stored, part, upload) for part in requested]
            for row in chosen[:-1]:
                if row.size < MIN_PART_SIZE:
                    raise ServiceError("EntityTooSmall", "Your proposed upload is smaller than the minimum allowed "
                                       "object size.", 400, ProposedSize=row.size, MinSizeAllowed=MIN_PART_SIZE)
            size = sum(row.size for row in chosen)
            if object_size is not None and object_size != size:
                raise ServiceError("InvalidRequest", f"The provided 'x-amz-mp-object-size' header value "
                                   f"{object_size} does not match the size of the parts, {size}", 400)
            md5s = b"".join(bytes.fromhex(row.etag) for row in chosen)
            etag = f"{hashlib.md5(md5s, usedforsecurity=False).hexdigest()}-{len(chosen)}"
            checksum = self._object_checksum(upload, chosen)
            self._check_whole_checksum(upload, checksum, whole_checksum or {}, checksum_type)
            values = dict(bucket=bucket, key=key, size=size, etag=etag,
                          segments=[[row.blob, row.size] for row in chosen], headers=upload.headers,
                          user_metadata=upload.user_metadata, checksum=checksum, tags=upload.tags)
            info, replaced = self._write_in(conn, bucket_row, values, if_match, if_none_match)
            done = Completion(etag, checksum, info.shown_version_id)
            used = {row.blob for row in chosen}
            conn.execute(s3_parts.delete().where(s3_parts.c.upload_id == upload_id))
            conn.execute(s3_uploads.delete().where(s3_uploads.c.upload_id == upload_id))
            now = time.time()
            conn.execute(s3_completed_uploads.delete().where(
                s3_completed_uploads.c.completed < now - COMPLETED_UPLOADS_KEPT))
            conn.execute(s3_completed_uploads.insert().values(
                upload_id=upload_id, bucket=bucket, key=key, parts=named, result=asdict(done),
                completed=now))
        self._delete_blobs([row.blob for row in stored.values() if row.blob not in used] + replaced)
        return done

    @staticmethod
    def _completed_before(conn, bucket: str, key: str, upload_id: str, named: list) -> Completion:
        """The answer to an upload completed a moment ago with the same parts (NoSuchUpload otherwise)."""
        c = s3_completed_uploads.c
        row = conn.execute(sa.select(s3_completed_uploads).where(
            c.upload_id == upload_id, c.bucket == bucket, c.key == key,
            c.completed >= time.time() - COMPLETED_UPLOADS_KEPT)).first()
        if row is None or row.parts != named:
            raise no_such_upload(upload_id)
        return Completion(**row.result)

    @staticmethod
    def _check_whole_checksum(upload, checksum: dict | None, expected: dict, checksum_type: str | None) -> None:
        """The client's checksum of the whole object against the one the parts make: a full-object CRC, or
        the composite checksum of the parts' checksums (with or without its "-N" suffix)."""
        kind = upload.checksum_type or "FULL_OBJECT"  # S3's default: a full-object CRC64NVME
        if checksum_type is not None and checksum_type != kind:
            raise ServiceError("InvalidRequest", f"The upload was created using the {kind} checksum mode. The "
                               "complete request must use the same checksum mode.", 400)
        algorithm = upload.checksum_algorithm or checksums.DEFAULT
        for name, value in expected.items():
            if name != algorithm:
                raise ServiceError("InvalidRequest", f"The upload was created using the {algorithm} checksum "
                                   f"algorithm; the complete request cannot check the object's {name}.", 400)
            if checksum is None:
                continue  # parts stored before parts kept S3's default checksum: nothing to compare with
            computed = checksum["value"]
            if kind == "COMPOSITE":
                computed, _, count = computed.rpartition("-")
                value = value.removesuffix(f"-{count}")
            checksums.check(algorithm, value, computed)

    @staticmethod
    def _requested_part(stored: dict, part: dict, upload):
        row = stored.get(part["PartNumber"])
        if row is None or _unquote_etag(part.get("ETag", "")) != row.etag:
            raise ServiceError("InvalidPart", "One or more of the specified parts could not be found. The part may "
                               "not have been uploaded, or the specified entity tag may not have matched the part's "
                               "entity tag.", 400, PartNumber=part["PartNumber"])
        for algorithm in checksums.ALGORITHMS:
            given = part.get(checksums.member(algorithm))
            if given is not None and row.checksums.get(algorithm) != given:
                raise ServiceError("InvalidPart", f"The {algorithm} checksum of part {part['PartNumber']} does not "
                                   "match the uploaded part", 400, PartNumber=part["PartNumber"])
        return row

    @staticmethod
    def _object_checksum(upload, chosen) -> dict | None:
        algorithm = upload.checksum_algorithm
        if algorithm is None:  # S3's default: a full-object CRC64NVME, combined from the parts' own
            if not all(checksums.DEFAULT in row.checksums for row in chosen):
                return None  # a part stored before parts kept it: no checksum rather than reading it all again
            value = checksums.combine(checksums.DEFAULT, [(row.checksums[checksums.DEFAULT], row.size)
                                                          for row in chosen])
            return {"algorithm": checksums.DEFAULT, "value": value, "type": "FULL_OBJECT"}
        values = [row.checksums[algorithm] for row in chosen]
        if upload.checksum_type == "FULL_OBJECT":
            value = checksums.combine(algorithm, [(v, row.size) for v, row in zip(values, chosen)])
        else:
            value = checksums.composite(algorithm, values)
        return {"algorithm": algorithm, "value": value, "type": upload.checksum_type}

    def abort(self, account_id: str, bucket: str, key: str, upload_id: str, *, if_initiated_at=None) -> None:
        with self.engine.begin() as conn:
            upload = self.upload(account_id, bucket, key, upload_id, conn)
            if if_initiated_at is not None and int(upload.initiated) != int(if_initiated_at.timestamp()):
                raise precondition_failed()
            blobs = self._drop_uploads(conn, [upload_id])
        self._delete_blobs(blobs)

    def list_uploads(self, account_id: str, bucket: str, *, prefix: str = "", delimiter: str = "",
                     key_marker: str = "", upload_id_marker: str = "", limit: int = 1000) -> UploadListing:
        """Uploads by key, then by initiation, after the markers, grouped by delimiter into common prefixes.

        An upload id marker places the listing after that upload of ``key_marker`` (after the ids greater than
        it, as S3 documents, once that upload is gone); a key marker inside a common prefix skips the prefix.
        """
        c = s3_uploads.c
        with reading(self.engine) as conn:
            self.bucket(account_id, bucket, conn)
            if limit <= 0:
                return UploadListing([], [], False)
            base = sa.select(s3_uploads).where(c.bucket == bucket)
            if prefix:
                base = base.where(c.key >= prefix, c.key < _successor(prefix))
            after = c.key > key_marker if key_marker else None
            cut = key_marker.find(delimiter, len(prefix)) if delimiter and key_marker.startswith(prefix) else -1
            if cut >= 0:
                after = c.key >= _successor(key_marker[:cut + len(delimiter)])
            elif key_marker and upload_id_marker:
                marker = conn.execute(sa.select(s3_uploads).where(c.upload_id == upload_id_marker,
                                                                  c.bucket == bucket, c.key == key_marker)).first()
                if marker is not None:
                    after = _after_upload(marker)
                else:
                    after = sa.or_(c.key > key_marker, sa.and_(c.key == key_marker, c.upload_id > upload_id_marker))
            return UploadListing(*_grouped_walk(
                conn, base, (c.key, c.initiated, c.upload_id), after, c.key, prefix, delimiter, limit,
                lambda row: row, _after_upload))

    @staticmethod
    def _drop_uploads(conn, upload_ids: list[str]) -> list[str]:
        if not upload_ids:
            return []
        blobs = [row.blob for row in conn.execute(sa.select(s3_parts.c.blob)
                                                   .where(s3_parts.c.upload_id.in_(upload_ids)))]
        conn.execute(s3_parts.delete().where(s3_parts.c.upload_id.in_(upload_ids)))
        conn.execute(s3_uploads.delete().where(s3_uploads.c.upload_id.in_(upload_ids)))
        return blobs

    def _delete_blobs(self, blobs: list[str]) -> None:
        for blob in blobs:
            self.blobs.delete(blob)


def open_object_store(settings, engine: sa.Engine) -> ObjectStore:
    """The store of a server (whose start sweeps the staging area, before any upload)."""
    return ObjectStore(engine, open_blobs(settings.object_store, settings.data_dir))

