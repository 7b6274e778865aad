"""Braket quantum tasks: CreateQuantumTask, GetQuantumTask, CancelQuantumTask, SearchQuantumTasks.

CreateQuantumTask checks what AWS checks up front (the device can run it, the
action parses and is one the device supports, shots in the device's range,
the output bucket is the caller's, the job token names a running job of the
caller), records the task and hands it to the task runner. A task created
with a hybrid job's ``jobToken`` carries the job's ARN: it is listed with the
job and queued at priority, as on Braket.
"""

from __future__ import annotations

import functools
import json
import re
import time
import uuid

import sqlalchemy as sa

from jobforge.api.base import RequestContext, client_token, handler
from jobforge.api.braket import common, hybrid_jobs
from jobforge.core.quantum_tasks import QuantumTask, quantum_tasks, transition
from jobforge.core import idempotency, paging, tags
from jobforge.core.errors import ServiceError, validation_error
from jobforge.core.store import reading
from jobforge.core.timestamps import from_epoch

TOKEN_SCOPE = "braket-quantum-task:create"
TOKEN_REUSED = idempotency.reused("ValidationException", "clientToken")
QUEUE_POSITION_CAP = 2000
TASK_STATUSES = ("CREATED", "QUEUED", "RUNNING", "COMPLETED", "FAILED", "CANCELLING", "CANCELLED")


@functools.lru_cache(maxsize=None)
def _capabilities(device_arn: str) -> dict:
    return json.loads(common.catalogue().capabilities_json(device_arn))


def _action_type(device_arn: str, action: str) -> str:
    from braket.schema_common import BraketSchemaBase

    try:
        program = BraketSchemaBase.parse_raw_schema(action)
    except Exception as err:  # JSON, unknown schema and pydantic errors alike
        raise validation_error(f"Invalid action: {err}") from None
    action_type = program.braketSchemaHeader.name
    supported = _capabilities(device_arn)["action"]
    if action_type not in supported:
        raise validation_error(f"Device {device_arn} does not support action type {action_type}; "
                               f"supported: {', '.join(supported)}.")
    _check_result_types(device_arn, program, supported[action_type].get("supportedResultTypes"))
    return action_type


_RESULT_PRAGMA = re.compile(r"^\s*#pragma\s+braket\s+result\s+(\w+)", re.MULTILINE)


def _comparable(name: str) -> str:
    """A result type's name as OpenQASM (adjoint_gradient), JAQCD (adjoint_gradient) and capabilities
    (AdjointGradient) write it, in one form."""
    return name.replace("_", "").lower()


def _check_result_types(device_arn: str, program, supported: list[dict] | None) -> None:
    """Refuse a result type the device's simulator does not compute (such as adjoint_gradient, which the
    local simulator would silently leave out), rather than accept the task and return less than it asked."""
    if supported is None:
        return
    if getattr(program, "source", None) is not None:
        requested = _RESULT_PRAGMA.findall(program.source)
    else:
        requested = [getattr(result.type, "value", result.type) for result in getattr(program, "results", None) or ()]
    names = {_comparable(item["name"]) for item in supported}
    for name in requested:
        if _comparable(name) not in names:
            raise validation_error(
                f"Result type {name} is not supported by {device_arn} here; supported result types: "
                f"{', '.join(item['name'] for item in supported)}.")


def _check_request(ctx: RequestContext, req: dict, device_arn: str) -> None:
    low, high = _capabilities(device_arn)["service"]["shotsRange"]
    if not low <= req["shots"] <= high:
        raise validation_error(f"shots {req['shots']} is outside the range of {device_arn}: [{low}, {high}].")
    if req.get("deviceParameters"):
        try:
            json.loads(req["deviceParameters"])
        except ValueError:
            raise validation_error("deviceParameters is not valid JSON.") from None
    for association in req.get("associations") or []:
        raise validation_error(f"Reservation {association['arn']} does not exist: jobforge has no reservations.")
    try:
        ctx.runtime.object_store.bucket(ctx.account_id, req["outputS3Bucket"])
    except ServiceError:
        raise validation_error(f"Caller doesn't have access to {req['outputS3Bucket']} or it doesn't exist.") \
            from None


@handler("braket", "CreateQuantumTask", blocking=True)
def create_quantum_task(ctx: RequestContext, req: dict) -> dict:
    device_arn = common.require_usable_device(req["deviceArn"])
    token = client_token(ctx, TOKEN_SCOPE, req, "clientToken")
    replayed = idempotency.earlier(ctx.engine, token, TOKEN_REUSED)
    if replayed:
        return {"quantumTaskArn": replayed}
    action_type = _action_type(device_arn, req["action"])
    _check_request(ctx, req, device_arn)
    job = hybrid_jobs.job_of_token(ctx, req["jobToken"]) if req.get("jobToken") else None
    task_id = str(uuid.uuid4())
    arn = f"arn:aws:braket:{ctx.region}:{ctx.account_id}:quantum-task/{task_id}"
    now = time.time()
    row = dict(id=task_id, arn=arn, account_id=ctx.account_id, region=ctx.region, status="QUEUED",
               device_arn=device_arn, shots=req["shots"], action=req["action"], action_type=action_type,
               device_parameters=req.get("deviceParameters"), output_bucket=req["outputS3Bucket"],
               output_prefix=req["outputS3KeyPrefix"],
               output_directory=f"{req['outputS3KeyPrefix'].rstrip('/')}/{task_id}",
               job_arn=job.arn if job else None, server_id=ctx.runtime.leases.server_id, failure_reason=None,
               extra={k: req[k] for k in ("experimentalCapabilities",) if k in req},
               created_at=now, started_at=None, ended_at=None)
    try:
        with ctx.engine.begin() as conn:
            idempotency.remember(conn, token, arn)
            conn.execute(quantum_tasks.insert().values(row))
            tags.put(conn, ctx.account_id, arn, req.get("tags") or {})
    except sa.exc.IntegrityError:  # the same token, concurrently
        replayed = idempotency.earlier(ctx.engine, token, TOKEN_REUSED)
        if replayed:
            return {"quantumTaskArn": replayed}
        raise
    ctx.runtime.quantum_tasks.submit(task_id)
    return {"quantumTaskArn": arn}


