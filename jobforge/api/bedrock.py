"""Bedrock model customization jobs: FINE_TUNING, CONTINUED_PRE_TRAINING,
DISTILLATION and REINFORCEMENT_FINE_TUNING, trained for real by the
``bedrock-customization`` workload (RFT on the agent-RL engine).

Create checks synchronously what Bedrock checks (base model, role, S3 URIs
and the first record of each dataset, hyperparameters, the grader Lambda of an
RFT job); the workload then
validates every record, trains, writes Bedrock's metric files and the model.
The custom model is registered only when the job completes.
"""

from __future__ import annotations

import json
import time

import sqlalchemy as sa

from jobforge.api import bedrock_objects
from jobforge.api.base import RequestContext, client_token, handler
from jobforge.api.bedrock_common import (
    INVALID_MODEL,
    ResolvedModel,
    epoch,
    foundation,
    replayed,
    resolve_model,
    unregistered,
)
from jobforge.api.roles import require_role
from jobforge.core import custom_models as cm
from jobforge.core import functions, jobs, kinds, tags
from jobforge.core.kinds import JobErrors, JobKind, Workload
from jobforge.core.errors import ServiceError, validation_error
from jobforge.core.models_catalog import foundation_model_arn
from jobforge.core.store import jobs_table, reading
from jobforge.core.timestamps import from_epoch
from jobforge.workloads.customize.families import REINFORCEMENT_FINE_TUNING, on_demand_only

SUPPORTED = ("FINE_TUNING", "CONTINUED_PRE_TRAINING", "DISTILLATION", REINFORCEMENT_FINE_TUNING)
STATUSES = {"QUEUED": "InProgress", "STARTING": "InProgress", "RUNNING": "InProgress", "STOPPING": "Stopping",
            "COMPLETED": "Completed", "FAILED": "Failed", "STOPPED": "Stopped", "TIMED_OUT": "Failed"}
PHASES = (("Validation", "validationDetails"), ("DataProcessing", "dataProcessingDetails"),
          ("Training", "trainingDetails"))
PHASE_END = {"COMPLETED": "Completed", "FAILED": "Failed", "TIMED_OUT": "Failed", "STOPPED": "Stopped",
             "STOPPING": "Stopping"}
HEAD_BYTES = 1 << 16
UNPARSABLE = ("Unable to parse S3 file due to invalid data schema/format. For more information on training "
              "dataset format requirements, see the Amazon Bedrock User Guide.")


def job_arn(region: str, account_id: str, base_model_id: str, job_id: str) -> str:
    return f"arn:aws:bedrock:{region}:{account_id}:model-customization-job/{base_model_id}/{job_id}"


def _on_terminal(runtime, job: jobs.Job) -> None:
    if job.state == "COMPLETED":
        register_model(runtime.engine, job)


# -- the custom model of a completed job -------------------------------------
def register_model(engine: sa.Engine, job: jobs.Job) -> cm.CustomModel:
    api = job.spec["api"]
    result = job.result
    metrics = {"trainingMetrics": {"trainingLoss": result["trainingLoss"]}} if result.get("trainingLoss") is not None \
        else {}
    if result.get("validationMetrics"):
        metrics["validationMetrics"] = result["validationMetrics"]
    details = {"jobName": job.name, "jobArn": job.arn, "baseModelArn": api["baseModelArn"],
               "hyperParameters": job.spec.get("hyperParameters") or {},
               "trainingDataConfig": job.spec["trainingDataConfig"],
               "validationDataConfig": job.spec["validationDataConfig"],
               "outputDataConfig": job.spec["outputDataConfig"], "customizationConfig": api.get("customizationConfig"),
               **metrics}
    model = cm.insert_model(engine, cm.CustomModel(
        id=api["customModelId"], account_id=job.account_id, region=job.region, name=api["customModelName"],
        arn=api["customModelArn"],
        base_model_id=job.spec["baseModel"]["identifier"], job_id=job.id,
        customization_type=job.spec["customizationType"],
        location=result.get("outputModelUri") or job.spec["outputModelUri"], status="Active",
        failure_message=None, details=details, created_at=job.ended_at or time.time()))
    tags.put(engine, job.account_id, model.arn, api.get("customModelTags") or {})
    return model


