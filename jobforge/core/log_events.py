"""Stored CloudWatch Logs: log groups, streams and events written by the server's long-lived sources.

Jobs keep their lines in ``job_logs`` and their kinds declare the group they
appear in; everything else that logs (Lambda functions now; agent runtimes
and model endpoints next) writes here, per account and region: a group and
a stream are created on their first event, as AWS creates them for its
services. The CloudWatch Logs API (``jobforge.api.logs``) serves both.
"""

from __future__ import annotations

import time

import sqlalchemy as sa

from jobforge.core.store import metadata, reading

log_groups = sa.Table(
    "log_groups", metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("account_id", sa.String(12), nullable=False),
    sa.Column("region", sa.String(32), nullable=False),
    sa.Column("name", sa.String(512), nullable=False),
    sa.Column("created_at", sa.Float, nullable=False),
    sa.UniqueConstraint("account_id", "region", "name", name="uq_log_groups_account_region_name"),
)

log_streams = sa.Table(
    "log_streams", metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("group_id", sa.Integer, nullable=False),
    sa.Column("name", sa.String(512), nullable=False),
    sa.Column("created_at", sa.Float, nullable=False),
    sa.UniqueConstraint("group_id", "name", name="uq_log_streams_group_name"),
)

log_events = sa.Table(
    "log_events", metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("stream_id", sa.Integer, nullable=False),
    sa.Column("timestamp", sa.Float, nullable=False),
    sa.Column("message", sa.Text, nullable=False),
    sa.Index("ix_log_events_stream_id", "stream_id", "id"),
)


def _group_id(conn: sa.Connection, account_id: str, region: str, group: str, now: float) -> int:
    query = sa.select(log_groups.c.id).where(log_groups.c.account_id == account_id, log_groups.c.region == region,
                                             log_groups.c.name == group)
    found = conn.execute(query).scalar()
    if found is None:
        found = conn.execute(log_groups.insert().values(account_id=account_id, region=region, name=group,
                                                        created_at=now)).inserted_primary_key[0]
    return found


def _stream_id(conn: sa.Connection, group_id: int, stream: str, now: float) -> int:
    query = sa.select(log_streams.c.id).where(log_streams.c.group_id == group_id, log_streams.c.name == stream)
    found = conn.execute(query).scalar()
    if found is None:
        found = conn.execute(log_streams.insert().values(group_id=group_id, name=stream,
                                                         created_at=now)).inserted_primary_key[0]
    return found


def put(engine: sa.Engine, batches: list[tuple[str, str, str, str, list[tuple[float, str]]]]) -> None:
    """Write events in one transaction: each batch is (account id, region, group, stream, [(epoch, message)])."""
    now = time.time()
    with engine.begin() as conn:
        for account_id, region, group, stream, events in batches:
            if not events:
                continue
            stream_id = _stream_id(conn, _group_id(conn, account_id, region, group, now), stream, now)
            conn.execute(log_events.insert(), [dict(stream_id=stream_id, timestamp=ts, message=message)
                                               for ts, message in events])


def groups(engine: sa.Engine, account_id: str, region: str) -> dict[str, tuple[int, float]]:
    """The account's stored groups in a region: name → (id, creation time)."""
    with reading(engine) as conn:
        rows = conn.execute(sa.select(log_groups.c.name, log_groups.c.id, log_groups.c.created_at).where(
            log_groups.c.account_id == account_id, log_groups.c.region == region)).all()
    return {row.name: (row.id, row.created_at) for row in rows}


def streams(engine: sa.Engine, group_id: int) -> dict[int, str]:
    """Stream id → name, for the streams of a group."""
    with reading(engine) as conn:
        rows = conn.execute(sa.select(log_streams.c.id, log_streams.c.name)
                            .where(log_streams.c.group_id == group_id)).all()
    return {row.id: row.name for row in rows}
