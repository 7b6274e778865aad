"""SageMaker CreateJob and friends: one family per JobCategory.

A category is served once a workload is bound to it (``register_category``);
until then CreateJob refuses it with a clear ValidationException.
"""

from __future__ import annotations

import datetime as dt
import json
import os
from dataclasses import dataclass
from typing import Callable

from jobforge.api.base import RequestContext, handler
from jobforge.api.roles import require_role
from jobforge.core import jobs
from jobforge.core.errors import ServiceError, validation_error

UTC = dt.timezone.utc
STATUSES = {"QUEUED": "InProgress", "STARTING": "InProgress", "RUNNING": "InProgress", "STOPPING": "Stopping",
            "COMPLETED": "Completed", "FAILED": "Failed", "STOPPED": "Stopped", "TIMED_OUT": "Stopped"}
STATUS_FILTER = {"InProgress": ("QUEUED", "STARTING", "RUNNING"), "Stopping": ("STOPPING",),
                 "Completed": ("COMPLETED",), "Failed": ("FAILED",), "Stopped": ("STOPPED", "TIMED_OUT"),
                 "Deleting": (), "DeleteFailed": ()}
SECONDARY = {"TIMED_OUT": "MaxRuntimeExceeded", "STOPPED": "Stopped", "FAILED": "Failed",
             "COMPLETED": "Completed", "STOPPING": "Stopping"}
# Internal progress names that are not SageMaker secondary statuses.
SECONDARY_ALIASES = {"TimedOut": "MaxRuntimeExceeded", "Restarting": "Restarting", "Starting": "Starting"}


@dataclass(frozen=True)
class Category:
    workload: str
    schemas: dict[str, dict]  # JobConfigSchemaVersion → JSON Schema
    # (document, request) → (spec, resources, max runtime seconds or None); raises ServiceError
    build: Callable[[dict, dict], tuple[dict, dict, float | None]]


CATEGORIES: dict[str, Category] = {}


def register_category(name: str, category: Category) -> None:
    CATEGORIES[name] = category


def family(category: str) -> jobs.Family:
    name = f"sagemaker-job/{category}"
    if name not in jobs.FAMILIES:
        jobs.register_family(jobs.Family(
            name=name, service="sagemaker",
            arn=lambda region, account, job_name, _id: f"arn:aws:sagemaker:{region}:{account}:job/{category}/{job_name}",
            statuses=STATUSES, conflict_code="ResourceInUse", not_found_code="ResourceNotFound",
            resource_label=f"{category} job"))
    return jobs.FAMILIES[name]


def _category(name: str) -> Category:
    found = CATEGORIES.get(name)
    if found is None:
        raise validation_error(f"JobCategory {name} is not available on this server: no workload is installed "
                               f"for it. Available: {', '.join(sorted(CATEGORIES)) or 'none'}.")
    return found


def _time(epoch: float | None):
    return dt.datetime.fromtimestamp(epoch, UTC) if epoch else None


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
        entry = {"Status": status, "StartTime": _time(item["at"])}
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
    spec, resources, max_runtime = category.build(document, req)
    require_role(ctx, req["RoleArn"], "ResourceNotFound")
    job, _ = jobs.create(
        ctx.engine, account_id=ctx.account_id, region=ctx.region, family=family(req["JobCategory"]),
        name=req["JobName"], workload=category.workload, spec=dict(spec, JobConfigDocument=document),
        resources=resources, role_arn=req["RoleArn"], max_runtime=max_runtime,
        tags_={t["Key"]: t["Value"] for t in req.get("Tags", [])}, secondary_status="Pending")
    ctx.runtime.scheduler.wake()
    return {"JobArn": job.arn}


def _describe(ctx: RequestContext, job: jobs.Job) -> dict:
    document = dict(job.spec.get("JobConfigDocument", {}))
    if job.result.get("ServiceOutput"):
        document["ServiceOutput"] = job.result["ServiceOutput"]
    out = {
        "JobName": job.name, "JobArn": job.arn, "RoleArn": job.role_arn, "JobCategory": job.family.split("/", 1)[1],
        "JobConfigSchemaVersion": job.spec.get("JobConfigSchemaVersion"),
        "JobConfigDocument": json.dumps(document), "CreationTime": _time(job.created_at),
        "LastModifiedTime": _time(job.updated_at), "EndTime": _time(job.ended_at), "JobStatus": job.status,
        "SecondaryStatus": _secondary(job), "SecondaryStatusTransitions": _transitions(job),
        "Tags": [{"Key": k, "Value": v} for k, v in jobs.get_tags(ctx.engine, job.arn).items()],
    }
    if job.failure_reason:
        out["FailureReason"] = job.failure_reason[:1024]
    elif job.state == "TIMED_OUT":
        out["FailureReason"] = job.status_message or "MaxRuntimeInSeconds exceeded"
    return out


