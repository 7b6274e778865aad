"""Bedrock AgentCore runtimes, per account and region: each runtime's versions (the configuration and code
every create or update made) and its endpoints (``DEFAULT`` follows the newest ready version).
"""

from __future__ import annotations

import secrets
import string
import time
import uuid
from dataclasses import dataclass, fields

import sqlalchemy as sa

from jobforge.core import idempotency
from jobforge.core.errors import ServiceError
from jobforge.core.idempotency import ClientToken
from jobforge.core.store import metadata, reading

CREATING, CREATE_FAILED, UPDATING, UPDATE_FAILED, READY = (
    "CREATING", "CREATE_FAILED", "UPDATING", "UPDATE_FAILED", "READY")
DEFAULT_ENDPOINT = "DEFAULT"
_ID_CHARS = string.ascii_letters + string.digits

agent_runtimes = sa.Table(
    "agent_runtimes", metadata,
    sa.Column("id", sa.String(32), primary_key=True),
    sa.Column("account_id", sa.String(12), nullable=False),
    sa.Column("region", sa.String(32), nullable=False),
    sa.Column("name", sa.String(48), nullable=False),
    sa.Column("runtime_id", sa.String(64), nullable=False),  # NAME-xxxxxxxxxx, as the API names it
    sa.Column("arn", sa.String(2048), nullable=False, unique=True),
    sa.Column("latest_version", sa.Integer, nullable=False),
    sa.Column("created_at", sa.Float, nullable=False),
    sa.UniqueConstraint("account_id", "region", "name", name="uq_agent_runtimes_account_region_name"),
    sa.UniqueConstraint("account_id", "region", "runtime_id", name="uq_agent_runtimes_account_region_id"),
)

agent_runtime_versions = sa.Table(
    "agent_runtime_versions", metadata,
    sa.Column("runtime", sa.String(32), primary_key=True),
    sa.Column("version", sa.Integer, primary_key=True),
    sa.Column("config", sa.JSON, nullable=False),  # the request's members, as GetAgentRuntime returns them
    sa.Column("code_file", sa.String(1024), nullable=False),  # the code archive, under the data dir
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("failure_reason", sa.Text),
    sa.Column("created_at", sa.Float, nullable=False),
    sa.Column("updated_at", sa.Float, nullable=False),
)

agent_runtime_endpoints = sa.Table(
    "agent_runtime_endpoints", metadata,
    sa.Column("runtime", sa.String(32), primary_key=True),
    sa.Column("name", sa.String(48), primary_key=True),
    sa.Column("endpoint_id", sa.String(64), nullable=False),
    sa.Column("live_version", sa.Integer),  # None until a version it targets is ready
    sa.Column("target_version", sa.Integer, nullable=False),
    sa.Column("follows_latest", sa.Boolean, nullable=False),  # DEFAULT: moves to each new version
    sa.Column("description", sa.String(256)),
    sa.Column("created_at", sa.Float, nullable=False),
    sa.Column("updated_at", sa.Float, nullable=False),
)


@dataclass
class AgentRuntime:
    id: str
    account_id: str
    region: str
    name: str
    runtime_id: str
    arn: str
    latest_version: int
    created_at: float


@dataclass
class Version:
    runtime: str
    version: int
    config: dict
    code_file: str
    status: str
    failure_reason: str | None
    created_at: float
    updated_at: float


@dataclass
class Endpoint:
    runtime: str
    name: str
    endpoint_id: str
    live_version: int | None
    target_version: int
    follows_latest: bool
    description: str | None
    created_at: float
    updated_at: float


def _row(cls, row):
    return cls(**{f.name: row._mapping[f.name] for f in fields(cls)})


def generated_id(name: str) -> str:
    """An id as AgentCore makes them: the name, a dash and ten letters or digits."""
    return f"{name}-{''.join(secrets.choice(_ID_CHARS) for _ in range(10))}"


def runtime_arn(region: str, account_id: str, runtime_id: str) -> str:
    return f"arn:aws:bedrock-agentcore:{region}:{account_id}:runtime/{runtime_id}"


def log_group(runtime: AgentRuntime, endpoint: str) -> str:
    return f"/aws/bedrock-agentcore/runtimes/{runtime.runtime_id}-{endpoint}"