def reconcile_models(runtime, account_id: str, region: str) -> None:
    """Register the models of the region's completed jobs whose hook a server crash interrupted."""
    engine = runtime.engine
    with reading(engine) as conn:
        rows = conn.execute(sa.select(jobs_table).where(
            jobs_table.c.account_id == account_id, jobs_table.c.region == region, jobs_table.c.family == KIND.name,
            jobs_table.c.state == "COMPLETED",
            jobs_table.c.id.not_in(sa.select(cm.custom_models.c.job_id).where(cm.custom_models.c.job_id.is_not(None)))
        )).all()
    for row in rows:
        job = jobs.Job.from_row(row)
        if not job.result.get("customModelDeleted"):
            register_model(engine, job)


# -- create -------------------------------------------------------------------
def _customization_type(req: dict) -> str:
    kind = req.get("customizationType", "FINE_TUNING")
    if kind not in SUPPORTED:
        raise validation_error(f"Customization type {kind} cannot be used with CreateModelCustomizationJob. "
                               f"Supported: {', '.join(SUPPORTED)}.")
    config = req.get("customizationConfig") or {}
    if kind != REINFORCEMENT_FINE_TUNING and "rftConfig" in config:
        raise validation_error("customizationConfig.rftConfig applies only to REINFORCEMENT_FINE_TUNING.")
    if kind == REINFORCEMENT_FINE_TUNING and "lambdaGrader" not in config.get("rftConfig", {}).get("graderConfig", {}):
        raise validation_error("REINFORCEMENT_FINE_TUNING jobs need a grader: "
                               "customizationConfig.rftConfig.graderConfig.lambdaGrader.lambdaArn.")
    if kind == "DISTILLATION" and "distillationConfig" not in config:
        raise validation_error("DISTILLATION jobs need customizationConfig.distillationConfig.teacherModelConfig.")
    if kind != "DISTILLATION" and "distillationConfig" in config:
        raise validation_error(f"customizationConfig.distillationConfig does not apply to {kind} jobs.")
    if "s3Uri" in req["trainingDataConfig"] and "invocationLogsConfig" in req["trainingDataConfig"]:
        raise validation_error("trainingDataConfig takes either s3Uri or invocationLogsConfig, not both.")
    if "invocationLogsConfig" in req["trainingDataConfig"] and kind != "DISTILLATION":
        raise validation_error("trainingDataConfig.invocationLogsConfig is only supported for DISTILLATION jobs.")
    return kind


def _base_model(ctx: RequestContext, identifier: str) -> ResolvedModel:
    base = resolve_model(ctx, identifier)
    if base.custom is None and on_demand_only(base.family_id):
        raise validation_error(INVALID_MODEL)  # Bedrock customizes a model's context-window variants only
    if base.custom is not None and not base.family_id:
        raise validation_error(f"{base.arn} was imported; imported models cannot be customized further.")
    return base


def _teacher(ctx: RequestContext, req: dict) -> dict:
    config = req["customizationConfig"]["distillationConfig"]["teacherModelConfig"]
    teacher = foundation(ctx, config["teacherModelIdentifier"])
    if teacher is None:
        raise validation_error(unregistered(config["teacherModelIdentifier"]))
    from jobforge.workloads.customize import customization_support

    if not customization_support(teacher.family_id)["distillationTeacher"]:
        raise validation_error(f"Model {teacher.family_id} cannot be used as a distillation teacher.")
    out = {"identifier": teacher.family_id, "path": teacher.location}
    if config.get("maxResponseLengthForInference") is not None:
        out["maxResponseLengthForInference"] = config["maxResponseLengthForInference"]
    return out


def _check_dataset(ctx: RequestContext, uri: str, kind: str, family_id: str) -> None:
    """Bedrock's synchronous checks: a .jsonl object that exists and whose first record parses."""
    if not uri.endswith(".jsonl"):
        raise validation_error(f"Provided S3 location is invalid: {uri}. Input data must be in .jsonl format")
    from jobforge.workloads.customize.data import parse_record
    from jobforge.workloads.customize.families import family_of

    head = bedrock_objects.read_head(ctx, uri, HEAD_BYTES)
    lines = head.split(b"\n")
    complete = lines if len(head) < HEAD_BYTES else lines[:-1]
    first = next(((n, line) for n, line in enumerate(complete, 1) if line.strip()), None)
    if first is None:
        if len(head) < HEAD_BYTES:
            raise validation_error(f"Provided S3 location is invalid: {uri}. The file has no records.")
        return  # a first record longer than the probe: left to the validation phase
    try:
        record = json.loads(first[1])
        if not isinstance(record, dict):
            raise ValueError("not an object")
        parse_record(record, first[0], kind, family_of(family_id))
    except (ValueError, UnicodeDecodeError) as err:
        raise validation_error(f"{UNPARSABLE} {uri} line {first[0]}: {err}") from None


