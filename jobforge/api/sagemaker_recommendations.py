"""SageMaker inference recommendation jobs: Create, Describe, List and Stop InferenceRecommendationsJob, and
ListInferenceRecommendationsJobSteps.

A job is of the ``sagemaker-recommendation`` kind, run by ``jobforge.workloads.recommend.job``: each test (an
instance type and a point of its environment grid) deploys the model on that instance type through the
endpoint host, drives it with the load generator and removes it; the job ranks what the tests measured. Create
checks what the request alone decides and plans the tests, so that each is a BENCHMARK step from the start;
an instance type this host cannot realise is planned as a step that fails with the reason, never estimated.

jobforge's addition, labelled as such: the tag ``jobforge:OpenLoopRequestsPerSecondPerUser`` turns the users of
the traffic pattern into open-loop arrivals at that many requests a second per user, timed from when each was
due (no coordinated omission).
"""

from __future__ import annotations

from urllib.parse import urlparse

import sqlalchemy as sa

from jobforge.api import recommendation_deployments
from jobforge.api.base import RequestContext, handler
from jobforge.api.roles import require_role
from jobforge.core import hosting, instance_types, jobs, kinds, paging, sagemaker_tags
from jobforge.core.errors import ServiceError, validation_error
from jobforge.core.kinds import JobErrors, JobKind, LogGroup, Workload
from jobforge.core.store import jobs_table
from jobforge.core.timestamps import from_epoch
from jobforge.execution.endpoint_host import DeployFailed
from jobforge.workloads.recommend import candidates, plan, traffic
from jobforge.workloads.serving import frameworks

STATUSES = {"QUEUED": "PENDING", "STARTING": "PENDING", "RUNNING": "IN_PROGRESS", "STOPPING": "STOPPING",
            "COMPLETED": "COMPLETED", "FAILED": "FAILED", "STOPPED": "STOPPED", "TIMED_OUT": "FAILED"}
OPEN_LOOP_TAG = "jobforge:OpenLoopRequestsPerSecondPerUser"
TEARDOWN_SECONDS = 300  # beyond JobDurationInSeconds, for removing the last endpoints before the job is ended
GENERATOR_MEMORY_MB = 512
PERCENTILES = ("P95", "P99")


def _refuse(req: dict) -> None:
    """What jobforge does not do, each refused with why."""
    config = req["InputConfig"]
    container = config.get("ContainerConfig", {})
    refused = [
        ("ModelPackageVersionArn" in config, "InputConfig.ModelPackageVersionArn is not supported by jobforge: it "
         "keeps no model packages. Give InputConfig.ModelName, a model made by CreateModel."),
        ("VpcConfig" in config, "InputConfig.VpcConfig is not supported by jobforge: its endpoints run on the "
         "server's host."),
        ("VolumeKmsKeyId" in config or "KmsKeyId" in req.get("OutputConfig", {}),
         "KMS keys are not supported by jobforge: it has no KMS to encrypt volumes or outputs with."),
        ("CompiledOutputConfig" in req.get("OutputConfig", {}) or "DataInputConfig" in container,
         "Compiling the model in a recommendation job (OutputConfig.CompiledOutputConfig, "
         "ContainerConfig.DataInputConfig) is not supported by jobforge: run CreateCompilationJob and recommend "
         "for a model made from its artifact."),
        (container.get("SupportedEndpointType") == "Serverless"
         or any("ServerlessConfig" in c for c in config.get("EndpointConfigurations", [])),
         "Serverless endpoints are not supported by jobforge: recommend for real-time instance types."),
        (any("InferenceSpecificationName" in c for c in config.get("EndpointConfigurations", [])),
         "EndpointConfigurations[].InferenceSpecificationName names an inference specification of a model "
         "package; jobforge keeps no model packages."),
    ]
    for refuse, message in refused:
        if refuse:
            raise validation_error(message)


