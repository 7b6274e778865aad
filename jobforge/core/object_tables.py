"""Tables of the object store: buckets, object versions, multipart uploads and parts.

Object bytes never live at a path derived from the key: each version is a list
of blobs (one for a plain PUT, one per part after a multipart upload) named by
random ids, and the key only exists in these tables. A key can therefore never
name a file outside the storage root, and "a" and "a/b" can both be objects.

Every version of a key is a row of ``s3_objects``: the version a bucket without
versioning keeps is the one with version id "null"; a delete marker is a row
without data. Exactly one row of a key is its latest.
"""

from __future__ import annotations

import sqlalchemy as sa

from jobforge.core.store import metadata

# S3 lists keys in UTF-8 byte order: SQLite's BINARY collation compares the
# UTF-8 bytes; PostgreSQL needs the "C" collation for the same order.
KEY = sa.String(1024).with_variant(sa.String(1024, collation="C"), "postgresql")

s3_buckets = sa.Table(
    "s3_buckets", metadata,
    sa.Column("name", sa.String(63), primary_key=True),
    sa.Column("account_id", sa.String(12), nullable=False, index=True),
    sa.Column("region", sa.String(32), nullable=False),
    sa.Column("tags", sa.JSON, nullable=False),
    sa.Column("created_at", sa.Float, nullable=False),
    sa.Column("versioning", sa.String(16)),  # None until configured, then "Enabled" or "Suspended"
)

s3_objects = sa.Table(
    "s3_objects", metadata,
    sa.Column("bucket", sa.String(63), primary_key=True),
    sa.Column("key", KEY, primary_key=True),
    sa.Column("version_id", sa.String(64), primary_key=True),
    sa.Column("sequence", sa.Integer, nullable=False),  # the order of a key's versions, the newest highest
    sa.Column("is_latest", sa.Boolean, nullable=False),
    sa.Column("delete_marker", sa.Boolean, nullable=False),
    sa.Column("size", sa.BigInteger, nullable=False),
    sa.Column("etag", sa.String(64), nullable=False),
    sa.Column("segments", sa.JSON, nullable=False),  # [[blob id, size], ...] in order
    sa.Column("headers", sa.JSON, nullable=False),  # content headers as stored: ContentType, CacheControl, ...
    sa.Column("user_metadata", sa.JSON, nullable=False),
    sa.Column("checksum", sa.JSON),  # {"algorithm", "value", "type"}; part values for multipart objects
    sa.Column("tags", sa.JSON, nullable=False),
    sa.Column("last_modified", sa.Float, nullable=False),
)
# One latest version per key: two writers of a key racing on PostgreSQL cannot both commit one.
sa.Index("uq_s3_objects_latest", s3_objects.c.bucket, s3_objects.c.key, unique=True,
         sqlite_where=sa.text("is_latest = 1"), postgresql_where=sa.text("is_latest"))

s3_uploads = sa.Table(
    "s3_uploads", metadata,
    sa.Column("upload_id", sa.String(64), primary_key=True),
    sa.Column("bucket", sa.String(63), nullable=False),
    sa.Column("key", KEY, nullable=False),
    sa.Column("headers", sa.JSON, nullable=False),
    sa.Column("user_metadata", sa.JSON, nullable=False),
    sa.Column("tags", sa.JSON, nullable=False),
    sa.Column("checksum_algorithm", sa.String(16)),
    sa.Column("checksum_type", sa.String(16)),
    sa.Column("initiator", sa.String(2048), nullable=False),
    sa.Column("initiated", sa.Float, nullable=False),
    sa.Index("ix_s3_uploads_bucket_key", "bucket", "key"),
)

s3_parts = sa.Table(
    "s3_parts", metadata,
    sa.Column("upload_id", sa.String(64), primary_key=True),
    sa.Column("part_number", sa.Integer, primary_key=True),
    sa.Column("blob", sa.String(64), nullable=False),
    sa.Column("size", sa.BigInteger, nullable=False),
    sa.Column("etag", sa.String(64), nullable=False),
    sa.Column("checksums", sa.JSON, nullable=False),  # {"CRC32": b64, ...}
    sa.Column("last_modified", sa.Float, nullable=False),
)

s3_completed_uploads = sa.Table(  # what a repeated CompleteMultipartUpload answers, for a while
    "s3_completed_uploads", metadata,
    sa.Column("upload_id", sa.String(64), primary_key=True),
    sa.Column("bucket", sa.String(63), nullable=False),
    sa.Column("key", KEY, nullable=False),
    sa.Column("parts", sa.JSON, nullable=False),  # [[part number, ETag], ...] as completed
    sa.Column("result", sa.JSON, nullable=False),  # the object's etag, checksum and version id
    sa.Column("completed", sa.Float, nullable=False, index=True),
)
