"""The scheduler: admits queued jobs first in, first out, enforces stops and
runtime limits, notices finished workers, and reconciles after a restart.

Where a job runs and whether it fits is the executor's (``Executor``); the
scheduler keeps the job records, the worker's environment (credentials, the
advertised URL, the checkpoint location) and each attempt's handle.

Of several servers sharing one database, only the one holding the scheduling
lease (``core.leadership``) schedules; the others try to take it every
FOLLOW_SECONDS, and the one that does reconciles the jobs as after a restart
(adopting the attempts still running where its executor can)."""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
import secrets
import time

import sqlalchemy as sa

from jobforge.core import accounts, jobs, kinds, models_catalog
from jobforge.core.errors import ServiceError
from jobforge.core.leadership import SchedulingLease
from jobforge.core.store import jobs_table, reading
from jobforge.execution.executor import AttemptLost, Executor
from jobforge.execution.resources import held_by_services

log = logging.getLogger("jobforge.scheduler")
TICK_SECONDS = 0.25
FOLLOW_SECONDS = 1.0  # how often a server that does not schedule tries to take the lease
CHECKPOINT_BUCKET = "jobforge-checkpoints"


class Scheduler:
    def __init__(self, runtime, executor: Executor):
        self.runtime = runtime
        self.engine = runtime.engine
        self.executor = executor
        self.attempts: dict[str, str] = {}  # job id → the executor's handle of its running attempt
        self._checkpoint_buckets: set[str] = set()  # accounts whose checkpoint bucket exists
        self.term_sent: dict[str, float] = {}  # job id → when SIGTERM was sent
        self.lease = SchedulingLease(self.engine)
        self.leading = False
        self._wake: asyncio.Event | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._task: asyncio.Task | None = None

    # -- lifecycle -------------------------------------------------------
    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        self._wake = asyncio.Event()
        self._loop = loop
        self.executor.start(self._base_environment())
        self._lead_if_free()
        self._task = loop.create_task(self._run())

    async def shutdown(self) -> None:
        if self._task:
            self._task.cancel()
        self.executor.shutdown()
        self.lease.release()

    def _lead_if_free(self) -> bool:
        """Whether this server schedules now: it keeps the lease, or takes it and reconciles the jobs."""
        if self.lease.held():
            if not self.leading:
                self.leading = True
                if self.lease.shared:
                    log.info("This server schedules the jobs now")
                self.recover()
            return True
        if self.leading:  # the lease is lost: another server may schedule already
            self.leading = False
            self.attempts.clear()
            self.term_sent.clear()
            self.executor.shutdown()
            self.executor.start(self._base_environment())
        return False

    def wake(self) -> None:
        # Blocking handlers call this from worker threads: an Event set there would not wake the loop.
        if self._loop is not None and not self._loop.is_closed():
            self._loop.call_soon_threadsafe(self._wake.set)

    async def _run(self) -> None:
        while True:
            try:
                if self._lead_if_free():
                    self.tick()
            except Exception:
                log.exception("scheduler tick failed")
            try:
                await asyncio.wait_for(self._wake.wait(), TICK_SECONDS if self.leading else FOLLOW_SECONDS)
            except asyncio.TimeoutError:
                pass
            self._wake.clear()

    # -- one pass ----------------------------------------------------------
    def tick(self) -> None:
        for handle, code in self.executor.poll():
            job_id = next((j for j, h in self.attempts.items() if h == handle), None)
            if job_id is None:
                continue
            if isinstance(code, AttemptLost):
                self._attempt_lost(job_id, code.reason)
            else:
                self._worker_exited(job_id, code)
        self._enforce_stops()
        self._admit()

    def _active(self, states) -> list[jobs.Job]:
        with reading(self.engine) as conn:
            rows = conn.execute(sa.select(jobs_table).where(jobs_table.c.state.in_(states))
                                .order_by(jobs_table.c.created_at)).all()
        return [jobs.Job.from_row(r) for r in rows]

    def _admit(self) -> None:
        queued = self._active(("QUEUED",))
        if not queued:
            return
        held = held_by_services(self.runtime.supervisor.reserved())
        for job in queued:
            reason = self.executor.shortfall(job.resources)
            if reason:
                self.finish(job.id, "FAILED", failure_reason=reason)
                continue
            if not self.executor.can_start(job.resources, held):
                return  # first in, first out: later jobs wait behind this one
            self._launch(job)

    def _launch(self, job: jobs.Job) -> None:
        token = secrets.token_urlsafe(32)
        started = jobs.transition(self.engine, job.id, "STARTING", only_from=("QUEUED",), attempt=job.attempt + 1,
                                  worker_token_hash=hashlib.sha256(token.encode()).hexdigest(),
                                  secondary="Starting")
        if started is None:
            return
        credential = accounts.issue_job_credentials(self.engine, job.account_id, job.role_arn or
                                                    f"arn:aws:iam::{job.account_id}:role/JobforgeExecutionRole",
                                                    job.id)
        env = self._environment(started, credential, token)
        try:
            handle = self.executor.submit(started, env, self._model_dirs())
        except OSError as err:
            self.finish(job.id, "FAILED", failure_reason=f"Could not start the worker process: {err}")
            return
        self.attempts[job.id] = handle
        jobs.transition(self.engine, job.id, handle=handle)

    def _model_dirs(self) -> list[str]:
        """The foundation models' local directories: jobs read them (customization bases and teachers)."""
        return [m.location for m in models_catalog.all_models(self.engine) if not m.location.startswith("s3://")]

    @staticmethod
    def _base_environment() -> dict:
        """The server's environment without its own AWS and jobforge settings."""
        return {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "JOBFORGE_"))}

    def _environment(self, job, credential, token) -> dict:
        settings = self.runtime.settings
        env = self._base_environment()
        endpoint = settings.advertised_url
        cpus = str(job.resources.get("cpus", 1))
        env.update({
            "JOBFORGE_ENDPOINT": endpoint, "JOBFORGE_JOB_ID": job.id, "JOBFORGE_WORKER_TOKEN": token,
            "JOBFORGE_CHECKPOINT_URI": self._checkpoint_uri(job),
            "AWS_ACCESS_KEY_ID": credential.access_key_id, "AWS_SECRET_ACCESS_KEY": credential.secret_key,
            # The job's SDK calls (a hybrid job's quantum tasks, ...) go to the region the job belongs to.
            "AWS_SESSION_TOKEN": credential.session_token, "AWS_DEFAULT_REGION": job.region,
            "AWS_REGION": job.region, "AWS_ENDPOINT_URL": endpoint,
            "AWS_ENDPOINT_URL_S3": endpoint, "AWS_ENDPOINT_URL_BRAKET": endpoint,
            "AWS_ENDPOINT_URL_SAGEMAKER": endpoint, "AWS_ENDPOINT_URL_BEDROCK": endpoint,
            # Keep the user's own ~/.aws files out of the job's credential chain.
            "AWS_CONFIG_FILE": os.devnull, "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
            "OMP_NUM_THREADS": cpus, "MKL_NUM_THREADS": cpus,
            "PYTHONUNBUFFERED": "1",
        })
        if settings.tls_cert:  # the job's SDKs and worker trust the server's certificate
            env["AWS_CA_BUNDLE"] = str(settings.tls_cert)
        return env

    def _checkpoint_uri(self, job) -> str:
        """Where the worker keeps the job's checkpoints, so that an attempt can resume on any node: a prefix per
        job in a bucket of the job's account (its role's credentials reach no other), made on first use."""
        bucket = f"{CHECKPOINT_BUCKET}-{job.account_id}"
        if job.account_id not in self._checkpoint_buckets:
            try:
                self.runtime.object_store.create_bucket(job.account_id, bucket, self.runtime.settings.region)
            except ServiceError as err:
                if err.code != "BucketAlreadyOwnedByYou":
                    log.warning("checkpoint bucket %s of account %s: %s", bucket, job.account_id, err)
            self._checkpoint_buckets.add(job.account_id)
        return f"s3://{bucket}/{job.id}/"

    def _enforce_stops(self) -> None:
        now = time.time()
        grace = self.runtime.settings.stop_grace_seconds
        for job in self._active(("STARTING", "RUNNING", "STOPPING")):
            if job.state != "STOPPING" and job.max_runtime and job.started_at and \
                    now - job.started_at > job.max_runtime:
                job = jobs.transition(self.engine, job.id, "STOPPING", stop_reason="timeout",
                                      message=f"MaxRuntimeInSeconds ({job.max_runtime:g} s) exceeded") or job
            if job.state != "STOPPING":
                continue
            handle = self.attempts.get(job.id)
            if handle is None:
                self.finish(job.id, self._stopped_state(job))
            elif job.id not in self.term_sent:
                self.term_sent[job.id] = now
                self.executor.stop(handle)
            elif now - self.term_sent[job.id] > grace:
                self.executor.stop(handle, force=True)

    @staticmethod
    def _stopped_state(job) -> str:
        return "TIMED_OUT" if job.stop_reason == "timeout" else "STOPPED"

    # -- endings -----------------------------------------------------------
    def _worker_exited(self, job_id: str, code: int) -> None:
        self.attempts.pop(job_id, None)
        self.term_sent.pop(job_id, None)
        job = jobs.load(self.engine, job_id)
        if job is None or job.terminal:
            return
        if job.state == "STOPPING":
            self.finish(job_id, self._stopped_state(job))
            return
        how = f"was killed by signal {-code}" if code < 0 else f"exited with code {code}"
        tail = self._log_tail(job_id)
        self.finish(job_id, "FAILED", failure_reason=f"The worker process {how} without reporting an outcome."
                    + (f" Last output: {tail}" if tail else ""))

    def _attempt_lost(self, job_id: str, reason: str) -> None:
        self.attempts.pop(job_id, None)
        self.term_sent.pop(job_id, None)
        job = jobs.load(self.engine, job_id)
        if job is not None and not job.terminal:
            self._resume_or_fail(job, reason)

    def _log_tail(self, job_id: str) -> str:
        lines = self.executor.read_log(job_id).strip().splitlines()
        return lines[-1][-500:] if lines else ""

    def finish(self, job_id: str, state: str, failure_reason: str | None = None, message: str | None = None):
        """Move a job to a terminal state, revoke its credentials, run its kind's hook, drop its checkpoints."""
        job = jobs.transition(self.engine, job_id, state, failure_reason=failure_reason, message=message,
                              secondary=state.title().replace("_", ""))
        self.runtime.keys.revoke_job(job_id)
        if job is not None and job.terminal:
            kind = kinds.get(job.family)
            hook = kind.on_terminal if kind is not None else None
            if hook is not None:
                try:
                    hook(self.runtime, job)
                except Exception:
                    log.exception("terminal hook of %s failed", job_id)
            self._drop_checkpoints(job)
        self.wake()
        return job

    def _drop_checkpoints(self, job: jobs.Job) -> None:
        """A job that ended resumes no more: the object store's copy of its checkpoints goes."""
        store, bucket = self.runtime.object_store, f"{CHECKPOINT_BUCKET}-{job.account_id}"
        try:
            while found := store.list(job.account_id, bucket, prefix=f"{job.id}/").contents:
                for info in found:
                    store.delete(job.account_id, bucket, info.key)
        except ServiceError:  # no such bucket of the account's: it holds nothing of the job's
            pass

    def worker_reported_end(self, job: jobs.Job, outcome: str, reason: str | None) -> jobs.Job | None:
        if outcome == "completed":
            return self.finish(job.id, "COMPLETED")
        if outcome == "stopped" or job.state == "STOPPING":
            return self.finish(job.id, self._stopped_state(job))
        return self.finish(job.id, "FAILED", failure_reason=reason or "The workload failed")

    # -- restart -------------------------------------------------------------
    def recover(self) -> None:
        """Reconcile jobs a previous server left running: adopt, resume or fail them."""
        for job in self._active(("STARTING", "RUNNING", "STOPPING")):
            if job.handle and self.executor.adopt(job.id, job.handle):
                self.attempts[job.id] = job.handle  # still running: it goes on reporting to this server
                continue
            self._resume_or_fail(job, "The server restarted while the job was running")

    def _resume_or_fail(self, job: jobs.Job, why: str) -> None:
        """An attempt that is gone without an outcome: the job resumes from its checkpoints on a new attempt
        where its workload can (a stopping one just stops), else it fails saying why."""
        self.runtime.keys.revoke_job(job.id)
        kind = kinds.get(job.family)
        if job.state == "STOPPING":
            self.finish(job.id, self._stopped_state(job))
        elif kind is not None and kind.workload.resumable:
            jobs.transition(self.engine, job.id, "QUEUED", secondary="Restarting",
                            message=f"{why}; the job resumes from its last checkpoint")
            jobs.add_logs(self.engine, job.id, job.name,
                          [(time.time(), f"jobforge: {why[0].lower()}{why[1:]}; resuming from the last checkpoint")])
        else:
            self.finish(job.id, "FAILED", failure_reason=(
                f"{why}, and workload {job.workload!r} cannot resume from a checkpoint."))
