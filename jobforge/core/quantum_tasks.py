"""The quantum-task table (migration 0003_braket) and its record type.

Quantum tasks are not scheduled jobs: they run in the simulator pool
(``execution/quantum_task_runner.py``) in milliseconds, so they keep their own small table with
Braket's task statuses instead of going through the job scheduler.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import sqlalchemy as sa

from jobforge.core.store import metadata

quantum_tasks = sa.Table(
    "braket_quantum_tasks", metadata,
    sa.Column("id", sa.String(64), primary_key=True),
    sa.Column("arn", sa.String(2048), nullable=False, unique=True),
    sa.Column("account_id", sa.String(12), nullable=False),
    sa.Column("region", sa.String(32), nullable=False),  # the region of the request that created it
    sa.Column("status", sa.String(16), nullable=False, index=True),
    sa.Column("device_arn", sa.String(256), nullable=False),
    sa.Column("shots", sa.BigInteger, nullable=False),
    sa.Column("action", sa.Text, nullable=False),
    sa.Column("action_type", sa.String(256), nullable=False),
    sa.Column("device_parameters", sa.Text),
    sa.Column("output_bucket", sa.String(256), nullable=False),
    sa.Column("output_prefix", sa.String(1024), nullable=False),
    sa.Column("output_directory", sa.String(1100), nullable=False),
    sa.Column("job_arn", sa.String(2048), index=True),
    sa.Column("server_id", sa.String(32), index=True),  # the server that runs it (server_leases)
    sa.Column("failure_reason", sa.Text),
    sa.Column("extra", sa.JSON, nullable=False),  # associations, experimentalCapabilities
    sa.Column("created_at", sa.Float, nullable=False),
    sa.Column("started_at", sa.Float),
    sa.Column("ended_at", sa.Float),
    sa.Index("ix_braket_quantum_tasks_account_region_created", "account_id", "region", "created_at"),
)

TERMINAL = ("COMPLETED", "FAILED", "CANCELLED")


@dataclass
class QuantumTask:
    id: str
    arn: str
    account_id: str
    region: str
    status: str
    device_arn: str
    shots: int
    action: str
    action_type: str
    device_parameters: str | None
    output_bucket: str
    output_prefix: str
    output_directory: str
    job_arn: str | None
    server_id: str | None
    failure_reason: str | None
    extra: dict
    created_at: float
    started_at: float | None
    ended_at: float | None

    @classmethod
    def from_row(cls, row) -> "QuantumTask":
        return cls(**dict(row._mapping))


def transition(engine: sa.Engine, task_id: str, status: str, only_from: tuple[str, ...],
               server_id: str | None = None, **values) -> QuantumTask | None:
    """Move a task to status when it is in one of only_from (and, given server_id, that server runs it); the
    updated task, or None."""
    if status in TERMINAL:
        values.setdefault("ended_at", time.time())
    where = [quantum_tasks.c.id == task_id, quantum_tasks.c.status.in_(only_from)]
    if server_id is not None:
        where.append(quantum_tasks.c.server_id == server_id)
    with engine.begin() as conn:
        changed = conn.execute(quantum_tasks.update().where(*where).values(status=status, **values)).rowcount
        row = conn.execute(sa.select(quantum_tasks).where(quantum_tasks.c.id == task_id)).first() if changed else None
    return QuantumTask.from_row(row) if row else None
