"""Accounts, their access keys, roles and temporary credentials."""

from __future__ import annotations

import json
import secrets
import string
import threading
import time
from dataclasses import dataclass
from typing import Callable

import sqlalchemy as sa

from jobforge.core.store import access_keys, accounts, reading, role_policy_attachments, roles

_KEY_CHARS = string.ascii_uppercase + string.digits
DEFAULT_ROLES = (  # (path, name, description)
    # The generic execution role every job family accepts.
    ("/", "JobforgeExecutionRole", "Default execution role for jobforge jobs"),
    # The Braket SDK looks for a role with this name prefix under /service-role/ when none is given.
    ("/service-role/", "AmazonBraketJobsExecutionRole", "Default role of Braket hybrid jobs"),
)
# What the default roles may do, said as IAM says it: jobforge checks no identity policy on requests, so a
# job's credentials reach everything in its account (and SDKs that simulate the role's policies agree).
DEFAULT_ROLE_POLICY = "arn:aws:iam::aws:policy/AdministratorAccess"
TRUST_POLICY = json.dumps({
    "Version": "2012-10-17",
    "Statement": [{
        "Effect": "Allow",
        "Principal": {"Service": ["sagemaker.amazonaws.com", "bedrock.amazonaws.com", "braket.amazonaws.com"]},
        "Action": "sts:AssumeRole",
    }],
})


@dataclass(frozen=True)
class Credential:
    access_key_id: str
    secret_key: str
    account_id: str
    principal_arn: str
    session_token: str | None = None
    job_id: str | None = None
    expires_at: float | None = None


def _key_id(prefix: str) -> str:
    return prefix + "".join(secrets.choice(_KEY_CHARS) for _ in range(16))


def _secret() -> str:
    return secrets.token_urlsafe(30)[:40]


def create_account(engine: sa.Engine, name: str) -> Credential:
    """A fresh account with a root access key pair and the default roles."""
    now = time.time()
    with engine.begin() as conn:
        if conn.execute(sa.select(accounts.c.account_id).where(accounts.c.name == name)).first():
            raise ValueError(f"An account named {name!r} already exists")
        while True:
            account_id = "".join(secrets.choice(string.digits[1:]) for _ in range(1)) + "".join(
                secrets.choice(string.digits) for _ in range(11))
            if not conn.execute(sa.select(accounts.c.account_id).where(accounts.c.account_id == account_id)).first():
                break
        conn.execute(accounts.insert().values(account_id=account_id, name=name, created_at=now))
        credential = Credential(_key_id("AKIA"), _secret(), account_id, f"arn:aws:iam::{account_id}:root")
        conn.execute(access_keys.insert().values(
            access_key_id=credential.access_key_id, secret_key=credential.secret_key, account_id=account_id,
            principal_arn=credential.principal_arn, created_at=now))
        for path, role_name, description in DEFAULT_ROLES:
            row = role_row(account_id, role_name, path, TRUST_POLICY, description, 3600, now)
            conn.execute(roles.insert().values(row))
            conn.execute(role_policy_attachments.insert().values(
                role_id=row["role_id"], policy_arn=DEFAULT_ROLE_POLICY, account_id=account_id, attached_at=now))
    return credential


def role_row(account_id, role_name, path, policy, description, max_session_duration, now) -> dict:
    return dict(account_id=account_id, role_name=role_name, role_id="AROA" + _key_id("")[:17],
                path=path, arn=f"arn:aws:iam::{account_id}:role{path}{role_name}",
                assume_role_policy=policy, description=description,
                max_session_duration=max_session_duration, created_at=now)


def account_credentials(engine: sa.Engine, name: str) -> Credential | None:
    with reading(engine) as conn:
        row = conn.execute(
            sa.select(access_keys).join(accounts, accounts.c.account_id == access_keys.c.account_id)
            .where(accounts.c.name == name, access_keys.c.session_token.is_(None))
            .order_by(access_keys.c.created_at)).first()
    return _credential(row) if row else None


def _credential(row) -> Credential:
    m = row._mapping
    return Credential(m["access_key_id"], m["secret_key"], m["account_id"], m["principal_arn"],
                      m["session_token"], m["job_id"], m["expires_at"])