def _check_traffic(req: dict, job_seconds: int) -> list[traffic.Segment] | None:
    pattern = req["InputConfig"].get("TrafficPattern")
    if req["JobType"] == "Default":
        if pattern is not None:
            raise validation_error("TrafficPattern is for Advanced jobs (load tests); a Default job ramps its own "
                                   "traffic.")
        return None
    if pattern is None:
        raise validation_error("An Advanced job (load test) needs InputConfig.TrafficPattern.")
    kind = pattern.get("TrafficType", "PHASES")
    if kind == "PHASES":
        if "Stairs" in pattern or not pattern.get("Phases"):
            raise validation_error("TrafficType PHASES needs TrafficPattern.Phases (and no Stairs).")
        for phase in pattern["Phases"]:
            if "InitialNumberOfUsers" not in phase or "DurationInSeconds" not in phase:
                raise validation_error("Each phase needs InitialNumberOfUsers and DurationInSeconds.")
    else:
        stairs = pattern.get("Stairs")
        if "Phases" in pattern or not stairs or any(k not in stairs for k in
                                                    ("DurationInSeconds", "NumberOfSteps", "UsersPerStep")):
            raise validation_error("TrafficType STAIRS needs TrafficPattern.Stairs with DurationInSeconds, "
                                   "NumberOfSteps and UsersPerStep (and no Phases).")
    segments = traffic.segments(pattern)
    seconds = traffic.total_seconds(segments)
    if seconds > job_seconds:
        raise validation_error(f"The traffic pattern lasts {seconds:g} seconds, more than the job's "
                               f"JobDurationInSeconds ({job_seconds}).")
    return segments


def _check_stopping(conditions: dict) -> None:
    for threshold in conditions.get("ModelLatencyThresholds", []):
        if threshold.get("Percentile") not in PERCENTILES or threshold.get("ValueInMilliseconds", 0) < 1:
            raise validation_error("ModelLatencyThresholds needs a Percentile of P95 or P99 and a "
                                   "ValueInMilliseconds of at least 1.")
    if conditions.get("MaxInvocations", 1) < 1:
        raise validation_error("StoppingConditions.MaxInvocations must be at least 1.")


def _payload(container: dict) -> dict:
    payload = container.get("PayloadConfig", {})
    url, types = payload.get("SamplePayloadUrl"), payload.get("SupportedContentTypes")
    if not url or not types:
        raise validation_error("ContainerConfig.PayloadConfig needs SamplePayloadUrl (a .tar.gz archive of "
                               "request bodies) and SupportedContentTypes (what they are sent as).")
    parsed = urlparse(url)
    if parsed.scheme != "s3" or not parsed.netloc:
        raise validation_error(f"SamplePayloadUrl must be an s3:// URI on this server: {url}")
    unknown = [t for t in types if "/" not in t]
    if unknown:
        raise validation_error(f"SupportedContentTypes must be MIME types: {', '.join(unknown)}")
    return {"url": url, "content_types": types}


def _model(ctx: RequestContext, name: str) -> hosting.Record:
    record = hosting.model(ctx.engine, ctx.account_id, ctx.region, name)
    if record is None:
        raise hosting.not_found("model", hosting.arn(ctx.region, ctx.account_id, "model", name))
    return record


def _model_bytes(ctx: RequestContext, record: hosting.Record) -> int:
    url = record.spec["Container"].get("ModelDataUrl")
    if not url:
        return 0
    parsed = urlparse(url)
    try:
        return ctx.runtime.object_store.head(ctx.account_id, parsed.netloc, parsed.path.lstrip("/")).size
    except ServiceError:
        return 0  # a model whose data is missing fails when its endpoint is deployed, with the reason


def _configurations(ctx: RequestContext, req: dict, record: hosting.Record) -> list[dict]:
    config = req["InputConfig"]
    if config.get("EndpointConfigurations"):
        return config["EndpointConfigurations"]
    if req["JobType"] == "Advanced":
        return []
    named = config.get("ContainerConfig", {}).get("SupportedInstanceTypes")
    if named:
        unknown = [name for name in named if instance_types.find(name) is None]
        if unknown:
            raise validation_error(f"SupportedInstanceTypes names instance types this server's catalog does not "
                                   f"hold: {', '.join(unknown)}")
        return [{"InstanceType": name} for name in named]
    text_generation = frameworks.image_framework(record.spec["Container"].get("Image")) == "huggingface"
    return [{"InstanceType": name} for name in candidates.default_candidates(
        instance_types.catalog(), _model_bytes(ctx, record), text_generation)]


