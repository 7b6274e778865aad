"""SageMaker CreateJob and friends: one job kind per JobCategory.

A category is served once it is declared (``kinds.register(job_category(...))``),
with its workload, its JobConfigDocument schemas and how a document becomes a
job; until then CreateJob refuses it with a clear ValidationException.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Callable

import sqlalchemy as sa
from jsonschema import Draft202012Validator
from jsonschema.exceptions import best_match

from jobforge.api.base import RequestContext, handler
from jobforge.api.roles import require_role
from jobforge.core import jobs, kinds, sagemaker_tags, tags
from jobforge.core.errors import ServiceError, validation_error
from jobforge.core.kinds import JobErrors, JobKind, LogGroup, Workload
from jobforge.core.store import jobs_table
from jobforge.core.timestamps import from_epoch

STATUSES = {"QUEUED": "InProgress", "STARTING": "InProgress", "RUNNING": "InProgress", "STOPPING": "Stopping",
            "COMPLETED": "Completed", "FAILED": "Failed", "STOPPED": "Stopped", "TIMED_OUT": "Stopped"}
ERRORS = JobErrors(not_found="ResourceNotFound", conflict="ResourceInUse", not_stoppable="ValidationException",
                   in_use="ResourceInUse")
SECONDARY = {"TIMED_OUT": "MaxRuntimeExceeded", "STOPPED": "Stopped", "FAILED": "Failed",
             "COMPLETED": "Completed", "STOPPING": "Stopping"}
# Internal progress names that are not SageMaker secondary statuses.
SECONDARY_ALIASES = {"TimedOut": "MaxRuntimeExceeded", "Restarting": "Restarting", "Starting": "Starting"}
PREFIX = "sagemaker-job/"  # before the category in the name of its kind
sagemaker_tags.register("job", jobs_table, jobs_table.c.family.startswith(PREFIX, autoescape=True))


@dataclass(frozen=True)
class Category(JobKind):
    """The kind of the jobs of one JobCategory."""

    schemas: dict[str, dict] = field(default_factory=dict)  # JobConfigSchemaVersion → JSON Schema
    # (document, request) → (spec, resources, max runtime seconds or None); raises ServiceError
    build: Callable[[dict, dict], tuple[dict, dict, float | None]] | None = None
    # (request context, spec, resources) → (spec, resources), checked against the server's records (models,
    # packages) and its executor's capacity before the job is stored; raises ServiceError
    admit: Callable[[RequestContext, dict, dict], tuple[dict, dict]] | None = None

    @property
    def category(self) -> str:
        return self.name.removeprefix(PREFIX)


def job_category(name: str, workload: Workload, schemas: dict[str, dict],
                 build: Callable[[dict, dict], tuple[dict, dict, float | None]], *,
                 admit: Callable[[RequestContext, dict, dict], tuple[dict, dict]] | None = None,
                 log_group: LogGroup | None = None) -> Category:
    """The declaration of JobCategory ``name``, for ``kinds.register``."""
    return Category(
        name=PREFIX + name, label=f"{name} job", statuses=STATUSES, errors=ERRORS, workload=workload,
        arn=lambda region, account, job_name, _id: f"arn:aws:sagemaker:{region}:{account}:job/{name}/{job_name}",
        schemas=schemas, build=build, admit=admit, log_group=log_group, describe=describe)


def schema_violation(schema: dict, document: dict) -> str | None:
    """None when the document satisfies the JSON Schema; else its first violation: the JSON path and the rule."""
    error = best_match(Draft202012Validator(schema).iter_errors(document))
    if error is None:
        return None
    return f"JobConfigDocument {error.json_path}: {error.message} (rule: {error.validator})"


def categories() -> dict[str, Category]:
    return {kind.category: kind for kind in kinds.KINDS.values() if isinstance(kind, Category)}


def served(name: str) -> Category | None:
    found = kinds.get(PREFIX + name)
    return found if isinstance(found, Category) else None


def _category(name: str) -> Category:
    found = served(name)
    if found is None:
        raise validation_error(f"JobCategory {name} is not available on this server: no workload is installed "
                               f"for it. Available: {', '.join(sorted(categories())) or 'none'}.")
    return found


def _job(ctx: RequestContext, req: dict) -> jobs.Job:
    """The job JobName names in JobCategory, of the caller's account."""
    found = served(req["JobCategory"])
    if found is None:
        raise ServiceError(ERRORS.not_found, f"{req['JobCategory']} job {req['JobName']} not found.")
    return jobs.get(ctx.engine, ctx.account_id, found, req["JobName"], region=ctx.region)


def _secondary(job: jobs.Job) -> str:
    if job.terminal or job.state == "STOPPING":
        return SECONDARY[job.state]
    value = job.secondary_status or "Pending"
    return SECONDARY_ALIASES.get(value, value)


def _transitions(job: jobs.Job) -> list[dict]:
    out = []
    for i, item in enumerate(job.transitions):
        secondary = item.get("secondary")
        state = item["state"]
        status = SECONDARY.get(state) if state in SECONDARY else SECONDARY_ALIASES.get(secondary, secondary)
        if not status or (out and out[-1]["Status"] == status):
            continue
        entry = {"Status": status, "StartTime": from_epoch(item["at"])}
        if item.get("message"):
            entry["StatusMessage"] = item["message"][:1024]
        if out:
            out[-1]["EndTime"] = entry["StartTime"]
        out.append(entry)
    return out[-100:]