def new_key() -> str:
    """The record id of a runtime about to be created (its code is kept under it)."""
    return uuid.uuid4().hex


def create(engine: sa.Engine, key: str, account_id: str, region: str, name: str, config: dict, code_file: str,
           token: ClientToken | None) -> AgentRuntime:
    """A new runtime, its version 1 (CREATING) and its DEFAULT endpoint."""
    now = time.time()
    runtime_id = generated_id(name)
    runtime = AgentRuntime(key, account_id, region, name, runtime_id,
                           runtime_arn(region, account_id, runtime_id), 1, now)
    try:
        with engine.begin() as conn:
            conn.execute(agent_runtimes.insert().values(vars(runtime)))
            conn.execute(agent_runtime_versions.insert().values(
                runtime=runtime.id, version=1, config=config, code_file=code_file, status=CREATING,
                failure_reason=None, created_at=now, updated_at=now))
            conn.execute(agent_runtime_endpoints.insert().values(
                runtime=runtime.id, name=DEFAULT_ENDPOINT, endpoint_id=generated_id(DEFAULT_ENDPOINT),
                live_version=None, target_version=1, follows_latest=True, description=None, created_at=now,
                updated_at=now))
            idempotency.remember(conn, token, runtime.arn)
    except sa.exc.IntegrityError:
        raise ServiceError("ConflictException", f"An agent runtime named {name} already exists.") from None
    return runtime


def add_version(engine: sa.Engine, runtime: AgentRuntime, config: dict, code_file: str) -> Version:
    """The runtime's next version (UPDATING until its code is ready); endpoints that follow the newest target it."""
    now = time.time()
    with engine.begin() as conn:
        latest = conn.execute(sa.select(agent_runtimes.c.latest_version).where(
            agent_runtimes.c.id == runtime.id)).scalar()
        if latest is None:
            raise ServiceError("ResourceNotFoundException", f"Agent runtime {runtime.runtime_id} not found.")
        version = latest + 1
        conn.execute(agent_runtimes.update().where(agent_runtimes.c.id == runtime.id).values(latest_version=version))
        conn.execute(agent_runtime_versions.insert().values(
            runtime=runtime.id, version=version, config=config, code_file=code_file, status=UPDATING,
            failure_reason=None, created_at=now, updated_at=now))
        conn.execute(agent_runtime_endpoints.update().where(
            agent_runtime_endpoints.c.runtime == runtime.id, agent_runtime_endpoints.c.follows_latest)
            .values(target_version=version, updated_at=now))
    runtime.latest_version = version
    return get_version(engine, runtime.id, version)


def settle(engine: sa.Engine, version: Version, failure: str | None) -> None:
    """A version's code is ready (or failed with the reason); the endpoints targeting it go live on it."""
    now = time.time()
    if failure is None:
        status = READY
    else:
        status = CREATE_FAILED if version.version == 1 else UPDATE_FAILED
    with engine.begin() as conn:
        conn.execute(agent_runtime_versions.update().where(
            agent_runtime_versions.c.runtime == version.runtime, agent_runtime_versions.c.version == version.version)
            .values(status=status, failure_reason=failure, updated_at=now))
        if failure is None:
            conn.execute(agent_runtime_endpoints.update().where(
                agent_runtime_endpoints.c.runtime == version.runtime,
                agent_runtime_endpoints.c.target_version == version.version).values(
                live_version=version.version, updated_at=now))


def find(engine: sa.Engine, account_id: str, region: str, runtime_id: str) -> AgentRuntime | None:
    with reading(engine) as conn:
        row = conn.execute(sa.select(agent_runtimes).where(
            agent_runtimes.c.account_id == account_id, agent_runtimes.c.region == region,
            agent_runtimes.c.runtime_id == runtime_id)).first()
    return _row(AgentRuntime, row) if row is not None else None


def by_arn(engine: sa.Engine, arn: str) -> AgentRuntime | None:
    with reading(engine) as conn:
        row = conn.execute(sa.select(agent_runtimes).where(agent_runtimes.c.arn == arn)).first()
    return _row(AgentRuntime, row) if row is not None else None


def get(engine: sa.Engine, runtime_key: str) -> AgentRuntime | None:
    with reading(engine) as conn:
        row = conn.execute(sa.select(agent_runtimes).where(agent_runtimes.c.id == runtime_key)).first()
    return _row(AgentRuntime, row) if row is not None else None