def _existing_endpoint(ctx: RequestContext, config: dict) -> str | None:
    named = [e["EndpointName"] for e in config.get("Endpoints", []) if e.get("EndpointName")]
    if not named:
        return None
    endpoint = hosting.endpoint(ctx.engine, ctx.account_id, ctx.region, named[0])
    if endpoint is None:
        raise hosting.not_found("endpoint", hosting.arn(ctx.region, ctx.account_id, "endpoint", named[0]))
    return endpoint.name


def _open_loop(tags: list[dict]) -> float | None:
    value = next((t["Value"] for t in tags if t["Key"] == OPEN_LOOP_TAG), None)
    if value is None:
        return None
    try:
        rate = float(value)
    except ValueError:
        rate = 0.0
    if not rate > 0:
        raise validation_error(f"The tag {OPEN_LOOP_TAG} (jobforge's open-loop mode) must be a positive number of "
                               f"requests a second per user, not {value!r}.")
    return rate


def _skip_reason(ctx: RequestContext, instance_type: str) -> str | None:
    try:
        ctx.runtime.endpoints.placement(instance_type)
    except DeployFailed as err:
        return str(err)
    return None


def _plan(ctx: RequestContext, req: dict) -> dict:
    """The job's spec from the request, or a ValidationException that says what is wrong."""
    _refuse(req)
    config = req["InputConfig"]
    if "ModelName" not in config:
        raise validation_error("InputConfig needs ModelName: the model to recommend instances for.")
    job_seconds = plan.job_seconds(req)
    if job_seconds > plan.MAX_JOB_SECONDS:
        raise validation_error(f"JobDurationInSeconds must be at most {plan.MAX_JOB_SECONDS}.")
    segments = _check_traffic(req, job_seconds)
    _check_stopping(req.get("StoppingConditions", {}))
    payload = _payload(config.get("ContainerConfig", {}))
    record = _model(ctx, config["ModelName"])
    endpoint = _existing_endpoint(ctx, config)
    configurations = _configurations(ctx, req, record)
    if not configurations and endpoint is None:
        raise validation_error("An Advanced job needs InputConfig.EndpointConfigurations (instance types to test) "
                               "or InputConfig.Endpoints (an endpoint to benchmark).")
    for configuration in configurations:
        names = [p["Name"] for p in configuration.get("EnvironmentParameterRanges", {})
                 .get("CategoricalParameterRanges", [])]
        if len(set(names)) != len(names):
            raise validation_error("EnvironmentParameterRanges names an environment variable twice.")
    limit = config.get("ResourceLimit", {})
    tests, left_out = plan.tests(configurations, limit.get("MaxNumberOfTests"))
    for test in tests:
        found = instance_types.find(test["InstanceType"])
        test["PricePerHour"] = found.price_per_hour if found is not None else None
        test["SkipReason"] = _skip_reason(ctx, test["InstanceType"])
    parallel = limit.get("MaxParallelOfTests", 1)
    if segments is None:
        segments = plan.default_ramp(job_seconds, max(1, len(tests)), parallel)
    return {
        "request": {key: req[key] for key in ("JobType", "InputConfig", "JobDescription", "StoppingConditions",
                                              "OutputConfig") if key in req},
        "model": {"ModelName": record.name, "Container": record.spec["Container"],
                  "ExecutionRoleArn": record.spec.get("ExecutionRoleArn")},
        "tests": tests, "left_out": left_out, "parallel": parallel, "job_seconds": job_seconds,
        "segments": [s.to_json() for s in segments], "payload": payload, "endpoint": endpoint,
        "open_loop_rate_per_user": _open_loop(req.get("Tags", [])),
    }


