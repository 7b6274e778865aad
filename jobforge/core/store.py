"""The durable store: SQLAlchemy tables, engine set-up, Alembic migrations.

SQLite runs in WAL mode with synchronous=NORMAL: a committed change survives
the server being killed at any instant (only a power loss could roll back the
last commits). PostgreSQL is used as given by ``--database-url``.
"""

from __future__ import annotations

import weakref
from contextlib import contextmanager
from pathlib import Path

import sqlalchemy as sa
from alembic import command
from alembic.config import Config

metadata = sa.MetaData()

accounts = sa.Table(
    "accounts", metadata,
    sa.Column("account_id", sa.String(12), primary_key=True),
    sa.Column("name", sa.String(64), nullable=False, unique=True),
    sa.Column("created_at", sa.Float, nullable=False),
)

access_keys = sa.Table(
    "access_keys", metadata,
    sa.Column("access_key_id", sa.String(32), primary_key=True),
    sa.Column("secret_key", sa.String(64), nullable=False),
    sa.Column("account_id", sa.String(12), nullable=False, index=True),
    sa.Column("principal_arn", sa.String(2048), nullable=False),
    sa.Column("session_token", sa.Text),  # set for temporary credentials
    sa.Column("job_id", sa.String(64), index=True),  # set for a job's credentials
    sa.Column("server_id", sa.String(32), index=True),  # the server whose process holds them (server_leases)
    sa.Column("expires_at", sa.Float),
    sa.Column("created_at", sa.Float, nullable=False),
)

roles = sa.Table(
    "roles", metadata,
    sa.Column("account_id", sa.String(12), primary_key=True),
    sa.Column("role_name", sa.String(64), primary_key=True),
    sa.Column("role_id", sa.String(32), nullable=False),
    sa.Column("path", sa.String(512), nullable=False),
    sa.Column("arn", sa.String(2048), nullable=False, unique=True),
    sa.Column("assume_role_policy", sa.Text, nullable=False),
    sa.Column("description", sa.String(1000)),
    sa.Column("max_session_duration", sa.Integer, nullable=False),
    sa.Column("created_at", sa.Float, nullable=False),
)
# IAM does not distinguish role names by case: one name per account whatever its case
# (migration 0004_roles_ci); lookups go through lower(role_name) and so use this index.
sa.Index("uq_roles_account_lower_name", roles.c.account_id, sa.func.lower(roles.c.role_name), unique=True)

jobs_table = sa.Table(
    "jobs", metadata,
    sa.Column("id", sa.String(64), primary_key=True),
    sa.Column("account_id", sa.String(12), nullable=False),
    sa.Column("region", sa.String(32), nullable=False),  # the region of the request that created it
    sa.Column("family", sa.String(64), nullable=False),
    sa.Column("name", sa.String(256), nullable=False),
    sa.Column("arn", sa.String(2048), nullable=False, unique=True),
    sa.Column("state", sa.String(16), nullable=False, index=True),
    sa.Column("secondary_status", sa.String(64)),
    sa.Column("status_message", sa.Text),
    sa.Column("failure_reason", sa.Text),
    sa.Column("workload", sa.String(128), nullable=False),
    sa.Column("spec", sa.JSON, nullable=False),
    sa.Column("result", sa.JSON, nullable=False),
    sa.Column("resources", sa.JSON, nullable=False),
    sa.Column("transitions", sa.JSON, nullable=False),
    sa.Column("role_arn", sa.String(2048)),
    sa.Column("max_runtime", sa.Float),
    sa.Column("stop_reason", sa.String(16)),
    sa.Column("attempt", sa.Integer, nullable=False, default=0),
    sa.Column("handle", sa.String(256)),  # the executor's own reference to the running attempt
    sa.Column("worker_token_hash", sa.String(64)),
    sa.Column("created_at", sa.Float, nullable=False),
    sa.Column("updated_at", sa.Float, nullable=False),
    sa.Column("started_at", sa.Float),
    sa.Column("ended_at", sa.Float),
    sa.UniqueConstraint("account_id", "region", "family", "name", name="uq_jobs_account_region_family_name"),
    sa.Index("ix_jobs_account_region_family_created", "account_id", "region", "family", "created_at"),
)

job_metrics = sa.Table(
    "job_metrics", metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("job_id", sa.String(64), nullable=False, index=True),
    sa.Column("name", sa.String(255), nullable=False),
    sa.Column("value", sa.Float, nullable=False),
    sa.Column("step", sa.Integer),
    sa.Column("timestamp", sa.Float, nullable=False),
)

job_logs = sa.Table(
    "job_logs", metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("job_id", sa.String(64), nullable=False, index=True),
    sa.Column("stream", sa.String(512), nullable=False),
    sa.Column("timestamp", sa.Float, nullable=False),
    sa.Column("message", sa.Text, nullable=False),
)

idempotency = sa.Table(
    "idempotency", metadata,
    sa.Column("account_id", sa.String(12), primary_key=True),
    sa.Column("scope", sa.String(128), primary_key=True),
    sa.Column("token", sa.String(256), primary_key=True),
    sa.Column("request_hash", sa.String(64), nullable=False),
    sa.Column("resource_arn", sa.String(2048), nullable=False),
    sa.Column("created_at", sa.Float, nullable=False),
)

tags = sa.Table(
    "tags", metadata,
    sa.Column("resource_arn", sa.String(2048), primary_key=True),
    sa.Column("key", sa.String(256), primary_key=True),
    sa.Column("value", sa.String(512), nullable=False),
    sa.Column("account_id", sa.String(12), nullable=False),
)

