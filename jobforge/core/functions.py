"""Lambda functions, per account and region: their configuration, code and state, and the queue of their
``Event`` invocations (kept here until run, so that none is lost to a restart).

Only ``$LATEST`` exists: a function has no published versions or aliases.
"""

from __future__ import annotations

import re
import time
import uuid
from dataclasses import dataclass, fields

import sqlalchemy as sa

from jobforge.core.errors import ServiceError
from jobforge.core.store import metadata, reading

PENDING, ACTIVE, FAILED = "Pending", "Active", "Failed"
IN_PROGRESS, SUCCESSFUL = "InProgress", "Successful"
LATEST = "$LATEST"
ZIP, IMAGE = "Zip", "Image"

lambda_functions = sa.Table(
    "lambda_functions", metadata,
    sa.Column("id", sa.String(32), primary_key=True),
    sa.Column("account_id", sa.String(12), nullable=False),
    sa.Column("region", sa.String(32), nullable=False),
    sa.Column("name", sa.String(64), nullable=False),
    sa.Column("arn", sa.String(2048), nullable=False, unique=True),
    sa.Column("runtime", sa.String(32), nullable=False),
    sa.Column("role", sa.String(2048), nullable=False),
    sa.Column("handler", sa.String(128), nullable=False),
    sa.Column("description", sa.String(256), nullable=False),
    sa.Column("timeout", sa.Integer, nullable=False),
    sa.Column("memory_size", sa.Integer, nullable=False),
    sa.Column("ephemeral_storage", sa.Integer, nullable=False),
    sa.Column("environment", sa.JSON, nullable=False),
    sa.Column("architectures", sa.JSON, nullable=False),
    sa.Column("code_file", sa.String(1024), nullable=False),  # the archive, under the data dir
    sa.Column("code_sha256", sa.String(64), nullable=False),
    sa.Column("code_size", sa.BigInteger, nullable=False),
    sa.Column("reserved_concurrency", sa.Integer),  # None: none reserved
    sa.Column("state", sa.String(16), nullable=False),
    sa.Column("state_reason", sa.Text),
    sa.Column("state_reason_code", sa.String(64)),
    sa.Column("last_update_status", sa.String(16)),
    sa.Column("last_update_reason", sa.Text),
    sa.Column("last_update_reason_code", sa.String(64)),
    sa.Column("revision_id", sa.String(36), nullable=False),
    sa.Column("last_modified", sa.Float, nullable=False),
    sa.Column("created_at", sa.Float, nullable=False),
    # PackageType Image: the URI given, the image it named then (what runs) and the ImageConfig.
    sa.Column("package_type", sa.String(8), nullable=False, server_default=ZIP),
    sa.Column("image_uri", sa.String(1024)),
    sa.Column("resolved_image_uri", sa.String(1024)),
    sa.Column("image_id", sa.String(128)),
    sa.Column("image_config", sa.JSON),
    sa.UniqueConstraint("account_id", "region", "name", name="uq_lambda_functions_account_region_name"),
)

lambda_events = sa.Table(  # Event invocations accepted and not yet run
    "lambda_events", metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("function_id", sa.String(32), nullable=False, index=True),
    sa.Column("request_id", sa.String(36), nullable=False),
    sa.Column("payload", sa.LargeBinary, nullable=False),
    sa.Column("server_id", sa.String(32), index=True),  # the server that has taken it to run (server_leases)
    sa.Column("created_at", sa.Float, nullable=False),
)


@dataclass
class Function:
    id: str
    account_id: str
    region: str
    name: str
    arn: str
    runtime: str
    role: str
    handler: str
    description: str
    timeout: int
    memory_size: int
    ephemeral_storage: int
    environment: dict
    architectures: list
    code_file: str
    code_sha256: str
    code_size: int
    reserved_concurrency: int | None
    state: str
    state_reason: str | None
    state_reason_code: str | None
    last_update_status: str | None
    last_update_reason: str | None
    last_update_reason_code: str | None
    revision_id: str
    last_modified: float
    created_at: float
    package_type: str = ZIP
    image_uri: str | None = None
    resolved_image_uri: str | None = None
    image_id: str | None = None
    image_config: dict | None = None

    @classmethod
    def from_row(cls, row) -> "Function":
        return cls(**{f.name: row._mapping[f.name] for f in fields(cls)})

    @property
    def log_group(self) -> str:
        return f"/aws/lambda/{self.name}"


def function_arn(region: str, account_id: str, name: str) -> str:
    return f"arn:aws:lambda:{region}:{account_id}:function:{name}"


_IDENTIFIER = re.compile(r"(?:arn:aws[a-zA-Z-]*:lambda:(?P<region>[a-z0-9-]+):)?(?:(?P<account>\d{12}):)?"
                         r"(?:function:)?(?P<name>[a-zA-Z0-9-_.]+)(?::(?P<qualifier>[a-zA-Z0-9-_$.]+))?")


def parse_identifier(identifier: str) -> tuple[str | None, str | None, str, str | None]:
    """(region, account, name, qualifier) of a function name, ARN or partial ARN; ValueError for none."""
    found = _IDENTIFIER.fullmatch(identifier)
    if found is None:
        raise ValueError(identifier)
    return found.group("region"), found.group("account"), found.group("name"), found.group("qualifier")