@handler("sagemaker", "CreateInferenceRecommendationsJob", blocking=True)
def create_inference_recommendations_job(ctx: RequestContext, req: dict) -> dict:
    require_role(ctx, req["RoleArn"], "ValidationException")
    spec = _plan(ctx, req)
    job, _ = jobs.create(
        ctx.engine, account_id=ctx.account_id, region=ctx.region, kind=KIND, name=req["JobName"], spec=spec,
        resources={"cpus": 1, "memory_mb": GENERATOR_MEMORY_MB, "gpus": 0}, role_arn=req["RoleArn"],
        max_runtime=spec["job_seconds"] + TEARDOWN_SECONDS,
        tags_=sagemaker_tags.requested(req.get("Tags")))
    ctx.runtime.scheduler.wake()
    return {"JobArn": job.arn}


def _failure_reason(job: jobs.Job) -> str | None:
    if job.state == "TIMED_OUT":
        return (f"The job did not end within JobDurationInSeconds ({job.spec['job_seconds']} s) and "
                f"{TEARDOWN_SECONDS} s more for removing its endpoints.")
    if job.state == "FAILED":
        return (job.failure_reason or "The job failed.")[:1024]
    return None


def _shown(item: dict) -> dict:
    """A stored benchmark or recommendation as the shapes hold it: epoch seconds as timestamps, a utilisation
    that was not measured as NaN (AWS: "NaN indicates that the value is not available")."""
    out = {key: from_epoch(value) if key.startswith("Invocation") else value for key, value in item.items()}
    if "Metrics" in out:
        out["Metrics"] = {key: float("nan") if value is None else value for key, value in out["Metrics"].items()}
    return out


def steps(job: jobs.Job) -> list[dict]:
    """Every planned test as a BENCHMARK step: its status and what it measured so far."""
    reported = job.result.get("steps", {})
    out = []
    for index, test in enumerate(job.spec["tests"]):
        step = reported.get(str(index))
        if step is None:
            status = "FAILED" if test["SkipReason"] else "STOPPED" if job.terminal else "PENDING"
            benchmark = {"EndpointConfiguration": {"EndpointName": "", "VariantName": "AllTraffic",
                                                   "InstanceType": test["InstanceType"], "InitialInstanceCount": 1},
                         "ModelConfiguration": _model_configuration(test)}
            if test["SkipReason"]:
                benchmark["FailureReason"] = f"Skipped: {test['SkipReason']}"
            elif job.terminal:
                benchmark["FailureReason"] = "Not run: the job ended first."
            step = {"Status": status, "InferenceBenchmark": benchmark}
        out.append({"StepType": "BENCHMARK", "JobName": job.name, "Status": step["Status"],
                    "InferenceBenchmark": _shown(step["InferenceBenchmark"])})
    return out


def _model_configuration(test: dict) -> dict:
    return {"EnvironmentParameters": test["EnvironmentParameters"]} if test["EnvironmentParameters"] else {}


def describe(engine: sa.Engine, job: jobs.Job) -> dict:
    request = job.spec["request"]
    out = {"JobName": job.name, "JobDescription": request.get("JobDescription"), "JobType": request["JobType"],
           "JobArn": job.arn, "RoleArn": job.role_arn, "Status": job.status,
           "CreationTime": from_epoch(job.created_at), "LastModifiedTime": from_epoch(job.updated_at),
           "CompletionTime": from_epoch(job.ended_at), "FailureReason": _failure_reason(job),
           "InputConfig": request["InputConfig"], "StoppingConditions": request.get("StoppingConditions")}
    recommendations = [_shown(r) for r in job.result.get("recommendations", [])]
    if recommendations:
        out["InferenceRecommendations"] = recommendations
    if job.result.get("endpoint_performances"):
        out["EndpointPerformances"] = job.result["endpoint_performances"]
    return out


