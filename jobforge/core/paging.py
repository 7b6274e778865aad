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
