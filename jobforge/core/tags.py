"""Tags of any resource, by ARN, for every service.

Each function takes an engine (it then runs in its own transaction) or a
connection (it then runs in the caller's, e.g. with the resource's creation).
``same_key`` says when two keys name one tag: IAM does not tell keys apart by
case (``str.lower``); the other services do.
"""

from __future__ import annotations

import contextlib
from typing import Callable

import sqlalchemy as sa

from jobforge.core.errors import ServiceError
from jobforge.core.store import reading, tags

Database = sa.Engine | sa.Connection


def _writing(db: Database):
    return db.begin() if isinstance(db, sa.Engine) else contextlib.nullcontext(db)


def _reading(db: Database):
    return reading(db) if isinstance(db, sa.Engine) else contextlib.nullcontext(db)


def of(db: Database, arn: str) -> dict[str, str]:
    with _reading(db) as conn:
        return {r.key: r.value for r in conn.execute(sa.select(tags.c.key, tags.c.value)
                                                     .where(tags.c.resource_arn == arn))}


def put(db: Database, account_id: str, arn: str, new: dict[str, str], *, limit: int | None = None,
        too_many: Callable[[], ServiceError] | None = None, same_key: Callable[[str], str] = str) -> None:
    """Add tags and overwrite the values of keys the resource has; ``too_many()`` is raised when the
    resource would then have more than ``limit`` tags."""
    with _writing(db) as conn:
        existing = list(of(conn, arn))
        named = {same_key(key) for key in new}
        replaced = [key for key in existing if same_key(key) in named]
        if limit is not None and len(existing) - len(replaced) + len(new) > limit:
            raise too_many()
        if replaced:
            conn.execute(tags.delete().where(tags.c.resource_arn == arn, tags.c.key.in_(replaced)))
        if new:
            conn.execute(tags.insert(), [dict(resource_arn=arn, key=key, value=value, account_id=account_id)
                                         for key, value in new.items()])


def remove(db: Database, arn: str, keys: list[str] | None = None, *,
           same_key: Callable[[str], str] = str) -> None:
    """Remove the tags with these keys (keys the resource does not have are no error), or all of them."""
    with _writing(db) as conn:
        query = tags.delete().where(tags.c.resource_arn == arn)
        if keys is not None:
            named = {same_key(key) for key in keys}
            doomed = [key for key in of(conn, arn) if same_key(key) in named]
            if not doomed:
                return
            query = query.where(tags.c.key.in_(doomed))
        conn.execute(query)


def remove_under(db: Database, prefix: str) -> None:
    """Remove the tags of every resource whose ARN begins with ``prefix`` (in its case: SQLite's LIKE ignores it)."""
    with _writing(db) as conn:
        conn.execute(tags.delete().where(sa.func.substr(tags.c.resource_arn, 1, len(prefix)) == prefix))
