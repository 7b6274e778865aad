"""The quantum-task table (migration 0003_braket) and its record type.

Quantum tasks are not scheduled jobs: they run in the task pool
(``task_runner``) in milliseconds, so they keep their own small table with
Braket's task statuses instead of going through the job scheduler.
"""

from __future__ import annotations

from dataclasses import dataclass

import sqlalchemy as sa

from jobforge.core.store import metadata

quantum_tasks = sa.Table(
    "braket_quantum_tasks", metadata,
    sa.Column("id", sa.String(64), primary_key=True),
    sa.Column("arn", sa.String(2048), nullable=False, unique=True),
    sa.Column("account_id", sa.String(12), nullable=False),
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
    sa.Column("failure_reason", sa.Text),
    sa.Column("extra", sa.JSON, nullable=False),  # associations, experimentalCapabilities
    sa.Column("created_at", sa.Float, nullable=False),
    sa.Column("started_at", sa.Float),
    sa.Column("ended_at", sa.Float),
    sa.Index("ix_braket_quantum_tasks_account_created", "account_id", "created_at"),
)

TERMINAL = ("COMPLETED", "FAILED", "CANCELLED")


@dataclass
class QuantumTask:
    id: str
    arn: str
    account_id: str
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
    failure_reason: str | None
    extra: dict
    created_at: float
    started_at: float | None
    ended_at: float | None

    @classmethod
    def from_row(cls, row) -> "QuantumTask":
        return cls(**dict(row._mapping))
