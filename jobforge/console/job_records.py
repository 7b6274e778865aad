"""The read-only layer over the job store: every family's jobs of one account, their metrics, logs,
timeline and output location. Every query here is bounded to the account of the session asking; actions
on jobs go through the families' own operations (``families``)."""

from __future__ import annotations

from dataclasses import dataclass

import sqlalchemy as sa

from jobforge.core import kinds
from jobforge.core.jobs import TERMINAL, Job
from jobforge.core.store import job_logs, job_metrics, jobs_table, reading

LIST_LIMIT = 200
LOG_BATCH = 2000
METRIC_BATCH = 5000


@dataclass(frozen=True)
class Filters:
    family: str = ""
    status: str = ""  # "active", "terminal" or one engine state
    search: str = ""

    def where(self, account_id: str) -> list:
        conditions = [jobs_table.c.account_id == account_id]
        if self.family:
            conditions.append(jobs_table.c.family == self.family)
        if self.status == "active":
            conditions.append(jobs_table.c.state.notin_(TERMINAL))
        elif self.status == "terminal":
            conditions.append(jobs_table.c.state.in_(TERMINAL))
        elif self.status:
            conditions.append(jobs_table.c.state == self.status)
        if self.search:
            conditions.append(sa.or_(jobs_table.c.name.icontains(self.search, autoescape=True),
                                     jobs_table.c.arn.icontains(self.search, autoescape=True)))
        return conditions

    def matches(self, row) -> bool:
        """Whether a listed row passes the filters (as ``where`` would have it, for rows read without them)."""
        if self.family and row.family != self.family:
            return False
        if self.status == "active" and row.state in TERMINAL or self.status == "terminal" and row.state not in \
                TERMINAL or self.status not in ("", "active", "terminal") and row.state != self.status:
            return False
        wanted = self.search.lower()
        return not wanted or wanted in row.name.lower() or wanted in row.arn.lower()


# Only what the list shows is read: a job's spec and result can be large.
LIST_COLUMNS = (jobs_table.c.id, jobs_table.c.family, jobs_table.c.name, jobs_table.c.arn, jobs_table.c.region,
                jobs_table.c.state,
                jobs_table.c.secondary_status, jobs_table.c.created_at, jobs_table.c.started_at,
                jobs_table.c.ended_at, jobs_table.c.updated_at)


def last_change(engine: sa.Engine, account_id: str) -> float:
    """When any of the account's jobs last changed: the version of a job list, whose later polls ask only for
    the rows changed since (``changed_since``)."""
    with reading(engine) as conn:
        return conn.execute(sa.select(sa.func.max(jobs_table.c.updated_at))
                            .where(jobs_table.c.account_id == account_id)).scalar() or 0.0


def changed_since(engine: sa.Engine, account_id: str, since: float) -> list:
    """The account's jobs changed after ``since``, oldest first, whatever the filters (a job may have left them)."""
    with reading(engine) as conn:
        return conn.execute(sa.select(*LIST_COLUMNS).where(jobs_table.c.account_id == account_id,
                                                           jobs_table.c.updated_at > since)
                            .order_by(jobs_table.c.created_at).limit(LIST_LIMIT)).all()


def list_jobs(engine: sa.Engine, account_id: str, filters: Filters) -> list:
    with reading(engine) as conn:
        return conn.execute(sa.select(*LIST_COLUMNS).where(*filters.where(account_id))
                            .order_by(jobs_table.c.created_at.desc()).limit(LIST_LIMIT)).all()


def families_of(engine: sa.Engine, account_id: str) -> list[str]:
    with reading(engine) as conn:
        return sorted(conn.scalars(sa.select(jobs_table.c.family).where(jobs_table.c.account_id == account_id)
                                   .distinct()))


def find(engine: sa.Engine, account_id: str, job_id: str) -> Job | None:
    """The job of that id if the account owns it; None for another account's job as for no job at all."""
    with reading(engine) as conn:
        row = conn.execute(sa.select(jobs_table).where(jobs_table.c.id == job_id,
                                                       jobs_table.c.account_id == account_id)).first()
    return Job.from_row(row) if row is not None and kinds.get(row.family) is not None else None


def metrics(engine: sa.Engine, job_id: str, after_id: int = 0) -> list[dict]:
    with reading(engine) as conn:
        rows = conn.execute(sa.select(job_metrics.c.id, job_metrics.c.name, job_metrics.c.value, job_metrics.c.step,
                                      job_metrics.c.timestamp)
                            .where(job_metrics.c.job_id == job_id, job_metrics.c.id > after_id)
                            .order_by(job_metrics.c.id).limit(METRIC_BATCH)).all()
    return [dict(r._mapping) for r in rows]


def logs(engine: sa.Engine, job_id: str, after_id: int = 0) -> list[dict]:
    with reading(engine) as conn:
        rows = conn.execute(sa.select(job_logs.c.id, job_logs.c.timestamp, job_logs.c.message)
                            .where(job_logs.c.job_id == job_id, job_logs.c.id > after_id)
                            .order_by(job_logs.c.id).limit(LOG_BATCH)).all()
    return [dict(r._mapping) for r in rows]


def timeline(job: Job) -> list[dict]:
    """The job's transitions as its API names them: status, secondary status, message and time."""
    statuses = kinds.of(job).statuses
    return [{"status": statuses.get(item["state"], item["state"]), "secondary": item.get("secondary"),
             "message": item.get("message"), "at": item["at"]} for item in job.transitions]


def output_prefix(job: Job) -> str | None:
    """The s3:// prefix the job writes its outputs under, for the families that write any."""
    spec = job.spec
    if job.family == "bedrock-customization":
        return spec["outputModelUri"].removesuffix("custom-model/")
    if job.family == "braket-job":
        return spec["outputDataConfig"]["s3Path"].rstrip("/") + "/"
    if job.family == "sagemaker-compilation":
        return spec["output_uri"]
    if "output_path" in spec:  # AgentRFT and its evaluations
        return spec["output_path"].rstrip("/") + f"/{job.name}/"
    return None