@handler("sagemaker", "CreateJob")
def create_job(ctx: RequestContext, req: dict) -> dict:
    category = _category(req["JobCategory"])
    version = req["JobConfigSchemaVersion"]
    if version not in category.schemas:
        raise validation_error(f"JobConfigSchemaVersion {version} is not supported for {req['JobCategory']}; "
                               f"supported: {', '.join(sorted(category.schemas))}.")
    try:
        document = json.loads(req["JobConfigDocument"])
    except ValueError as err:
        raise validation_error(f"JobConfigDocument is not valid JSON: {err}") from None
    if not isinstance(document, dict):
        raise validation_error("JobConfigDocument must be a JSON object")
    violation = schema_violation(category.schemas[version], document)
    if violation:
        raise validation_error(violation[:1024])
    spec, resources, max_runtime = category.build(document, req)
    if category.admit is not None:
        spec, resources = category.admit(ctx, spec, resources)
    require_role(ctx, req["RoleArn"], "ResourceNotFound")
    job, _ = jobs.create(
        ctx.engine, account_id=ctx.account_id, region=ctx.region, kind=category,
        name=req["JobName"], spec=dict(spec, JobConfigDocument=document),
        resources=resources, role_arn=req["RoleArn"], max_runtime=max_runtime,
        tags_=sagemaker_tags.requested(req.get("Tags")), secondary_status="Pending")
    ctx.runtime.scheduler.wake()
    return {"JobArn": job.arn}


def describe(engine: sa.Engine, job: jobs.Job) -> dict:
    document = dict(job.spec.get("JobConfigDocument", {}))
    if job.result.get("ServiceOutput"):
        document["ServiceOutput"] = job.result["ServiceOutput"]
    out = {
        "JobName": job.name, "JobArn": job.arn, "RoleArn": job.role_arn, "JobCategory": job.family.removeprefix(PREFIX),
        "JobConfigSchemaVersion": job.spec.get("JobConfigSchemaVersion"),
        "JobConfigDocument": json.dumps(document), "CreationTime": from_epoch(job.created_at),
        "LastModifiedTime": from_epoch(job.updated_at), "EndTime": from_epoch(job.ended_at), "JobStatus": job.status,
        "SecondaryStatus": _secondary(job), "SecondaryStatusTransitions": _transitions(job),
        "Tags": [{"Key": k, "Value": v} for k, v in tags.of(engine, job.arn).items()],
    }
    if job.failure_reason:
        out["FailureReason"] = job.failure_reason[:1024]
    elif job.state == "TIMED_OUT":
        out["FailureReason"] = job.status_message or "MaxRuntimeInSeconds exceeded"
    return out


@handler("sagemaker", "DescribeJob")
def describe_job(ctx: RequestContext, req: dict) -> dict:
    return describe(ctx.engine, _job(ctx, req))


@handler("sagemaker", "ListJobs")
def list_jobs(ctx: RequestContext, req: dict) -> dict:
    epoch = lambda key: req[key].timestamp() if key in req else None  # noqa: E731
    kind = served(req["JobCategory"])
    if kind is None:
        return {"JobSummaries": []}
    page = jobs.list_jobs(
        ctx.engine, ctx.account_id, kind, region=ctx.region, name_contains=req.get("NameContains"),
        states=kind.states(req["StatusEquals"]) if "StatusEquals" in req else None,
        created_after=epoch("CreationTimeAfter"), created_before=epoch("CreationTimeBefore"),
        modified_after=epoch("LastModifiedTimeAfter"), modified_before=epoch("LastModifiedTimeBefore"),
        sort_by=req.get("SortBy", "CreationTime"), ascending=req.get("SortOrder") == "Ascending",
        limit=req.get("MaxResults", 100), token=req.get("NextToken"), bad_token=validation_error)
    summaries = [{
        "JobName": j.name, "JobArn": j.arn, "JobCategory": req["JobCategory"], "JobStatus": j.status,
        "JobSecondaryStatus": _secondary(j), "CreationTime": from_epoch(j.created_at),
        "LastModifiedTime": from_epoch(j.updated_at), "EndTime": from_epoch(j.ended_at),
    } for j in page.rows]
    out = {"JobSummaries": summaries}
    if page.next_token:
        out["NextToken"] = page.next_token
    return out


@handler("sagemaker", "StopJob")
def stop_job(ctx: RequestContext, req: dict) -> dict:
    jobs.request_stop(ctx.engine, _job(ctx, req))
    ctx.runtime.scheduler.wake()
    return {}


@handler("sagemaker", "DeleteJob")
def delete_job(ctx: RequestContext, req: dict) -> dict:
    jobs.delete(ctx.engine, _job(ctx, req))
    return {}


@handler("sagemaker", "ListJobSchemaVersions")
def list_job_schema_versions(ctx: RequestContext, req: dict) -> dict:
    category = served(req["JobCategory"])
    if category is None:
        raise ServiceError("ResourceNotFound", f"No schemas are published for JobCategory {req['JobCategory']}.")
    return {"JobConfigSchemas": [{"JobConfigSchemaVersion": v} for v in sorted(category.schemas)]}


@handler("sagemaker", "DescribeJobSchemaVersion")
def describe_job_schema_version(ctx: RequestContext, req: dict) -> dict:
    category = served(req["JobCategory"])
    if category is None:
        raise ServiceError("ResourceNotFound", f"No schemas are published for JobCategory {req['JobCategory']}.")
    version = req.get("JobConfigSchemaVersion") or max(category.schemas)
    if version not in category.schemas:
        raise ServiceError("ResourceNotFound", f"Schema version {version} of {req['JobCategory']} does not exist.")
    return {"JobCategory": req["JobCategory"], "JobConfigSchemaVersion": version,
            "JobConfigSchema": json.dumps(category.schemas[version])}