def in_region(engine: sa.Engine, account_id: str, region: str) -> list[AgentRuntime]:
    with reading(engine) as conn:
        rows = conn.execute(sa.select(agent_runtimes).where(
            agent_runtimes.c.account_id == account_id, agent_runtimes.c.region == region)
            .order_by(agent_runtimes.c.runtime_id)).all()
    return [_row(AgentRuntime, row) for row in rows]


def get_version(engine: sa.Engine, runtime_key: str, version: int) -> Version | None:
    with reading(engine) as conn:
        row = conn.execute(sa.select(agent_runtime_versions).where(
            agent_runtime_versions.c.runtime == runtime_key, agent_runtime_versions.c.version == version)).first()
    return _row(Version, row) if row is not None else None


def versions(engine: sa.Engine, runtime_key: str) -> list[Version]:
    """The runtime's versions, newest first."""
    with reading(engine) as conn:
        rows = conn.execute(sa.select(agent_runtime_versions).where(
            agent_runtime_versions.c.runtime == runtime_key).order_by(agent_runtime_versions.c.version.desc())).all()
    return [_row(Version, row) for row in rows]


def unsettled(engine: sa.Engine) -> list[Version]:
    """Every version whose code a server had not made ready when it stopped."""
    with reading(engine) as conn:
        rows = conn.execute(sa.select(agent_runtime_versions).where(
            agent_runtime_versions.c.status.in_((CREATING, UPDATING)))).all()
    return [_row(Version, row) for row in rows]


def endpoints(engine: sa.Engine, runtime_key: str) -> list[Endpoint]:
    with reading(engine) as conn:
        rows = conn.execute(sa.select(agent_runtime_endpoints).where(
            agent_runtime_endpoints.c.runtime == runtime_key).order_by(agent_runtime_endpoints.c.name)).all()
    return [_row(Endpoint, row) for row in rows]


def endpoint(engine: sa.Engine, runtime_key: str, name: str) -> Endpoint | None:
    with reading(engine) as conn:
        row = conn.execute(sa.select(agent_runtime_endpoints).where(
            agent_runtime_endpoints.c.runtime == runtime_key, agent_runtime_endpoints.c.name == name)).first()
    return _row(Endpoint, row) if row is not None else None


def add_endpoint(engine: sa.Engine, runtime_key: str, name: str, version: int, live: bool,
                 description: str | None) -> Endpoint:
    now = time.time()
    try:
        with engine.begin() as conn:
            conn.execute(agent_runtime_endpoints.insert().values(
                runtime=runtime_key, name=name, endpoint_id=generated_id(name), live_version=version if live else None,
                target_version=version, follows_latest=False, description=description, created_at=now,
                updated_at=now))
    except sa.exc.IntegrityError:
        raise ServiceError("ConflictException", f"An endpoint named {name} already exists.") from None
    return endpoint(engine, runtime_key, name)


def retarget_endpoint(engine: sa.Engine, found: Endpoint, version: int, live: bool,
                      description: str | None) -> Endpoint:
    values = dict(target_version=version, updated_at=time.time())
    if live:
        values["live_version"] = version
    if description is not None:
        values["description"] = description
    with engine.begin() as conn:
        conn.execute(agent_runtime_endpoints.update().where(
            agent_runtime_endpoints.c.runtime == found.runtime, agent_runtime_endpoints.c.name == found.name)
            .values(**values))
    return endpoint(engine, found.runtime, found.name)


def delete_endpoint(engine: sa.Engine, found: Endpoint) -> None:
    with engine.begin() as conn:
        conn.execute(agent_runtime_endpoints.delete().where(
            agent_runtime_endpoints.c.runtime == found.runtime, agent_runtime_endpoints.c.name == found.name))


def delete(engine: sa.Engine, runtime: AgentRuntime) -> None:
    with engine.begin() as conn:
        conn.execute(agent_runtimes.delete().where(agent_runtimes.c.id == runtime.id))
        conn.execute(agent_runtime_versions.delete().where(agent_runtime_versions.c.runtime == runtime.id))
        conn.execute(agent_runtime_endpoints.delete().where(agent_runtime_endpoints.c.runtime == runtime.id))