def new(account_id: str, region: str, name: str, **values) -> Function:
    now = time.time()
    return Function(id=uuid.uuid4().hex, account_id=account_id, region=region, name=name,
                    arn=function_arn(region, account_id, name), revision_id=str(uuid.uuid4()), last_modified=now,
                    created_at=now, **values)


def insert(engine: sa.Engine, function: Function) -> None:
    try:
        with engine.begin() as conn:
            conn.execute(lambda_functions.insert().values(vars(function)))
    except sa.exc.IntegrityError:
        raise ServiceError("ResourceConflictException", f"Function already exist: {function.name}",
                           Type="User") from None


def find(engine: sa.Engine, account_id: str, region: str, name: str) -> Function | None:
    with reading(engine) as conn:
        row = conn.execute(sa.select(lambda_functions).where(
            lambda_functions.c.account_id == account_id, lambda_functions.c.region == region,
            lambda_functions.c.name == name)).first()
    return Function.from_row(row) if row is not None else None


def get(engine: sa.Engine, function_id: str) -> Function | None:
    with reading(engine) as conn:
        row = conn.execute(sa.select(lambda_functions).where(lambda_functions.c.id == function_id)).first()
    return Function.from_row(row) if row is not None else None


def in_region(engine: sa.Engine, account_id: str, region: str) -> list[Function]:
    """The account's functions in a region, by name."""
    with reading(engine) as conn:
        rows = conn.execute(sa.select(lambda_functions).where(
            lambda_functions.c.account_id == account_id, lambda_functions.c.region == region)
            .order_by(lambda_functions.c.name)).all()
    return [Function.from_row(row) for row in rows]


def with_states(engine: sa.Engine, states: tuple[str, ...], update_states: tuple[str, ...]) -> list[Function]:
    """Every function in one of the states or last-update states (a restart finishes their work)."""
    with reading(engine) as conn:
        rows = conn.execute(sa.select(lambda_functions).where(sa.or_(
            lambda_functions.c.state.in_(states), lambda_functions.c.last_update_status.in_(update_states)))).all()
    return [Function.from_row(row) for row in rows]


def update(engine: sa.Engine, function: Function, *, new_revision: bool = True, **values) -> Function:
    """Change a function (a new RevisionId and LastModified unless told otherwise); the function as stored."""
    if new_revision:
        values.update(revision_id=str(uuid.uuid4()), last_modified=time.time())
    with engine.begin() as conn:
        conn.execute(lambda_functions.update().where(lambda_functions.c.id == function.id).values(**values))
        row = conn.execute(sa.select(lambda_functions).where(lambda_functions.c.id == function.id)).first()
    if row is None:
        raise ServiceError("ResourceNotFoundException", f"Function not found: {function.arn}", Type="User")
    return Function.from_row(row)


def delete(engine: sa.Engine, function: Function) -> None:
    with engine.begin() as conn:
        conn.execute(lambda_functions.delete().where(lambda_functions.c.id == function.id))
        conn.execute(lambda_events.delete().where(lambda_events.c.function_id == function.id))


def reserved_in_account(engine: sa.Engine, account_id: str, region: str, besides: str) -> int:
    """The concurrency the account's other functions in the region reserve."""
    with reading(engine) as conn:
        total = conn.execute(sa.select(sa.func.sum(lambda_functions.c.reserved_concurrency)).where(
            lambda_functions.c.account_id == account_id, lambda_functions.c.region == region,
            lambda_functions.c.id != besides)).scalar()
    return int(total or 0)


# -- Event invocations ---------------------------------------------------------------

def enqueue_event(engine: sa.Engine, function_id: str, request_id: str, payload: bytes) -> None:
    with engine.begin() as conn:
        conn.execute(lambda_events.insert().values(function_id=function_id, request_id=request_id, payload=payload,
                                                   created_at=time.time()))


def take_events(engine: sa.Engine, server_id: str, besides: set[int], limit: int) -> list:
    """Queued events for a server to run, oldest first: those it took earlier but those named (in flight), and
    those no server has taken, which it takes now (each by one server only). Rows of id, function_id,
    request_id, payload."""
    query = sa.select(lambda_events).where(sa.or_(
        lambda_events.c.server_id.is_(None),
        sa.and_(lambda_events.c.server_id == server_id, lambda_events.c.id.not_in(besides or {-1}))))
    with reading(engine) as conn:
        rows = conn.execute(query.order_by(lambda_events.c.id).limit(limit)).all()
    taken = []
    for row in rows:
        if row.server_id is None:
            with engine.begin() as conn:
                if not conn.execute(lambda_events.update().where(lambda_events.c.id == row.id,
                                                                 lambda_events.c.server_id.is_(None))
                                    .values(server_id=server_id)).rowcount:
                    continue  # another server took it
        taken.append(row)
    return taken


def release_events(engine: sa.Engine, server_id: str) -> None:
    """Give back the events a server that is gone had taken, for any server to run."""
    with engine.begin() as conn:
        conn.execute(lambda_events.update().where(lambda_events.c.server_id == server_id).values(server_id=None))


def drop_event(engine: sa.Engine, event_id: int) -> None:
    with engine.begin() as conn:
        conn.execute(lambda_events.delete().where(lambda_events.c.id == event_id))
