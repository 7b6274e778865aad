"""The pipeline runner: carries every running pipeline execution through its steps.

Each pass looks at each execution that has not ended: it checks the steps that run, starts the steps whose
waits are over (up to the execution's MaxParallelExecutionSteps), and ends the execution once nothing runs:
Succeeded when every step has, Failed once a step has failed (steps not started by then never start, those
running finish), Stopped after StopPipelineExecution has stopped what ran. Everything it knows is in the
store, so a server restarted mid-execution takes up where the previous one was: a step whose job was being
created finds it, a running job goes on being followed (the scheduler resumes or fails the job itself).

Steps call the server's own SageMaker API with temporary credentials of the execution's role, issued for an
hour at a time and revoked when the execution ends. Of several servers sharing a database, the one that
schedules jobs runs pipelines.
"""

from __future__ import annotations

import datetime as dt
import functools
import logging
import threading
import time

import boto3
from botocore.config import Config

from jobforge.core import accounts, pipelines
from jobforge.core.pipeline_definitions import Definition, Scope, parse
from jobforge.execution import pipeline_steps

log = logging.getLogger("jobforge.pipelines")
TICK_SECONDS = 1.0
CREDENTIAL_SECONDS = 3600.0
RENEW_SECONDS = 600.0  # credentials this close to expiring are replaced before a step uses them
ENDED = ("Succeeded", "Failed", "Stopped")


