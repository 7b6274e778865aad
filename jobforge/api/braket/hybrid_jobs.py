"""Braket hybrid jobs: CreateJob, GetJob, CancelJob, SearchJobs.

A hybrid job is a job of the ``braket-job`` kind run by the workload
``jobforge.workloads.braket.hybrid``. Its ARN
ends in the job id, as on Braket today, so the SDK reads its logs under the
stream prefix ``<jobName>/<id>``. CreateJob mints the job token that the job's
code passes to CreateQuantumTask (``AMZN_BRAKET_JOB_TOKEN``) to tie its tasks
to the job.
"""

from __future__ import annotations

import hmac
import secrets
import uuid

import sqlalchemy as sa

from jobforge.api.base import RequestContext, client_token, handler
from jobforge.api.braket import common
from jobforge.api.roles import require_role
from jobforge.core import jobs, kinds, tags
from jobforge.core.errors import ServiceError, validation_error
from jobforge.core.instance_types import resources_for
from jobforge.core.kinds import JobErrors, JobKind, LogGroup, Workload
from jobforge.core.store import jobs_table, reading
from jobforge.core.timestamps import from_epoch
from jobforge.workloads.braket import images

DEFAULT_MAX_RUNTIME = 432_000  # the SDK's default and the model's maximum: what jobforge enforces when unset
DEFAULT_INSTANCE_COUNT = 1  # InstanceConfig.instanceCount: "The default value is 1."
MAX_EVENTS = 20
QUEUE_POSITION_CAP = 15

STATUSES = {"QUEUED": "QUEUED", "STARTING": "QUEUED", "RUNNING": "RUNNING", "STOPPING": "CANCELLING",
            "COMPLETED": "COMPLETED", "FAILED": "FAILED", "STOPPED": "CANCELLED", "TIMED_OUT": "FAILED"}
# Secondary statuses the engine and the hybrid workload report, as Braket job event types.
EVENT_TYPES = {"QUEUED_FOR_EXECUTION": "QUEUED_FOR_EXECUTION", "Restarting": "QUEUED_FOR_EXECUTION",
               "Starting": "STARTING_INSTANCE", "DOWNLOADING_DATA": "DOWNLOADING_DATA", "RUNNING": "RUNNING",
               "UPLOADING_RESULTS": "UPLOADING_RESULTS"}
TERMINAL_EVENTS = {"COMPLETED": "COMPLETED", "FAILED": "FAILED", "STOPPED": "CANCELLED", "TIMED_OUT": "FAILED"}
EVENT_MESSAGES = {"QUEUED_FOR_EXECUTION": "Job queued for execution", "STARTING_INSTANCE": "Starting the job process",
                  "COMPLETED": "Job completed", "CANCELLED": "Job cancelled"}


def log_stream(job: jobs.Job) -> str:
    """The job's one log stream (one instance): ``<jobName>/<id>/algo-1-<created>``."""
    return f"{job.name}/{job.id}/algo-1-{int(job.created_at)}"


def _check_request(ctx: RequestContext, req: dict) -> None:
    if "scriptModeConfig" not in req["algorithmSpecification"]:
        raise validation_error("algorithmSpecification.scriptModeConfig is required: jobforge runs the job's "
                               "script in its own Python environment and does not run container images alone.")
    if req["instanceConfig"].get("instanceCount", 1) != 1:
        raise validation_error("instanceConfig.instanceCount must be 1: jobforge runs a hybrid job on one host.")
    for association in req.get("associations") or []:
        raise validation_error(f"Reservation {association['arn']} does not exist: jobforge has no reservations.")
    _check_image(req["algorithmSpecification"].get("containerImage"))
    device = req["deviceConfig"]["device"]
    if not device.startswith("local:"):
        common.require_usable_device(device)
    require_role(ctx, req["roleArn"], "ValidationException")


def _check_image(image: dict | None) -> None:
    """Refuse a Braket job image jobforge prepares no environment for, rather than fail the job later."""
    uri = (image or {}).get("uri")
    reason = images.REFUSED.get(images.repository(uri))
    if reason:
        raise validation_error(f"The job image {uri} is not offered here: {reason}.")


def _with_defaults(spec: dict) -> dict:
    """The job's settings with the defaults it runs under filled in, as GetJob returns them.

    ``instanceConfig.instanceCount`` is modelled with the default 1 (the SDK's
    ``AwsQuantumJob.logs()`` reads it); ``stoppingCondition.maxRuntimeInSeconds``
    is the limit jobforge enforces when none was sent. ``volumeSizeInGb`` is
    required, and ``compressionType`` and ``checkpointConfig.localPath`` are
    echoed only when sent: the first has no modelled default, and jobforge keeps
    checkpoints in its own directory rather than at the modelled default path.
    """
    spec = dict(spec)
    spec["instanceConfig"] = {"instanceCount": DEFAULT_INSTANCE_COUNT, **spec["instanceConfig"]}
    spec["stoppingCondition"] = {"maxRuntimeInSeconds": DEFAULT_MAX_RUNTIME, **(spec.get("stoppingCondition") or {})}
    return spec


