"""Bucket-level settings: tags, and the CORS, policy and lifecycle documents of each bucket.

A document is stored with the creation time of the bucket it was set on, and
read only while that bucket stands: a bucket deleted and created again under
the same name starts with none, whatever a deletion cut short left behind.
Tags live in the bucket's own row and go with it.
"""

from __future__ import annotations

import time
from typing import Iterator

import sqlalchemy as sa

from jobforge.core.object_tables import s3_buckets
from jobforge.core.store import metadata, reading

CORS, POLICY, LIFECYCLE = "cors", "policy", "lifecycle"

s3_bucket_settings = sa.Table(
    "s3_bucket_settings", metadata,
    sa.Column("bucket", sa.String(63), primary_key=True),
    sa.Column("kind", sa.String(16), primary_key=True),  # CORS, POLICY or LIFECYCLE
    sa.Column("bucket_created_at", sa.Float, nullable=False),  # which bucket of that name it belongs to
    sa.Column("document", sa.JSON, nullable=False),
    sa.Column("updated_at", sa.Float, nullable=False),
)


def _current(bucket) -> tuple:
    c = s3_bucket_settings.c
    return c.bucket == bucket.name, c.bucket_created_at == bucket.created_at


def get(engine: sa.Engine, bucket, kind: str):
    """The document of kind set on ``bucket`` (its s3_buckets row), or None."""
    with reading(engine) as conn:
        return conn.execute(sa.select(s3_bucket_settings.c.document)
                            .where(*_current(bucket), s3_bucket_settings.c.kind == kind)).scalar()


def put(engine: sa.Engine, bucket, kind: str, document) -> None:
    c = s3_bucket_settings.c
    with engine.begin() as conn:
        conn.execute(s3_bucket_settings.delete().where(c.bucket == bucket.name, c.kind == kind))
        conn.execute(s3_bucket_settings.insert().values(bucket=bucket.name, kind=kind, document=document,
                                                        bucket_created_at=bucket.created_at,
                                                        updated_at=time.time()))


def delete(engine: sa.Engine, bucket, kind: str) -> None:
    c = s3_bucket_settings.c
    with engine.begin() as conn:
        conn.execute(s3_bucket_settings.delete().where(c.bucket == bucket.name, c.kind == kind))


def forget_bucket(engine: sa.Engine, name: str) -> None:
    """Drop every document of a deleted bucket (they are no longer read in any case)."""
    with engine.begin() as conn:
        conn.execute(s3_bucket_settings.delete().where(s3_bucket_settings.c.bucket == name))


def of_bucket_named(engine: sa.Engine, name: str, kind: str):
    """(the bucket's row, its document of kind or None) by name alone, whoever owns it; None without a bucket.

    For what is answered before anyone is authenticated: a browser's CORS preflight.
    """
    c = s3_bucket_settings.c
    query = (sa.select(s3_buckets, c.document)
             .outerjoin(s3_bucket_settings, sa.and_(c.bucket == s3_buckets.c.name, c.kind == kind,
                                                    c.bucket_created_at == s3_buckets.c.created_at))
             .where(s3_buckets.c.name == name))
    with reading(engine) as conn:
        row = conn.execute(query).first()
    return None if row is None else (row, row.document)


def every(engine: sa.Engine, kind: str) -> Iterator[tuple]:
    """(bucket row, document) of every standing bucket that has a document of kind."""
    c = s3_bucket_settings.c
    query = (sa.select(s3_buckets, c.document)
             .join(s3_bucket_settings, sa.and_(c.bucket == s3_buckets.c.name, c.kind == kind,
                                               c.bucket_created_at == s3_buckets.c.created_at))
             .order_by(s3_buckets.c.name))
    with reading(engine) as conn:
        rows = conn.execute(query).all()
    for row in rows:
        yield row, row.document


def tags(bucket) -> dict:
    return dict(bucket.tags or {})


def set_tags(engine: sa.Engine, bucket, new_tags: dict) -> None:
    with engine.begin() as conn:
        conn.execute(s3_buckets.update().where(s3_buckets.c.name == bucket.name,
                                               s3_buckets.c.created_at == bucket.created_at)
                     .values(tags=new_tags))