# IAM role names are not distinguished by case; the unique index on (account_id,
# lower(role_name)) serves this lookup, and lower() on both sides keeps it the database's own folding.
ROLE_BY_NAME = sa.select(roles).where(roles.c.account_id == sa.bindparam("account"),
                                      sa.func.lower(roles.c.role_name) == sa.func.lower(sa.bindparam("name")))


def find_role(engine: sa.Engine, account_id: str, role_arn: str):
    """The role an ARN of this account names (its name in any case, its path as created), or None."""
    prefix = f"arn:aws:iam::{account_id}:role/"
    if not role_arn.startswith(prefix):
        return None
    path, _, name = role_arn[len(prefix) - 1:].rpartition("/")
    if not name:
        return None
    with reading(engine) as conn:
        row = conn.execute(ROLE_BY_NAME, {"account": account_id, "name": name}).first()
    return row if row is not None and row.path == path + "/" else None


def issue_job_credentials(engine: sa.Engine, account_id: str, role_arn: str, job_id: str,
                          lifetime: float = 7 * 24 * 3600) -> Credential:
    """Temporary credentials of a role, for one job; revoked when the job ends."""
    role_name = role_arn.rsplit("/", 1)[-1]
    return issue_temporary_credentials(
        engine, account_id, f"arn:aws:sts::{account_id}:assumed-role/{role_name}/jobforge-{job_id[:16]}",
        lifetime, job_id)


def issue_temporary_credentials(engine: sa.Engine, account_id: str, principal_arn: str, lifetime: float,
                                job_id: str | None = None, server_id: str | None = None) -> Credential:
    """Credentials with a session token that act as ``principal_arn`` until they expire (or, for a job's,
    until the job ends; for a process of a server's, ``server_id``, at the latest when that server is gone).
    Session credentials that expired a day ago or more are dropped meanwhile."""
    now = time.time()
    credential = Credential(_key_id("ASIA"), _secret(), account_id, principal_arn, secrets.token_urlsafe(96),
                            job_id, now + lifetime)
    with engine.begin() as conn:
        conn.execute(access_keys.delete().where(access_keys.c.job_id.is_(None),
                                                access_keys.c.expires_at < now - 24 * 3600))
        conn.execute(access_keys.insert().values(
            access_key_id=credential.access_key_id, secret_key=credential.secret_key, account_id=account_id,
            principal_arn=credential.principal_arn, session_token=credential.session_token, job_id=job_id,
            server_id=server_id, expires_at=credential.expires_at, created_at=now))
    return credential


class KeyRing:
    """Access-key lookups for every request, cached; revocation is immediate on this server, and seen by the
    other servers of a shared database within RECHECK_SECONDS (each reads a cached key again after that)."""

    RECHECK_SECONDS = 2.0

    def __init__(self, engine: sa.Engine):
        self.engine = engine
        self._cache: dict[str, tuple[float, Credential]] = {}  # key id → (when read, credential)
        self._lock = threading.Lock()

    def get(self, access_key_id: str) -> Credential | None:
        cached = self._cache.get(access_key_id)
        if cached is not None and time.monotonic() - cached[0] < self.RECHECK_SECONDS:
            return cached[1]
        read_at = time.monotonic()
        with reading(self.engine) as conn:
            row = conn.execute(sa.select(access_keys).where(access_keys.c.access_key_id == access_key_id)).first()
        credential = _credential(row) if row else None
        with self._lock:
            if credential is not None:  # unknown keys are not cached: they may be created later
                self._cache[access_key_id] = (read_at, credential)
            else:
                self._cache.pop(access_key_id, None)
        return credential

    def revoke_job(self, job_id: str) -> None:
        self._revoke(access_keys.c.job_id == job_id, lambda owner: owner == job_id)

    def revoke_server(self, server_id: str | None, prefix: str) -> None:
        """Revoke the credentials a server issued to its processes whose names start with prefix (the server
        is gone, and they with it); server None: those issued before servers recorded themselves."""
        owner = access_keys.c.server_id.is_(None) if server_id is None else access_keys.c.server_id == server_id
        self._revoke(sa.and_(owner,
                             access_keys.c.job_id.startswith(prefix, autoescape=True)),
                     lambda owner: owner is not None and owner.startswith(prefix))

    def _revoke(self, where, owned: Callable[[str | None], bool]) -> None:
        with self.engine.begin() as conn:
            conn.execute(access_keys.delete().where(where))
        with self._lock:
            for key, (_, credential) in list(self._cache.items()):
                if owned(credential.job_id):
                    del self._cache[key]