def _hyperparameters(base: ResolvedModel, kind: str, req: dict) -> None:
    from jobforge.workloads.customize import validate_hyperparameters, validate_rft_hyperparameters

    try:
        if kind == REINFORCEMENT_FINE_TUNING:
            validate_rft_hyperparameters(base.family_id, req["customizationConfig"]["rftConfig"],
                                         req.get("hyperParameters"))
        else:
            validate_hyperparameters(base.family_id, kind, req.get("hyperParameters"))
    except ValueError as err:
        raise validation_error(str(err)) from None


def _check_grader(ctx: RequestContext, arn: str) -> None:
    """The grader is a Lambda function of the caller's account and region (its $LATEST)."""
    region, account, name, qualifier = functions.parse_identifier(arn)
    if (region, account) != (ctx.region, ctx.account_id) or qualifier not in (None, functions.LATEST) or \
            functions.find(ctx.engine, ctx.account_id, ctx.region, name) is None:
        raise validation_error(f"The grader Lambda function {arn} was not found: give the ARN of a function of "
                               f"account {ctx.account_id} in {ctx.region} (its $LATEST version).")


def _resources(ctx: RequestContext) -> dict:
    """What a customization job asks for. Bedrock's API names no instance type (AWS picks the hardware), so
    jobforge picks: one GPU when the executor's nodes have any (the workload trains on it, else on CPU), up to
    4 CPU threads (more gain little for the small models trained on CPU) and up to 4 GiB of memory."""
    node = ctx.runtime.scheduler.executor.capacity()
    return {"cpus": max(1, min(4, node.cpus)), "memory_mb": min(4096, node.memory_mb), "gpus": 1 if node.gpus else 0}


def model_name_reserved(ctx: RequestContext, name: str) -> bool:
    """A custom model of the request's region has the name, or a job in progress there will create one with it."""
    if cm.name_taken(ctx.engine, ctx.account_id, ctx.region, name):
        return True
    with reading(ctx.engine) as conn:
        rows = conn.execute(sa.select(jobs_table.c.spec).where(
            jobs_table.c.account_id == ctx.account_id, jobs_table.c.region == ctx.region,
            jobs_table.c.family == KIND.name,
            jobs_table.c.state.in_(jobs.ACTIVE))).all()
    return any(row.spec["api"]["customModelName"] == name for row in rows)