@handler("braket", "CreateJob", blocking=True)
def create_job(ctx: RequestContext, req: dict) -> dict:
    _check_request(ctx, req)
    job_id = str(uuid.uuid4())
    arn = KIND.arn(ctx.region, ctx.account_id, req["jobName"], job_id)
    spec = _with_defaults({k: v for k, v in req.items() if k not in ("clientToken", "tags")})
    spec.update(jobArn=arn, jobToken=f"{job_id}.{secrets.token_urlsafe(24)}")
    instance = req["instanceConfig"]
    job, created = jobs.create(
        ctx.engine, account_id=ctx.account_id, region=ctx.region, kind=KIND, name=req["jobName"], spec=spec,
        resources=resources_for(instance["instanceType"], instance.get("instanceCount", 1)),
        role_arn=req["roleArn"], max_runtime=spec["stoppingCondition"]["maxRuntimeInSeconds"], tags_=req.get("tags"),
        token=client_token(ctx, KIND.token_scope, req, "clientToken"), job_id=job_id,
        secondary_status="QUEUED_FOR_EXECUTION")
    if created:
        ctx.runtime.scheduler.wake()
        if not req["deviceConfig"]["device"].startswith("local:"):  # its tasks run here, not in the job
            ctx.runtime.quantum_tasks.warm()  # so that the job's first task does not wait for it
    return {"jobArn": job.arn}


def job_of_token(ctx: RequestContext, token: str) -> jobs.Job:
    """The running job a CreateQuantumTask ``jobToken`` names, in the caller's account and region."""
    job_id = token.split(".", 1)[0]
    job = jobs.load(ctx.engine, job_id)
    if job is None or job.family != KIND.name or job.account_id != ctx.account_id or job.region != ctx.region or \
            not hmac.compare_digest(job.spec.get("jobToken", ""), token):
        raise validation_error("The jobToken does not belong to a hybrid job of this account in this region.")
    if job.terminal:
        raise validation_error(f"Hybrid job {job.arn} is {status(job)}; it can no longer create quantum tasks.")
    return job


def status(job: jobs.Job) -> str:
    if job.state == "STOPPING" and job.stop_reason == "timeout":
        return "RUNNING"  # stopping because it ran out of time, not cancelled
    return STATUSES[job.state]


def _events(job: jobs.Job) -> list[dict]:
    events = []
    for entry in job.transitions:
        state = entry["state"]
        if state in TERMINAL_EVENTS:
            kind = "MAX_RUNTIME_EXCEEDED" if state == "TIMED_OUT" else TERMINAL_EVENTS[state]
        elif state == "STOPPING":
            kind = "MAX_RUNTIME_EXCEEDED" if job.stop_reason == "timeout" else None
        else:
            kind = EVENT_TYPES.get(entry.get("secondary"))
        if kind is None or (events and events[-1]["eventType"] == kind):
            continue
        message = entry.get("message") or EVENT_MESSAGES.get(kind)
        if state in ("FAILED", "TIMED_OUT") and job.failure_reason:
            message = job.failure_reason
        event = {"eventType": kind, "timeOfEvent": from_epoch(entry["at"])}
        if message:
            event["message"] = message[:2500]
        events.append(event)
    return events[-MAX_EVENTS:]


def _failure_reason(job: jobs.Job) -> str | None:
    if job.state == "TIMED_OUT":
        return job.failure_reason or job.status_message or "maxRuntimeInSeconds exceeded"
    return job.failure_reason if job.state == "FAILED" else None


def _queue_info(ctx: RequestContext, job: jobs.Job) -> dict:
    current = status(job)
    if current != "QUEUED":
        return {"queue": "JOBS_QUEUE", "position": "None",
                "message": f"Job is in {current} status. AmazonBraket does not show queue position for this status."}
    with reading(ctx.engine) as conn:  # the scheduler admits every kind first in, first out
        ahead = conn.execute(sa.select(sa.func.count()).select_from(jobs_table).where(
            jobs_table.c.state == "QUEUED", jobs_table.c.created_at < job.created_at)).scalar_one()
    position = ahead + 1 if job.state == "QUEUED" else 1
    return {"queue": "JOBS_QUEUE", "position": str(position) if position <= QUEUE_POSITION_CAP else ">15"}


def describe(engine: sa.Engine, job: jobs.Job) -> dict:
    spec = _with_defaults(job.spec)  # also for jobs recorded before the defaults were stored
    out = {key: spec[key] for key in ("jobName", "roleArn", "algorithmSpecification", "inputDataConfig",
                                      "outputDataConfig", "checkpointConfig", "stoppingCondition",
                                      "instanceConfig", "hyperParameters", "deviceConfig", "associations")
           if spec.get(key) is not None}
    out.update(jobArn=job.arn, status=status(job), createdAt=from_epoch(job.created_at),
               startedAt=from_epoch(job.started_at), endedAt=from_epoch(job.ended_at),
               events=_events(job), tags=tags.of(engine, job.arn), failureReason=_failure_reason(job))
    if out["failureReason"]:
        out["failureReason"] = out["failureReason"][:1024]
    if job.started_at and job.ended_at:
        out["billableDuration"] = int((job.ended_at - job.started_at) * 1000)
    return out