log_queries = sa.Table(  # CloudWatch Logs Insights queries
    "log_queries", metadata,
    sa.Column("query_id", sa.String(64), primary_key=True),
    sa.Column("account_id", sa.String(12), nullable=False),
    sa.Column("region", sa.String(32), nullable=False),  # the region of the request that started it
    sa.Column("spec", sa.JSON, nullable=False),  # the request and, once run, its results
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("created_at", sa.Float, nullable=False),
)

invocation_logging = sa.Table(  # Bedrock model-invocation logging, per account and region
    "invocation_logging", metadata,
    sa.Column("account_id", sa.String(12), primary_key=True),
    sa.Column("region", sa.String(32), primary_key=True),
    sa.Column("config", sa.JSON, nullable=False),
    sa.Column("updated_at", sa.Float, nullable=False),
)

managed_policies = sa.Table(  # IAM customer-managed policies (the AWS-managed ones are in code)
    "managed_policies", metadata,
    sa.Column("arn", sa.String(2048), primary_key=True),
    sa.Column("account_id", sa.String(12), nullable=False),
    sa.Column("policy_name", sa.String(128), nullable=False),
    sa.Column("policy_id", sa.String(32), nullable=False),
    sa.Column("path", sa.String(512), nullable=False),
    sa.Column("description", sa.String(1000)),
    sa.Column("default_version", sa.String(16), nullable=False),
    sa.Column("next_version", sa.Integer, nullable=False),
    sa.Column("created_at", sa.Float, nullable=False),
    sa.Column("updated_at", sa.Float, nullable=False),
)
# Policy names, like role names, are one per account whatever their case.
sa.Index("uq_managed_policies_account_lower_name", managed_policies.c.account_id,
         sa.func.lower(managed_policies.c.policy_name), unique=True)

policy_versions = sa.Table(
    "policy_versions", metadata,
    sa.Column("policy_arn", sa.String(2048), primary_key=True),
    sa.Column("version_id", sa.String(16), primary_key=True),
    sa.Column("document", sa.Text, nullable=False),
    sa.Column("created_at", sa.Float, nullable=False),
)

role_policies = sa.Table(  # inline policies, by the role's id (unchanged by a role name's case)
    "role_policies", metadata,
    sa.Column("role_id", sa.String(32), primary_key=True),
    sa.Column("policy_name", sa.String(128), primary_key=True),
    sa.Column("document", sa.Text, nullable=False),
)

role_policy_attachments = sa.Table(
    "role_policy_attachments", metadata,
    sa.Column("role_id", sa.String(32), primary_key=True),
    sa.Column("policy_arn", sa.String(2048), primary_key=True),
    sa.Column("account_id", sa.String(12), nullable=False, index=True),
    sa.Column("attached_at", sa.Float, nullable=False),
)


def _sqlite_pragmas(dbapi_connection, _record):
    # The driver never begins a transaction: the writing engine's _sqlite_begin does.
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA busy_timeout=10000")
    cursor.close()


def _sqlite_begin(conn):
    # IMMEDIATE takes the write lock up front: a read-then-write transaction
    # can then never fail on a snapshot that another writer made stale.
    conn.exec_driver_sql("BEGIN IMMEDIATE")


MIGRATION_LOCK_KEY = 0x6A6F62666F726D  # "jobform": held while one server migrates the schema


# A SQLite engine's twin for reading(): no "begin" listener, so each statement
# runs in its own implicit read transaction, which blocks no writer; and a
# connection without event listeners costs SQLAlchemy a third less per request.
_READERS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


@contextmanager
def reading(engine: sa.Engine):
    """A connection for a read-only request: no write lock on SQLite."""
    with _READERS.get(engine, engine).connect() as conn:
        yield conn


def _sqlite_engine(url: str) -> sa.Engine:
    engine = sa.create_engine(url, connect_args={"check_same_thread": False, "timeout": 10})
    sa.event.listen(engine, "connect", _sqlite_pragmas)
    return engine


def create_engine(url: str) -> sa.Engine:
    if url.startswith("sqlite"):
        path = url.split("///", 1)[-1]
        if path and path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        engine = _sqlite_engine(url)
        sa.event.listen(engine, "begin", _sqlite_begin)
        if path and path != ":memory:":  # an in-memory database cannot be shared by a second engine
            reader = _sqlite_engine(url)
            sa.event.listen(engine, "engine_disposed", lambda _: reader.dispose())
            _READERS[engine] = reader
        return engine
    if url.startswith("postgresql://"):
        url = "postgresql+psycopg://" + url[len("postgresql://"):]
    return sa.create_engine(url, pool_size=10, max_overflow=20, pool_pre_ping=True)


def migrate(engine: sa.Engine) -> None:
    """Bring the schema to the newest revision of every migration branch."""
    config = Config()
    config.set_main_option("script_location", str(Path(__file__).with_name("migrations")))
    with engine.begin() as connection:
        if engine.dialect.name == "postgresql":  # servers starting together on one database migrate one by one
            connection.execute(sa.text("SELECT pg_advisory_xact_lock(:key)"), {"key": MIGRATION_LOCK_KEY})
        config.attributes["connection"] = connection
        command.upgrade(config, "heads")


def open_store(url: str) -> sa.Engine:
    engine = create_engine(url)
    migrate(engine)
    return engine