@handler("sagemaker", "DescribeJob")
def describe_job(ctx: RequestContext, req: dict) -> dict:
    return _describe(ctx, jobs.get(ctx.engine, ctx.account_id, family(req["JobCategory"]), req["JobName"]))


@handler("sagemaker", "ListJobs")
def list_jobs(ctx: RequestContext, req: dict) -> dict:
    epoch = lambda key: req[key].timestamp() if key in req else None  # noqa: E731
    page = jobs.list_jobs(
        ctx.engine, ctx.account_id, family(req["JobCategory"]), name_contains=req.get("NameContains"),
        states=STATUS_FILTER[req["StatusEquals"]] if "StatusEquals" in req else None,
        created_after=epoch("CreationTimeAfter"), created_before=epoch("CreationTimeBefore"),
        modified_after=epoch("LastModifiedTimeAfter"), modified_before=epoch("LastModifiedTimeBefore"),
        sort_by=req.get("SortBy", "CreationTime"), ascending=req.get("SortOrder") == "Ascending",
        limit=req.get("MaxResults", 100), token=req.get("NextToken"), bad_token=validation_error)
    summaries = [{
        "JobName": j.name, "JobArn": j.arn, "JobCategory": req["JobCategory"], "JobStatus": j.status,
        "JobSecondaryStatus": _secondary(j), "CreationTime": _time(j.created_at),
        "LastModifiedTime": _time(j.updated_at), "EndTime": _time(j.ended_at),
    } for j in page.rows]
    out = {"JobSummaries": summaries}
    if page.next_token:
        out["NextToken"] = page.next_token
    return out


@handler("sagemaker", "StopJob")
def stop_job(ctx: RequestContext, req: dict) -> dict:
    job = jobs.get(ctx.engine, ctx.account_id, family(req["JobCategory"]), req["JobName"])
    jobs.request_stop(ctx.engine, job)
    ctx.runtime.scheduler.wake()
    return {}


@handler("sagemaker", "DeleteJob")
def delete_job(ctx: RequestContext, req: dict) -> dict:
    job = jobs.get(ctx.engine, ctx.account_id, family(req["JobCategory"]), req["JobName"])
    jobs.delete(ctx.engine, job)
    return {}


@handler("sagemaker", "ListJobSchemaVersions")
def list_job_schema_versions(ctx: RequestContext, req: dict) -> dict:
    category = CATEGORIES.get(req["JobCategory"])
    if category is None:
        raise ServiceError("ResourceNotFound", f"No schemas are published for JobCategory {req['JobCategory']}.")
    return {"JobConfigSchemas": [{"JobConfigSchemaVersion": v} for v in sorted(category.schemas)]}


@handler("sagemaker", "DescribeJobSchemaVersion")
def describe_job_schema_version(ctx: RequestContext, req: dict) -> dict:
    category = CATEGORIES.get(req["JobCategory"])
    if category is None:
        raise ServiceError("ResourceNotFound", f"No schemas are published for JobCategory {req['JobCategory']}.")
    version = req.get("JobConfigSchemaVersion") or max(category.schemas)
    if version not in category.schemas:
        raise ServiceError("ResourceNotFound", f"Schema version {version} of {req['JobCategory']} does not exist.")
    return {"JobCategory": req["JobCategory"], "JobConfigSchemaVersion": version,
            "JobConfigSchema": json.dumps(category.schemas[version])}


def _engine_test_category() -> None:
    """Bind a category to the engine's self-test workload when the server is
    started with JOBFORGE_ENGINE_TEST_CATEGORY (used by the engine's own tests)."""
    name = os.environ.get("JOBFORGE_ENGINE_TEST_CATEGORY")
    if not name:
        return
    schema = {"type": "object", "properties": {
        "Steps": {"type": "integer"}, "SleepSeconds": {"type": "number"}, "FailAtStep": {"type": "integer"},
        "StoppingCondition": {"type": "object"}}}

    def build(document: dict, req: dict):
        spec = {"steps": document.get("Steps", 5), "sleep": document.get("SleepSeconds", 0.1),
                "fail_at": document.get("FailAtStep"), "JobConfigSchemaVersion": req["JobConfigSchemaVersion"]}
        runtime = document.get("StoppingCondition", {}).get("MaxRuntimeInSeconds")
        return spec, {"cpus": 1, "memory_mb": 256, "gpus": document.get("Gpus", 0)}, runtime

    register_category(name, Category("testing", {"1.0.0": schema}, build))


_engine_test_category()