@handler("bedrock", "CreateModelCustomizationJob", blocking=True)
def create_model_customization_job(ctx: RequestContext, req: dict) -> dict:
    token = client_token(ctx, KIND.token_scope, req, "clientRequestToken")
    earlier = replayed(ctx, token)
    if earlier:  # a retry of a request that created a job
        return {"jobArn": earlier}
    kind = _customization_type(req)
    base = _base_model(ctx, req["baseModelIdentifier"])
    _hyperparameters(base, kind, req)
    teacher = _teacher(ctx, req) if kind == "DISTILLATION" else None
    if kind == REINFORCEMENT_FINE_TUNING:
        _check_grader(ctx, req["customizationConfig"]["rftConfig"]["graderConfig"]["lambdaGrader"]["lambdaArn"])
    try:
        require_role(ctx, req["roleArn"], "ValidationException")
    except ServiceError:
        raise validation_error("Could not assume provided IAM role.") from None
    if model_name_reserved(ctx, req["customModelName"]):
        raise ServiceError("ConflictException", f"A custom model named {req['customModelName']} already exists "
                           "or is being created. Choose a different customModelName.")
    training = req["trainingDataConfig"]
    if "s3Uri" not in training and "invocationLogsConfig" not in training:
        raise validation_error("trainingDataConfig needs s3Uri or invocationLogsConfig.")
    if "s3Uri" in training:
        _check_dataset(ctx, training["s3Uri"], kind, base.family_id)
    for validator in (req.get("validationDataConfig") or {}).get("validators", []):
        _check_dataset(ctx, validator["s3Uri"], "FINE_TUNING" if kind == "DISTILLATION" else kind, base.family_id)
    bedrock_objects.check_output_location(ctx, req["outputDataConfig"]["s3Uri"])

    job_id = cm.new_resource_id()
    model_id = cm.new_resource_id()
    output_prefix = f"{req['outputDataConfig']['s3Uri'].rstrip('/')}/model-customization-job-{job_id}/"
    spec = {
        "jobId": job_id, "customizationType": kind,
        "baseModel": {"identifier": base.family_id, "path": base.location},
        "trainingDataConfig": training,
        "validationDataConfig": req.get("validationDataConfig") or {"validators": []},
        "outputDataConfig": req["outputDataConfig"],
        "hyperParameters": req.get("hyperParameters") or {},
        "outputModelUri": output_prefix + "custom-model/",
        "api": {"customModelName": req["customModelName"], "customModelId": model_id,
                "customModelArn": cm.custom_model_arn(ctx.region, ctx.account_id, base.family_id, model_id),
                "customModelTags": {t["key"]: t["value"] for t in req.get("customModelTags", [])},
                "baseModelArn": foundation_model_arn(ctx.region, base.family_id),
                "baseModelIdentifierArn": base.arn, "clientRequestToken": req.get("clientRequestToken"),
                "customizationConfig": req.get("customizationConfig"), "vpcConfig": req.get("vpcConfig"),
                "customModelKmsKeyId": req.get("customModelKmsKeyId")},
    }
    if teacher is not None:
        spec["teacherModel"] = teacher
    if kind == REINFORCEMENT_FINE_TUNING:
        spec["rftConfig"] = req["customizationConfig"]["rftConfig"]
    job, _ = jobs.create(
        ctx.engine, account_id=ctx.account_id, region=ctx.region, kind=KIND, name=req["jobName"], spec=spec,
        resources=_resources(ctx), role_arn=req["roleArn"],
        tags_={t["key"]: t["value"] for t in req.get("jobTags", [])}, token=token, job_id=job_id,
        arn=job_arn(ctx.region, ctx.account_id, base.family_id, job_id))
    ctx.runtime.scheduler.wake()
    return {"jobArn": job.arn}


# -- read ---------------------------------------------------------------------
def status_details(job: jobs.Job) -> dict:
    """Each phase's status from the job's recorded transitions."""
    names = [p for p in PHASES if p[0] != "DataProcessing" or job.spec.get("customizationType") == "DISTILLATION"]
    entered: dict[str, float] = {}
    for item in job.transitions:
        phase = item.get("secondary")
        if phase in dict(names) and phase not in entered:
            entered[phase] = item["at"]
    reached = [phase for phase, _ in names if phase in entered]
    current = reached[-1] if reached else None
    out = {}
    for index, (phase, key) in enumerate(names):
        if phase not in entered:
            if current is None and index == 0 and job.state in PHASE_END:
                # The job ended (failed at launch, or stopped while queued) before its first phase.
                out[key] = {"status": PHASE_END[job.state], "creationTime": from_epoch(job.created_at),
                            "lastModifiedTime": from_epoch(job.updated_at)}
            else:
                out[key] = {"status": "NotStarted"}
            continue
        later = [entered[p] for p, _ in names[index + 1:] if p in entered]
        if later:
            status, modified = "Completed", min(later)
        else:
            status, modified = PHASE_END.get(job.state, "InProgress"), job.updated_at
        out[key] = {"status": status, "creationTime": from_epoch(entered[phase]),
                    "lastModifiedTime": from_epoch(modified)}
    return out


def _custom_model_arn(job: jobs.Job) -> str | None:
    """The model a completed job produced (still named after DeleteCustomModel, as on Bedrock)."""
    return job.spec["api"]["customModelArn"] if job.state == "COMPLETED" else None


def _latest_training_loss(engine: sa.Engine, job: jobs.Job) -> float | None:
    if job.result.get("trainingLoss") is not None:
        return job.result["trainingLoss"]
    losses = [m["value"] for m in jobs.metrics(engine, job.id) if m["name"] == "training_loss"]
    return losses[-1] if losses else None


