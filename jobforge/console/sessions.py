"""Console sign-in: one-time sign-in tokens and the sessions they open, kept in the store.

Both live in the database rather than in one server's memory, so that a token is redeemed once across
every server of a shared database and a session opened on one server is good on the others. Only
SHA-256 digests of tokens and session ids are stored: a copy of the database opens no session.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from dataclasses import dataclass

import sqlalchemy as sa

from jobforge.core.accounts import Credential
from jobforge.core.store import metadata, reading

SIGNIN_TOKEN_SECONDS = 300  # like AWS's federation sign-in tokens: a few minutes, once
SESSION_SECONDS = 12 * 3600  # the AWS console's longest session

console_signin_tokens = sa.Table(
    "console_signin_tokens", metadata,
    sa.Column("token_hash", sa.String(64), primary_key=True),
    sa.Column("access_key_id", sa.String(32), nullable=False),
    sa.Column("expires_at", sa.Float, nullable=False),
)

console_sessions = sa.Table(
    "console_sessions", metadata,
    sa.Column("session_hash", sa.String(64), primary_key=True),
    sa.Column("access_key_id", sa.String(32), nullable=False),
    sa.Column("account_id", sa.String(12), nullable=False),
    sa.Column("principal_arn", sa.String(2048), nullable=False),
    sa.Column("csrf_token", sa.String(64), nullable=False),
    sa.Column("expires_at", sa.Float, nullable=False),
    sa.Column("created_at", sa.Float, nullable=False),
)


@dataclass(frozen=True)
class Session:
    account_id: str
    principal_arn: str
    access_key_id: str
    csrf_token: str
    expires_at: float

    def csrf_matches(self, offered: str | None) -> bool:
        return bool(offered) and hmac.compare_digest(offered.encode(), self.csrf_token.encode())


def _digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def issue_signin_token(engine: sa.Engine, credential: Credential, lifetime: float = SIGNIN_TOKEN_SECONDS) -> str:
    """A token that opens one session for the credential's account, once, within ``lifetime`` seconds."""
    token = secrets.token_urlsafe(32)
    now = time.time()
    with engine.begin() as conn:
        conn.execute(console_signin_tokens.delete().where(console_signin_tokens.c.expires_at < now))
        conn.execute(console_signin_tokens.insert().values(
            token_hash=_digest(token), access_key_id=credential.access_key_id, expires_at=now + lifetime))
    return token


def redeem_signin_token(engine: sa.Engine, token: str) -> str | None:
    """The access key id a token was issued for, once: the token is gone after this, used or expired."""
    digest = _digest(token)
    with engine.begin() as conn:
        row = conn.execute(sa.select(console_signin_tokens).where(
            console_signin_tokens.c.token_hash == digest)).first()
        if row is None:
            return None
        gone = conn.execute(console_signin_tokens.delete().where(console_signin_tokens.c.token_hash == digest))
    if gone.rowcount != 1 or row.expires_at < time.time():  # another server redeemed it meanwhile, or too late
        return None
    return row.access_key_id


def open_session(engine: sa.Engine, credential: Credential) -> tuple[str, Session]:
    """(the session id for the cookie, the session) for the credential, ending when it does if sooner."""
    now = time.time()
    expires = now + SESSION_SECONDS
    if credential.expires_at is not None:
        expires = min(expires, credential.expires_at)
    session_id = secrets.token_urlsafe(32)
    session = Session(credential.account_id, credential.principal_arn, credential.access_key_id,
                      secrets.token_urlsafe(32), expires)
    with engine.begin() as conn:
        conn.execute(console_sessions.delete().where(console_sessions.c.expires_at < now))
        conn.execute(console_sessions.insert().values(
            session_hash=_digest(session_id), access_key_id=session.access_key_id, account_id=session.account_id,
            principal_arn=session.principal_arn, csrf_token=session.csrf_token, expires_at=expires,
            created_at=now))
    return session_id, session


def find_session(engine: sa.Engine, session_id: str) -> Session | None:
    with reading(engine) as conn:
        row = conn.execute(sa.select(console_sessions).where(
            console_sessions.c.session_hash == _digest(session_id))).first()
    if row is None or row.expires_at < time.time():
        return None
    return Session(row.account_id, row.principal_arn, row.access_key_id, row.csrf_token, row.expires_at)


def close_session(engine: sa.Engine, session_id: str) -> None:
    with engine.begin() as conn:
        conn.execute(console_sessions.delete().where(console_sessions.c.session_hash == _digest(session_id)))
