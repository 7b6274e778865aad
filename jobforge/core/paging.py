"""Opaque, stable NextTokens: keyset pagination bound to the query's filters.

A token names the last row handed out (sort value and unique id), so it
survives restarts and is unaffected by rows created meanwhile; it carries a
digest of the filters so a token reused with other filters is refused.
"""

from __future__ import annotations

import base64
import hashlib
import json
from dataclasses import dataclass
from typing import Callable

import sqlalchemy as sa

from jobforge.core.store import reading


@dataclass
class Page:
    rows: list
    next_token: str | None


def _digest(bind: dict) -> str:
    return hashlib.sha256(json.dumps(bind, sort_keys=True, default=str).encode()).hexdigest()[:16]


def encode(data: dict) -> str:
    return base64.urlsafe_b64encode(json.dumps(data, separators=(",", ":")).encode()).decode().rstrip("=")


def decode(token: str) -> dict:
    padded = token + "=" * (-len(token) % 4)
    return json.loads(base64.urlsafe_b64decode(padded.encode()))


def keyset_page(engine: sa.Engine, query, sort_col, id_col, ascending: bool, limit: int, token: str | None,
                bind: dict, bad_token: Callable[[str], Exception]) -> Page:
    digest = _digest(bind)
    if token:
        try:
            data = decode(token)
            value, last_id, token_digest = data["v"], data["i"], data["h"]
        except (ValueError, KeyError, TypeError):
            raise bad_token("Invalid pagination token") from None
        if token_digest != digest:
            raise bad_token("The pagination token does not match the request's parameters")
        if ascending:
            query = query.where(sa.or_(sort_col > value, sa.and_(sort_col == value, id_col > last_id)))
        else:
            query = query.where(sa.or_(sort_col < value, sa.and_(sort_col == value, id_col < last_id)))
    order = (sort_col.asc(), id_col.asc()) if ascending else (sort_col.desc(), id_col.desc())
    with reading(engine) as conn:
        rows = conn.execute(query.order_by(*order).limit(limit + 1)).all()
    if len(rows) <= limit:
        return Page(rows, None)
    last = rows[limit - 1]._mapping
    return Page(rows[:limit], encode({"v": last[sort_col.name], "i": last[id_col.name], "h": digest}))


MARKER_KEY_BYTES = 210  # base64 of these, a dot and a digest stay within IAM's 320-character Marker


def _key_digest(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()[:20]


def key_marker(key: str) -> str:
    """An IAM-style Marker naming the last key handed out."""
    prefix = key.encode()[:MARKER_KEY_BYTES].decode(errors="ignore")
    return base64.urlsafe_b64encode(prefix.encode()).decode() + "." + _key_digest(key)


def after_key_marker(keys: list[str], marker: str, bad_marker: Callable[[], Exception]) -> int:
    """Where the next page of these sorted keys starts: after the key the marker names; should that key
    have been removed meanwhile, at the first key after it (after the part of it the marker holds, for a
    key too long to hold whole: a few keys may then come again, none is skipped)."""
    try:
        encoded, digest = marker.split(".")
        prefix = base64.b64decode(encoded.encode(), altchars=b"-_", validate=True).decode()
        if len(digest) != 20 or any(c not in "0123456789abcdef" for c in digest):
            raise ValueError(digest)
    except (ValueError, UnicodeDecodeError):  # binascii.Error is a ValueError
        raise bad_marker() from None
    for i, key in enumerate(keys):
        if _key_digest(key) == digest:
            return i + 1
    return next((i for i, key in enumerate(keys) if key > prefix), len(keys))


def marker_page(items: list, key: Callable[[object], str], marker: str | None, limit: int,
                bad_marker: Callable[[], Exception]) -> tuple[list, str | None]:
    """One page of items sorted by ``key`` and the Marker of the next page (None on the last)."""
    keys = [key(item) for item in items]
    start = after_key_marker(keys, marker, bad_marker) if marker is not None else 0
    chosen = items[start:start + limit]
    return chosen, key_marker(keys[start + limit - 1]) if start + limit < len(items) else None