KIND = kinds.register(JobKind(
    name="braket-job", label="Hybrid job", statuses=STATUSES,
    errors=JobErrors(not_found="ResourceNotFoundException", conflict="ConflictException",
                     not_stoppable="ConflictException", in_use="ConflictException"),
    workload=Workload("jobforge.workloads.hybrid", resumable=True, account_dir=True,
                      preload=("jobforge.workloads.hybrid", "braket.jobs.metrics_data.log_metrics_parser")),
    arn=lambda region, account, _name, job_id: f"arn:aws:braket:{region}:{account}:job/{job_id}",
    log_group=LogGroup("/aws/braket/jobs", log_stream), describe=describe))


@handler("braket", "GetJob")
def get_job(ctx: RequestContext, req: dict) -> dict:
    job = jobs.get(ctx.engine, ctx.account_id, KIND, req["jobArn"], region=ctx.region)
    out = KIND.describe(ctx.engine, job)
    if "QueueInfo" in (req.get("additionalAttributeNames") or ()):
        out["queueInfo"] = _queue_info(ctx, job)
    return out


@handler("braket", "CancelJob")
def cancel_job(ctx: RequestContext, req: dict) -> dict:
    job = jobs.get(ctx.engine, ctx.account_id, KIND, req["jobArn"], region=ctx.region)
    if job.state == "STOPPING" and job.stop_reason != "timeout":
        return {"jobArn": job.arn, "cancellationStatus": "CANCELLING"}
    if job.terminal or job.state == "STOPPING":
        raise ServiceError("ConflictException", f"Hybrid job {job.arn} is {status(job)} and cannot be cancelled.")
    job = jobs.request_stop(ctx.engine, job, reason="user")
    ctx.runtime.scheduler.wake()
    return {"jobArn": job.arn, "cancellationStatus": "CANCELLED" if job.state == "STOPPED" else "CANCELLING"}


# SearchJobsFilter.name: the filters and operators the model documents for each.
SEARCH_OPERATORS = {"jobArn": ("EQUAL",), "jobName": ("EQUAL", "CONTAINS"), "deviceArn": ("EQUAL",),
                    "createdAt": ("EQUAL", "GT", "GTE", "LT", "LTE", "BETWEEN")}


def _search_conditions(filters: list[dict]) -> list:
    """SQL conditions for SearchJobs filters, checked as the SearchJobsFilter documentation describes them."""
    names = [item["name"] for item in filters]
    if "jobArn" in names and len(filters) > 1:
        raise validation_error("The jobArn filter cannot be combined with other filters.")
    conditions = []
    for item in filters:
        name, operator, values = item["name"], item["operator"], item["values"]
        if name not in SEARCH_OPERATORS:
            raise validation_error(f"Invalid filter name {name}. Supported filter names are: "
                                   f"{', '.join(SEARCH_OPERATORS)}.")
        allowed = SEARCH_OPERATORS[name]
        if operator not in allowed:
            raise validation_error(f"Invalid operator {operator} for filter {name}. Supported operators for {name} "
                                   f"are: {', '.join(allowed)}.")
        if name == "createdAt":
            conditions.append(common.time_condition(jobs_table.c.created_at, name, operator, values))
        elif name == "deviceArn":  # as the job was created with it: a device ARN or a local simulator id
            device = jobs_table.c.spec["deviceConfig"]["device"].as_string()
            conditions.append(device.in_(values))
        else:
            column = jobs_table.c.arn if name == "jobArn" else jobs_table.c.name
            conditions.append(column.in_(values) if operator == "EQUAL" else
                              sa.or_(*(column.contains(value, autoescape=True) for value in values)))
    return conditions


@handler("braket", "SearchJobs")
def search_jobs(ctx: RequestContext, req: dict) -> dict:
    conditions = _search_conditions(req["filters"])
    page = jobs.list_jobs(ctx.engine, ctx.account_id, KIND, region=ctx.region, extra=conditions,
                          limit=req.get("maxResults", 100), token=req.get("nextToken"), bad_token=validation_error)
    summaries = [{"status": status(job), "jobArn": job.arn, "jobName": job.name,
                  "device": job.spec["deviceConfig"]["device"], "createdAt": from_epoch(job.created_at),
                  "startedAt": from_epoch(job.started_at), "endedAt": from_epoch(job.ended_at),
                  "tags": tags.of(ctx.engine, job.arn)} for job in page.rows]
    out = {"jobs": summaries}
    if page.next_token:
        out["nextToken"] = page.next_token
    return out
