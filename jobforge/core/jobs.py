"""One job lifecycle for every kind of job.

Internal states::

    QUEUED → STARTING → RUNNING → COMPLETED | FAILED
       ↘ (stop) ↘ STOPPING → STOPPED          ↘ (max runtime) → TIMED_OUT

A job kind (``jobforge.core.kinds``: SageMaker job, Bedrock customization,
Braket job, …) maps the internal states to its own status enum, ARN format and
error codes; the API handlers translate, this module keeps the truth. A job's
``family`` is the name of its kind.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass, field
from typing import Callable

import sqlalchemy as sa

from jobforge.core import idempotency, kinds, paging, tags
from jobforge.core.errors import ServiceError
from jobforge.core.identifiers import name_or_arn
from jobforge.core.idempotency import ClientToken
from jobforge.core.kinds import JobKind
from jobforge.core.store import job_logs, job_metrics, jobs_table, reading

ACTIVE = ("QUEUED", "STARTING", "RUNNING", "STOPPING")
TERMINAL = ("COMPLETED", "FAILED", "STOPPED", "TIMED_OUT")
STATES = ACTIVE + TERMINAL


@dataclass
class Job:
    id: str
    account_id: str
    region: str
    family: str
    name: str
    arn: str
    state: str
    secondary_status: str | None
    status_message: str | None
    failure_reason: str | None
    workload: str
    spec: dict
    result: dict
    resources: dict
    transitions: list
    role_arn: str | None
    max_runtime: float | None
    stop_reason: str | None
    attempt: int
    handle: str | None  # the executor's reference to the running attempt; only it reads it
    created_at: float
    updated_at: float
    started_at: float | None
    ended_at: float | None
    worker_token_hash: str | None = field(default=None, repr=False)

    @classmethod
    def from_row(cls, row) -> "Job":
        return cls(**dict(row._mapping))

    @property
    def status(self) -> str:
        return kinds.of(self).statuses[self.state]

    @property
    def terminal(self) -> bool:
        return self.state in TERMINAL


def new_id() -> str:
    return uuid.uuid4().hex


def create(engine: sa.Engine, *, account_id: str, region: str, kind: JobKind, name: str, spec: dict,
           resources: dict, role_arn: str | None = None, max_runtime: float | None = None,
           tags_: dict | None = None, token: ClientToken | None = None, job_id: str | None = None,
           secondary_status: str | None = None, arn: str | None = None) -> tuple[Job, bool]:
    """Create a job, or return the original one for a repeated client token.

    Returns (job, created). The name, the token and the tags are written in one
    transaction, so concurrent creates with one name leave exactly one job.
    ``arn`` is given for kinds whose ARNs embed request fields (Bedrock's embed
    the base model).
    """
    job_id = job_id or new_id()
    arn = arn or kind.arn(region, account_id, name, job_id)
    now = time.time()
    existing = _by_token(engine, token, kind)
    if existing is not None:
        return existing, False
    row = dict(id=job_id, account_id=account_id, region=region, family=kind.name, name=name, arn=arn, state="QUEUED",
               secondary_status=secondary_status, status_message=None, failure_reason=None,
               workload=kind.workload.module,
               spec=spec, result={}, resources=resources,
               transitions=[{"state": "QUEUED", "secondary": secondary_status, "at": now}],
               role_arn=role_arn, max_runtime=max_runtime, stop_reason=None, attempt=0, handle=None,
               created_at=now, updated_at=now, started_at=None, ended_at=None, worker_token_hash=None)
    try:
        with engine.begin() as conn:
            conn.execute(jobs_table.insert().values(row))
            idempotency.remember(conn, token, arn)
            tags.put(conn, account_id, arn, tags_ or {})
    except sa.exc.IntegrityError:
        existing = _by_token(engine, token, kind)
        if existing is not None:
            return existing, False
        raise ServiceError(kind.errors.conflict,
                           f"{kind.label} with name {name} already exists. Choose a different name.") from None
    return Job.from_row(_row(engine, jobs_table.c.id == job_id)), True


def _by_token(engine, token: ClientToken | None, kind: JobKind) -> Job | None:
    arn = idempotency.earlier(engine, token, idempotency.reused(kind.errors.conflict))
    row = _row(engine, jobs_table.c.arn == arn) if arn else None
    return Job.from_row(row) if row else None


def _row(engine, condition):
    with reading(engine) as conn:
        return conn.execute(sa.select(jobs_table).where(condition)).first()


def get(engine: sa.Engine, account_id: str, kind: JobKind, identifier: str, *, region: str) -> Job:
    """By name or ARN, within the caller's account and region; else the kind's not-found error."""
    row = _row(engine, sa.and_(jobs_table.c.account_id == account_id, jobs_table.c.region == region,
                               jobs_table.c.family == kind.name, name_or_arn(jobs_table, identifier)))
    if row is None:
        raise ServiceError(kind.errors.not_found, f"{kind.label} {identifier} not found.")
    return Job.from_row(row)


def load(engine: sa.Engine, job_id: str) -> Job | None:
    row = _row(engine, jobs_table.c.id == job_id)
    return Job.from_row(row) if row else None


SORT_COLUMNS = {"CreationTime": jobs_table.c.created_at, "Name": jobs_table.c.name, "Status": jobs_table.c.state,
                "LastModifiedTime": jobs_table.c.updated_at}


def list_jobs(engine: sa.Engine, account_id: str, kind: JobKind, *, region: str, name_contains: str | None = None,
              states: tuple[str, ...] | None = None, created_after: float | None = None,
              created_before: float | None = None, modified_after: float | None = None,
              modified_before: float | None = None, extra: list | None = None, sort_by: str = "CreationTime",
              ascending: bool = False, limit: int = 100, token: str | None = None,
              bad_token: Callable[[str], Exception]) -> paging.Page:
    query = sa.select(jobs_table).where(jobs_table.c.account_id == account_id, jobs_table.c.region == region,
                                        jobs_table.c.family == kind.name)
    if name_contains:
        query = query.where(jobs_table.c.name.contains(name_contains, autoescape=True))
    if states is not None:
        query = query.where(jobs_table.c.state.in_(states))
    if created_after is not None:
        query = query.where(jobs_table.c.created_at > created_after)
    if created_before is not None:
        query = query.where(jobs_table.c.created_at < created_before)
    if modified_after is not None:
        query = query.where(jobs_table.c.updated_at > modified_after)
    if modified_before is not None:
        query = query.where(jobs_table.c.updated_at < modified_before)
    for condition in extra or ():
        query = query.where(condition)
    bind = dict(family=kind.name, region=region, name=name_contains, states=states, ca=created_after, cb=created_before,
                ma=modified_after, mb=modified_before, sort=sort_by, asc=ascending,
                extra=[str(c.compile(compile_kwargs={"literal_binds": True})) for c in extra or ()])
    page = paging.keyset_page(engine, query, SORT_COLUMNS[sort_by], jobs_table.c.id, ascending, limit, token, bind,
                              bad_token)
    page.rows = [Job.from_row(r) for r in page.rows]
    return page


def transition(engine: sa.Engine, job_id: str, state: str | None = None, *, secondary: str | None = None,
               message: str | None = None, failure_reason: str | None = None, only_from: tuple = (),
               **values) -> Job | None:
    """Move a job; with only_from, only when it is in one of those states (else None)."""
    assert state is None or state in STATES, state
    now = time.time()
    with engine.begin() as conn:
        row = conn.execute(sa.select(jobs_table).where(jobs_table.c.id == job_id).with_for_update()).first()
        if row is None or (only_from and row.state not in only_from):
            return None
        job = Job.from_row(row)
        if job.terminal and state is not None and state != job.state:
            return None  # a terminal state is final
        changes = dict(values, updated_at=now)
        history = list(job.transitions)
        if state is not None and state != job.state:
            changes["state"] = state
            if state == "RUNNING" and job.started_at is None:
                changes["started_at"] = now
            if state in TERMINAL:
                changes["ended_at"] = now
        if secondary is not None:
            changes["secondary_status"] = secondary
        if message is not None:
            changes["status_message"] = message
        if failure_reason is not None:
            changes["failure_reason"] = failure_reason
        if ("state" in changes) or (secondary is not None and secondary != job.secondary_status):
            history.append({"state": changes.get("state", job.state), "secondary": changes.get(
                "secondary_status", job.secondary_status), "message": message, "at": now})
            changes["transitions"] = history
        conn.execute(jobs_table.update().where(jobs_table.c.id == job_id).values(changes))
        row = conn.execute(sa.select(jobs_table).where(jobs_table.c.id == job_id)).first()
    return Job.from_row(row)


def request_stop(engine: sa.Engine, job: Job, reason: str = "user") -> Job:
    """A queued job stops at once; a started one goes through STOPPING."""
    kind = kinds.of(job)
    if job.terminal or job.state == "STOPPING":
        raise ServiceError(kind.errors.not_stoppable,
                           f"{kind.label} {job.name} is {job.status} and cannot be stopped.")
    stopped = transition(engine, job.id, "STOPPED", only_from=("QUEUED",), stop_reason=reason,
                         message="Stopped before it started")
    if stopped is not None:
        return stopped
    stopping = transition(engine, job.id, "STOPPING", only_from=("STARTING", "RUNNING"), stop_reason=reason)
    return stopping or load(engine, job.id)


def delete(engine: sa.Engine, job: Job) -> None:
    kind = kinds.of(job)
    if not job.terminal:
        raise ServiceError(kind.errors.in_use,
                           f"{kind.label} {job.name} is {job.status}; stop it before deleting it.")
    with engine.begin() as conn:
        conn.execute(jobs_table.delete().where(jobs_table.c.id == job.id))
        conn.execute(job_metrics.delete().where(job_metrics.c.job_id == job.id))
        conn.execute(job_logs.delete().where(job_logs.c.job_id == job.id))
        tags.remove(conn, job.arn)


def add_metrics(engine: sa.Engine, job_id: str, metrics: list[dict]) -> None:
    if metrics:
        with engine.begin() as conn:
            conn.execute(job_metrics.insert(), [dict(job_id=job_id, name=m["name"], value=float(m["value"]),
                                                     step=m.get("step"), timestamp=m.get("timestamp") or time.time())
                                                for m in metrics])


def metrics(engine: sa.Engine, job_id: str, after_id: int = 0) -> list[dict]:
    with reading(engine) as conn:
        rows = conn.execute(sa.select(job_metrics).where(job_metrics.c.job_id == job_id,
                                                         job_metrics.c.id > after_id)
                            .order_by(job_metrics.c.id)).all()
    return [dict(r._mapping) for r in rows]


def add_logs(engine: sa.Engine, job_id: str, stream: str, lines: list[tuple[float, str]]) -> None:
    if lines:
        with engine.begin() as conn:
            conn.execute(job_logs.insert(), [dict(job_id=job_id, stream=stream, timestamp=ts, message=text)
                                             for ts, text in lines])


def logs(engine: sa.Engine, job_id: str, after_id: int = 0, limit: int = 10000) -> list[dict]:
    with reading(engine) as conn:
        rows = conn.execute(sa.select(job_logs).where(job_logs.c.job_id == job_id, job_logs.c.id > after_id)
                            .order_by(job_logs.c.id).limit(limit)).all()
    return [dict(r._mapping) for r in rows]
