"""Client tokens: a create repeated with its token returns what the first request created.

The token is written in the transaction that creates the resource, so two
concurrent requests with one token leave one resource: the second fails on the
token's key and then finds the first one's.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable

import sqlalchemy as sa

from jobforge.core.errors import ServiceError
from jobforge.core.store import idempotency, reading


@dataclass(frozen=True)
class ClientToken:
    account_id: str
    scope: str  # what the token creates, e.g. "braket-job:create"
    token: str
    request_hash: str  # the digest of the request it came with


def reused(code: str, member: str = "client token") -> Callable[[], ServiceError]:
    """The service's error for a token sent again with other parameters (``member``: how it names it)."""
    return lambda: ServiceError(code, f"The {member} was already used with different request parameters. "
                                f"Use a new {member}.")


def earlier(engine: sa.Engine, token: ClientToken | None, mismatch: Callable[[], ServiceError]) -> str | None:
    """The ARN an earlier request with this token created, or None; ``mismatch()`` is raised when that
    request had other parameters."""
    if token is None:
        return None
    with reading(engine) as conn:
        found = conn.execute(sa.select(idempotency).where(
            idempotency.c.account_id == token.account_id, idempotency.c.scope == token.scope,
            idempotency.c.token == token.token)).first()
    if found is None:
        return None
    if found.request_hash != token.request_hash:
        raise mismatch()
    return found.resource_arn


def remember(conn: sa.Connection, token: ClientToken | None, arn: str) -> None:
    """Record the token within the transaction that creates ``arn``."""
    if token is not None:
        conn.execute(idempotency.insert().values(
            account_id=token.account_id, scope=token.scope, token=token.token, request_hash=token.request_hash,
            resource_arn=arn, created_at=time.time()))