class PipelineRunner:
    def __init__(self, runtime):
        self.runtime = runtime
        self.engine = runtime.engine
        self._clients: dict[str, tuple[float, object]] = {}  # execution id → (credentials' expiry, client)
        self._wake = threading.Event()
        self._closed = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="pipeline-runner", daemon=True)
        self._thread.start()

    def stop(self, deadline: float) -> None:
        self._closed.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(max(0.0, deadline - time.monotonic()))

    def wake(self) -> None:
        self._wake.set()

    def _run(self) -> None:
        while not self._closed.is_set():
            try:
                if self.runtime.scheduler.leading:
                    self.tick()
            except Exception:
                log.exception("pipeline runner pass failed")
            self._wake.wait(TICK_SECONDS)
            self._wake.clear()

    def tick(self) -> None:
        for execution in pipelines.running_executions(self.engine):
            if self._closed.is_set():
                return
            try:
                self.advance(execution)
            except Exception:  # the next pass tries again (the server may not be listening yet)
                log.exception("pipeline execution %s: pass failed", execution.arn)

    # -- one execution -------------------------------------------------------------------------
    def _definition(self, execution: pipelines.Execution) -> Definition:
        return _parsed(pipelines.version_definition(self.engine, execution.pipeline_id, execution.version))

    def _client(self, execution: pipelines.Execution):
        expires, client = self._clients.get(execution.id, (0.0, None))
        if client is not None and expires - time.time() > RENEW_SECONDS:
            return client
        owner = f"pipeline-{execution.id}"
        role_name = execution.role_arn.rsplit("/", 1)[-1]
        credential = accounts.issue_temporary_credentials(
            self.engine, execution.account_id,
            f"arn:aws:sts::{execution.account_id}:assumed-role/{role_name}/SageMaker-Pipelines-{execution.execution_id}",
            CREDENTIAL_SECONDS, owner)
        settings = self.runtime.settings
        session = boto3.session.Session(aws_access_key_id=credential.access_key_id,
                                        aws_secret_access_key=credential.secret_key,
                                        aws_session_token=credential.session_token, region_name=execution.region)
        # The server validates what the steps send, and answers in AWS's words; the client only carries it.
        client = session.client("sagemaker", endpoint_url=settings.endpoint_url,
                                verify=str(settings.tls_cert) if settings.tls_cert else None,
                                config=Config(parameter_validation=False, connect_timeout=5, read_timeout=60,
                                              retries={"mode": "standard", "max_attempts": 3}))
        self._clients[execution.id] = (credential.expires_at, client)
        return client

    def _scope(self, execution: pipelines.Execution, steps: dict[str, pipelines.Step]) -> Scope:
        def moment(epoch: float) -> str:
            return dt.datetime.fromtimestamp(epoch, dt.timezone.utc).isoformat(timespec="milliseconds")

        variables = {"PipelineExecutionId": execution.execution_id, "PipelineExecutionArn": execution.arn,
                     "PipelineArn": execution.pipeline_arn, "PipelineName": execution.pipeline_arn.split("/", 1)[1],
                     "StartDateTime": moment(execution.created_at), "CurrentDateTime": moment(time.time())}
        return Scope(execution.parameters, variables,
                     {name: step.outputs for name, step in steps.items() if step.status == "Succeeded"})

    def advance(self, execution: pipelines.Execution) -> None:
        definition = self._definition(execution)
        sagemaker = self._client(execution)
        stopping = execution.status == "Stopping"
        for row in pipelines.steps(self.engine, execution).values():
            self._check(sagemaker, execution, definition, row, stopping)
        steps = pipelines.steps(self.engine, execution)
        running = [row for row in steps.values() if row.status in pipelines.STEP_RUNNING]
        if stopping:
            for row in running:
                if row.status != "Stopping" and "JobName" in row.state:
                    pipeline_steps.stop_job(sagemaker, row)
                    pipelines.update_step(self.engine, row, status="Stopping")
            if not running:
                self._end(execution, "Stopped", only_from=("Stopping",))
            return
        failed = [row for row in steps.values() if row.status in ("Failed", "Stopped")]
        if failed:
            if not running:
                details = "; ".join(f"{row.name}: {row.failure_reason or row.status}" for row in failed)
                self._end(execution, "Failed", f"Step failure: One or multiple steps failed ({details}).")
            return
        if len(steps) == len(definition.steps) and not running:
            self._end(execution, "Succeeded")
            return
        room = (execution.parallelism or {}).get("MaxParallelExecutionSteps", len(definition.steps)) - len(running)
        ready = [step for step in definition.steps.values() if step.name not in steps and all(
            steps.get(other) is not None and steps[other].status == "Succeeded" for other in step.waits_for)]
        for step in ready[:max(0, room)]:
            scope = self._scope(execution, steps)
            if step.type == "Job":
                pipeline_steps.start_job(sagemaker, self.engine, execution, step, scope)
            else:
                pipeline_steps.run_lineage(sagemaker, self.engine, execution, step, scope, None)
        if ready[:max(0, room)]:
            self.wake()  # a step that ended at once (a Lineage step) may let the next start now

    def _check(self, sagemaker, execution: pipelines.Execution, definition: Definition, row: pipelines.Step,
               stopping: bool) -> None:
        """Bring a step that runs up to date with its work."""
        if row.status == "Starting":  # interrupted between recording the step and starting its work
            step = definition.steps[row.name]
            if step.type == "Lineage":
                pipeline_steps.run_lineage(sagemaker, self.engine, execution, step,
                                           self._scope(execution, pipelines.steps(self.engine, execution)), row)
            elif "JobName" in row.state:
                pipeline_steps.create_job(sagemaker, self.engine, row)
            else:
                pipelines.update_step(self.engine, row, status="Failed", failure_reason="The step did not start.")
            return
        if row.status in ("Executing", "Stopping") and "JobName" in row.state:
            changes = pipeline_steps.check_job(sagemaker, row, stopping)
            if changes is not None:
                pipelines.update_step(self.engine, row, **changes)
        elif row.status == "Executing":  # a Lineage step interrupted by a restart
            step = definition.steps[row.name]
            pipeline_steps.run_lineage(sagemaker, self.engine, execution, step,
                                       self._scope(execution, pipelines.steps(self.engine, execution)), row)

    def _end(self, execution: pipelines.Execution, status: str, failure_reason: str | None = None, *,
             only_from: tuple[str, ...] = ("Executing",)) -> None:
        if pipelines.set_execution_status(self.engine, execution, status, only_from=only_from,
                                          failure_reason=failure_reason):
            log.info("pipeline execution %s %s", execution.arn, status)
        self._clients.pop(execution.id, None)
        self.runtime.keys.revoke_job(f"pipeline-{execution.id}")


@functools.lru_cache(maxsize=64)
def _parsed(text: str) -> Definition:
    return parse(text)