def find(ctx: RequestContext, arn: str) -> QuantumTask:
    with reading(ctx.engine) as conn:
        row = conn.execute(sa.select(quantum_tasks).where(quantum_tasks.c.arn == arn,
                                                          quantum_tasks.c.account_id == ctx.account_id,
                                                          quantum_tasks.c.region == ctx.region)).first()
    if row is None:
        raise ServiceError("ResourceNotFoundException", f"Quantum task {arn} not found.")
    return QuantumTask.from_row(row)


def _queue_info(ctx: RequestContext, task: QuantumTask) -> dict:
    priority = "Priority" if task.job_arn else "Normal"
    if task.status != "QUEUED":
        return {"queue": "QUANTUM_TASKS_QUEUE", "position": "None", "queuePriority": priority,
                "message": f"Task is in {task.status} status. AmazonBraket does not show queue position for this "
                           "status."}
    with reading(ctx.engine) as conn:  # the runner takes tasks first in, first out
        ahead = conn.execute(sa.select(sa.func.count()).select_from(quantum_tasks).where(
            quantum_tasks.c.status == "QUEUED", quantum_tasks.c.created_at < task.created_at)).scalar_one()
    position = ahead + 1
    return {"queue": "QUANTUM_TASKS_QUEUE", "queuePriority": priority,
            "position": str(position) if position <= QUEUE_POSITION_CAP else f">{QUEUE_POSITION_CAP}"}


@handler("braket", "GetQuantumTask")
def get_quantum_task(ctx: RequestContext, req: dict) -> dict:
    task = find(ctx, req["quantumTaskArn"])
    out = {"quantumTaskArn": task.arn, "status": task.status, "failureReason": task.failure_reason,
           "deviceArn": task.device_arn, "deviceParameters": task.device_parameters or "{}", "shots": task.shots,
           "outputS3Bucket": task.output_bucket, "outputS3Directory": task.output_directory,
           "createdAt": from_epoch(task.created_at), "endedAt": from_epoch(task.ended_at),
           "tags": tags.of(ctx.engine, task.arn), "jobArn": task.job_arn,
           "actionMetadata": {"actionType": task.action_type}, **task.extra}
    if task.status == "COMPLETED":
        out["numSuccessfulShots"] = task.shots
    if "QueueInfo" in (req.get("additionalAttributeNames") or ()):
        out["queueInfo"] = _queue_info(ctx, task)
    return out


@handler("braket", "CancelQuantumTask")
def cancel_quantum_task(ctx: RequestContext, req: dict) -> dict:
    task = find(ctx, req["quantumTaskArn"])
    if transition(ctx.engine, task.id, "CANCELLED", ("CREATED", "QUEUED")):
        status = "CANCELLED"
    elif task.status == "CANCELLING" or transition(ctx.engine, task.id, "CANCELLING", ("RUNNING",)):
        ctx.runtime.quantum_tasks.cancel(task.id)
        status = "CANCELLING"
    else:
        task = find(ctx, task.arn)
        if task.status == "CANCELLED":
            status = "CANCELLED"
        else:
            raise ServiceError("ConflictException",
                               f"Quantum task {task.arn} is {task.status} and cannot be cancelled.")
    return {"quantumTaskArn": task.arn, "cancellationStatus": status}


SEARCH_FIELDS = {
    "quantumTaskArn": common.Field(quantum_tasks.c.arn, "string"),
    "deviceArn": common.Field(quantum_tasks.c.device_arn, "string"),
    "jobArn": common.Field(quantum_tasks.c.job_arn, "string"),
    "status": common.Field(quantum_tasks.c.status, "string", TASK_STATUSES),
    "createdAt": common.Field(quantum_tasks.c.created_at, "time"),
}


@handler("braket", "SearchQuantumTasks")
def search_quantum_tasks(ctx: RequestContext, req: dict) -> dict:
    conditions = common.filter_conditions(req["filters"], SEARCH_FIELDS)
    query = sa.select(quantum_tasks).where(quantum_tasks.c.account_id == ctx.account_id,
                                           quantum_tasks.c.region == ctx.region, *conditions)
    bind = dict(region=ctx.region, filters=[str(c.compile(compile_kwargs={"literal_binds": True}))
                                            for c in conditions])
    page = paging.keyset_page(ctx.engine, query, quantum_tasks.c.created_at, quantum_tasks.c.id, False,
                              req.get("maxResults", 100), req.get("nextToken"), bind, validation_error)
    summaries = []
    for row in page.rows:
        task = QuantumTask.from_row(row)
        summaries.append({"quantumTaskArn": task.arn, "status": task.status, "deviceArn": task.device_arn,
                          "shots": task.shots, "outputS3Bucket": task.output_bucket,
                          "outputS3Directory": task.output_directory,
                          "createdAt": from_epoch(task.created_at), "endedAt": from_epoch(task.ended_at),
                          "tags": tags.of(ctx.engine, task.arn)})
    out = {"quantumTasks": summaries}
    if page.next_token:
        out["nextToken"] = page.next_token
    return out