KIND = kinds.register(JobKind(
    name="sagemaker-recommendation", label="Inference recommendations job", statuses=STATUSES,
    errors=JobErrors(not_found="ResourceNotFound", conflict="ResourceInUse", not_stoppable="ValidationException",
                     in_use="ValidationException"),
    workload=Workload("jobforge.workloads.recommend.job", resumable=False),
    arn=lambda region, account, name, _id: f"arn:aws:sagemaker:{region}:{account}:inference-recommendations-job/"
                                           f"{name.lower()}",
    log_group=LogGroup(recommendation_deployments.LOG_GROUP, lambda job: f"{job.name}/{job.id}"),
    on_terminal=recommendation_deployments.close_job, describe=describe))
sagemaker_tags.register("inference-recommendations-job", jobs_table, jobs_table.c.family == KIND.name)


def _job(ctx: RequestContext, req: dict) -> jobs.Job:
    return jobs.get(ctx.engine, ctx.account_id, KIND, req["JobName"], region=ctx.region)


@handler("sagemaker", "DescribeInferenceRecommendationsJob")
def describe_inference_recommendations_job(ctx: RequestContext, req: dict) -> dict:
    return describe(ctx.engine, _job(ctx, req))


def _summary(job: jobs.Job) -> dict:
    request = job.spec["request"]
    return {"JobName": job.name, "JobDescription": request.get("JobDescription", ""), "JobType": request["JobType"],
            "JobArn": job.arn, "Status": job.status, "CreationTime": from_epoch(job.created_at),
            "CompletionTime": from_epoch(job.ended_at), "RoleArn": job.role_arn,
            "LastModifiedTime": from_epoch(job.updated_at), "FailureReason": _failure_reason(job),
            "ModelName": request["InputConfig"].get("ModelName"), "SamplePayloadUrl": job.spec["payload"]["url"]}


@handler("sagemaker", "ListInferenceRecommendationsJobs")
def list_inference_recommendations_jobs(ctx: RequestContext, req: dict) -> dict:
    epoch = lambda key: req[key].timestamp() if key in req else None  # noqa: E731
    extra = []
    if "ModelNameEquals" in req:
        extra.append(jobs_table.c.spec["model"]["ModelName"].as_string() == req["ModelNameEquals"])
    if "ModelPackageVersionArnEquals" in req:
        extra.append(sa.false())  # no job names a model package: jobforge keeps none
    page = jobs.list_jobs(
        ctx.engine, ctx.account_id, KIND, region=ctx.region, name_contains=req.get("NameContains"),
        states=KIND.states(req["StatusEquals"]) if "StatusEquals" in req else None,
        created_after=epoch("CreationTimeAfter"), created_before=epoch("CreationTimeBefore"),
        modified_after=epoch("LastModifiedTimeAfter"), modified_before=epoch("LastModifiedTimeBefore"), extra=extra,
        sort_by=req.get("SortBy", "CreationTime"), ascending=req.get("SortOrder") == "Ascending",
        limit=req.get("MaxResults", 100), token=req.get("NextToken"), bad_token=validation_error)
    out = {"InferenceRecommendationsJobs": [_summary(job) for job in page.rows]}
    if page.next_token:
        out["NextToken"] = page.next_token
    return out


@handler("sagemaker", "StopInferenceRecommendationsJob")
def stop_inference_recommendations_job(ctx: RequestContext, req: dict) -> dict:
    jobs.request_stop(ctx.engine, _job(ctx, req))
    ctx.runtime.scheduler.wake()
    return {}


@handler("sagemaker", "ListInferenceRecommendationsJobSteps")
def list_inference_recommendations_job_steps(ctx: RequestContext, req: dict) -> dict:
    chosen = [(index, step) for index, step in enumerate(steps(_job(ctx, req)))
              if req.get("Status") in (None, step["Status"]) and req.get("StepType") in (None, step["StepType"])]
    page, marker = paging.marker_page(chosen, lambda item: f"{item[0]:06d}", req.get("NextToken"),
                                      req.get("MaxResults", 100),
                                      lambda: validation_error("The NextToken is not valid."))
    out = {"Steps": [step for _, step in page]}
    if marker:
        out["NextToken"] = marker
    return out