def describe(engine: sa.Engine, job: jobs.Job) -> dict:
    spec, api = job.spec, job.spec["api"]
    out = {
        "jobArn": job.arn, "jobName": job.name, "outputModelName": api["customModelName"],
        "outputModelArn": _custom_model_arn(job), "clientRequestToken": api.get("clientRequestToken"),
        "roleArn": job.role_arn, "status": job.status, "statusDetails": status_details(job),
        "creationTime": from_epoch(job.created_at), "lastModifiedTime": from_epoch(job.updated_at),
        "endTime": from_epoch(job.ended_at), "baseModelArn": api["baseModelArn"],
        "hyperParameters": spec.get("hyperParameters") or {}, "trainingDataConfig": spec["trainingDataConfig"],
        "validationDataConfig": spec["validationDataConfig"], "outputDataConfig": spec["outputDataConfig"],
        "customizationType": spec["customizationType"], "vpcConfig": api.get("vpcConfig"),
        "customizationConfig": api.get("customizationConfig"),
    }
    if job.failure_reason and job.state in ("FAILED", "TIMED_OUT"):
        out["failureMessage"] = job.failure_reason[:2048]
    loss = _latest_training_loss(engine, job)
    if loss is not None:
        out["trainingMetrics"] = {"trainingLoss": loss}
    if job.result.get("validationMetrics"):
        out["validationMetrics"] = job.result["validationMetrics"]
    kms = api.get("customModelKmsKeyId") or ""
    if ":key/" in kms:
        out["outputModelKmsKeyArn"] = kms
    return out


KIND = kinds.register(JobKind(
    name="bedrock-customization", label="Model customization job", statuses=STATUSES,
    errors=JobErrors(not_found="ResourceNotFoundException", conflict="ConflictException",
                     not_stoppable="ConflictException", in_use="ConflictException"),
    workload=Workload("jobforge.workloads.customize", resumable=True), on_terminal=_on_terminal,
    describe=describe))


@handler("bedrock", "GetModelCustomizationJob")
def get_model_customization_job(ctx: RequestContext, req: dict) -> dict:
    job = jobs.get(ctx.engine, ctx.account_id, KIND, req["jobIdentifier"], region=ctx.region)
    if job.state == "COMPLETED":
        reconcile_models(ctx.runtime, ctx.account_id, ctx.region)
    return KIND.describe(ctx.engine, job)


@handler("bedrock", "ListModelCustomizationJobs")
def list_model_customization_jobs(ctx: RequestContext, req: dict) -> dict:
    page = jobs.list_jobs(
        ctx.engine, ctx.account_id, KIND, region=ctx.region, name_contains=req.get("nameContains"),
        states=KIND.states(req["statusEquals"]) if "statusEquals" in req else None,
        created_after=epoch(req, "creationTimeAfter"), created_before=epoch(req, "creationTimeBefore"),
        sort_by=req.get("sortBy", "CreationTime"), ascending=req.get("sortOrder") == "Ascending",
        limit=req.get("maxResults", 100), token=req.get("nextToken"), bad_token=validation_error)
    summaries = []
    for job in page.rows:
        api = job.spec["api"]
        summaries.append({
            "jobArn": job.arn, "baseModelArn": api.get("baseModelIdentifierArn") or api["baseModelArn"],
            "jobName": job.name, "status": job.status, "statusDetails": status_details(job),
            "lastModifiedTime": from_epoch(job.updated_at), "creationTime": from_epoch(job.created_at),
            "endTime": from_epoch(job.ended_at), "customModelArn": _custom_model_arn(job),
            "customModelName": api["customModelName"], "customizationType": job.spec["customizationType"],
        })
    out = {"modelCustomizationJobSummaries": summaries}
    if page.next_token:
        out["nextToken"] = page.next_token
    return out


@handler("bedrock", "StopModelCustomizationJob")
def stop_model_customization_job(ctx: RequestContext, req: dict) -> dict:
    job = jobs.get(ctx.engine, ctx.account_id, KIND, req["jobIdentifier"], region=ctx.region)
    jobs.request_stop(ctx.engine, job)
    ctx.runtime.scheduler.wake()
    return {}
