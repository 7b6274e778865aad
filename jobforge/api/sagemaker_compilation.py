"""SageMaker compilation jobs: CreateCompilationJob, Describe, List, Stop and Delete.

A compilation job is a job of the ``sagemaker-compilation`` kind run by the workload
``jobforge.workloads.compile.job``: it converts the model in the input tarball, builds an artifact per
applicable backend for the target, verifies each against the original, times them where this host can run
the target, and keeps the fastest accurate one. Create checks synchronously what can be judged from the
request (the cross-field rules, the target, the framework, DataInputConfig and CompilerOptions).
"""

from __future__ import annotations

import posixpath
from urllib.parse import urlparse

import sqlalchemy as sa

from jobforge.api.base import RequestContext, handler
from jobforge.api.roles import require_role
from jobforge.core import jobs, kinds, model_packages, sagemaker_tags
from jobforge.core.errors import validation_error
from jobforge.core.kinds import JobErrors, JobKind, LogGroup, Workload
from jobforge.core.store import jobs_table
from jobforge.core.timestamps import from_epoch
from jobforge.workloads.compile import frameworks, options, shapes, targets

STATUSES = {"QUEUED": "STARTING", "STARTING": "STARTING", "RUNNING": "INPROGRESS", "STOPPING": "STOPPING",
            "COMPLETED": "COMPLETED", "FAILED": "FAILED", "STOPPED": "STOPPED", "TIMED_OUT": "FAILED"}
BACKEND_PRECISIONS = {"onnxruntime": ("fp32", "fp16", "int8"), "openvino": ("fp32", "fp16", "bf16"),
                      "aotinductor": ("fp32",)}
MEMORY_MB = 4096


def log_stream(job: jobs.Job) -> str:
    return f"{job.name}/{job.id}"


def output_uri(input_uri: str, output_location: str, target_name: str) -> str:
    """``<S3OutputLocation>/<input-stem>-<target>.tar.gz``, as Neo names its artifacts."""
    base = posixpath.basename(urlparse(input_uri).path.rstrip("/")) or "model"
    for suffix in (".tar.gz", ".tgz", ".gz", ".tar"):
        if base.endswith(suffix):
            base = base[:-len(suffix)]
            break
    return f"{output_location.rstrip('/')}/{base or 'model'}-{target_name}.tar.gz"


def _check_s3(uri: str, member: str) -> None:
    parsed = urlparse(uri)
    if parsed.scheme != "s3" or not parsed.netloc:
        raise validation_error(f"{member} must be an s3:// URI on this server (https:// object URLs are not "
                               f"supported): {uri}")


def _package_input(ctx: RequestContext, arn: str) -> dict:
    """The InputConfig a versioned model package gives: its first container's model data, framework and input
    shapes."""
    package = model_packages.get_package(ctx.engine, ctx.account_id, ctx.region, arn)
    if package.version is None:
        raise validation_error(f"ModelPackageVersionArn must name a versioned model package; {arn} is unversioned.")
    container = package.containers[0] if package.containers else {}
    if "Framework" not in container:
        raise validation_error(f"Model package {arn} names no Framework in its InferenceSpecification's first "
                               "container, which compiling it needs.")
    config = {"S3Uri": model_packages.model_data(package), "Framework": container["Framework"]}
    if "FrameworkVersion" in container:
        config["FrameworkVersion"] = container["FrameworkVersion"]
    if "ModelInput" in container:
        config["DataInputConfig"] = container["ModelInput"]["DataInputConfig"]
    return config


def _plan(ctx: RequestContext, req: dict) -> dict:
    """The job's spec from the request, or a ValidationException that says what is wrong."""
    if ("InputConfig" in req) == ("ModelPackageVersionArn" in req):
        raise validation_error("Provide exactly one of InputConfig and ModelPackageVersionArn.")
    if "ModelPackageVersionArn" in req:
        req = dict(req, InputConfig=_package_input(ctx, req["ModelPackageVersionArn"]))
    if "VpcConfig" in req:
        raise validation_error("VpcConfig is not supported by jobforge: compilation jobs run on the server's host "
                               "and reach only its object store.")
    input_config, output_config = req["InputConfig"], req["OutputConfig"]
    if "KmsKeyId" in output_config:
        raise validation_error("OutputConfig.KmsKeyId is not supported by jobforge: it has no KMS to encrypt "
                               "the compiled artifact with.")
    _check_s3(input_config["S3Uri"], "InputConfig.S3Uri")
    _check_s3(output_config["S3OutputLocation"], "OutputConfig.S3OutputLocation")
    try:
        target = targets.resolve(output_config)
        chosen = options.parse(output_config.get("CompilerOptions"))
        frameworks.check(input_config["Framework"], input_config.get("FrameworkVersion"), chosen.precision,
                         chosen.backend)
        inputs = shapes.parse(input_config["DataInputConfig"]) if "DataInputConfig" in input_config else None
    except ValueError as err:  # TargetRefused, OptionsError, ShapeError and the framework check say why
        raise validation_error(str(err)) from None
    if chosen.backend in BACKEND_PRECISIONS and chosen.precision not in BACKEND_PRECISIONS[chosen.backend]:
        raise validation_error(f"The {chosen.backend} backend does not compile {chosen.precision}; it compiles "
                               f"{', '.join(BACKEND_PRECISIONS[chosen.backend])}.")
    return {
        "request": {key: req[key] for key in ("InputConfig", "OutputConfig", "StoppingCondition",
                                              "ModelPackageVersionArn") if key in req},
        "target": target.to_json(), "options": chosen.to_json(),
        "inputs": [spec.to_json() for spec in inputs] if inputs is not None else None,
        "output_uri": output_uri(input_config["S3Uri"], output_config["S3OutputLocation"], target.name),
    }


def _resources(ctx: RequestContext, target: dict) -> dict:
    """One CPU thread (latency is measured single-threaded, as a batch-1 server runs), and a GPU for a
    GPU target where the executor's nodes have one, so that the artifact can be verified on it."""
    node = ctx.runtime.scheduler.executor.capacity()
    gpu = target["accelerator"] == "NVIDIA" and node.gpus > 0
    return {"cpus": 1, "memory_mb": min(MEMORY_MB, node.memory_mb), "gpus": 1 if gpu else 0}


@handler("sagemaker", "CreateCompilationJob", blocking=True)
def create_compilation_job(ctx: RequestContext, req: dict) -> dict:
    spec = _plan(ctx, req)
    require_role(ctx, req["RoleArn"], "ValidationException")
    job, _ = jobs.create(
        ctx.engine, account_id=ctx.account_id, region=ctx.region, kind=KIND, name=req["CompilationJobName"],
        spec=spec, resources=_resources(ctx, spec["target"]), role_arn=req["RoleArn"],
        max_runtime=req["StoppingCondition"].get("MaxRuntimeInSeconds"),
        tags_=sagemaker_tags.requested(req.get("Tags")), secondary_status="Starting")
    ctx.runtime.scheduler.wake()
    return {"CompilationJobArn": job.arn}


def status(job: jobs.Job) -> str:
    if job.state == "STOPPING" and job.stop_reason == "timeout":
        return "INPROGRESS"  # running out of time ends in FAILED, not in a stop the user asked for
    return job.status


def _failure_reason(job: jobs.Job) -> str:
    if job.state == "TIMED_OUT":
        return f"TimeOut: the compilation job did not complete within MaxRuntimeInSeconds ({job.max_runtime:g} s)."
    if job.state == "FAILED":
        return (job.failure_reason or "The compilation failed.")[:1024]
    return ""


def describe(engine: sa.Engine, job: jobs.Job) -> dict:
    spec, result = job.spec, job.result
    out = {
        "CompilationJobName": job.name, "CompilationJobArn": job.arn, "CompilationJobStatus": status(job),
        "CompilationStartTime": from_epoch(job.started_at), "CompilationEndTime": from_epoch(job.ended_at),
        "StoppingCondition": spec["request"]["StoppingCondition"], "CreationTime": from_epoch(job.created_at),
        "LastModifiedTime": from_epoch(job.updated_at), "FailureReason": _failure_reason(job),
        "ModelArtifacts": {"S3ModelArtifacts": spec["output_uri"]}, "RoleArn": job.role_arn,
        "InputConfig": spec["request"]["InputConfig"], "OutputConfig": spec["request"]["OutputConfig"],
    }
    if "ModelPackageVersionArn" in spec["request"]:
        out["ModelPackageVersionArn"] = spec["request"]["ModelPackageVersionArn"]
    if job.state == "COMPLETED":
        out["ModelDigests"] = {"ArtifactDigest": result["ArtifactDigest"]}
        out["InferenceImage"] = result["InferenceImage"]
    if result.get("DerivedDataInputConfig"):
        out["DerivedInformation"] = {"DerivedDataInputConfig": result["DerivedDataInputConfig"]}
    return out


KIND = kinds.register(JobKind(
    name="sagemaker-compilation", label="Compilation job", statuses=STATUSES,
    errors=JobErrors(not_found="ResourceNotFound", conflict="ResourceInUse", not_stoppable="ValidationException",
                     in_use="ValidationException"),
    workload=Workload("jobforge.workloads.compile.job", resumable=False),
    arn=lambda region, account, name, _id: f"arn:aws:sagemaker:{region}:{account}:compilation-job/{name}",
    log_group=LogGroup("/aws/sagemaker/CompilationJobs", log_stream), describe=describe))
sagemaker_tags.register("compilation-job", jobs_table, jobs_table.c.family == KIND.name)


def _job(ctx: RequestContext, req: dict) -> jobs.Job:
    return jobs.get(ctx.engine, ctx.account_id, KIND, req["CompilationJobName"], region=ctx.region)


@handler("sagemaker", "DescribeCompilationJob")
def describe_compilation_job(ctx: RequestContext, req: dict) -> dict:
    return describe(ctx.engine, _job(ctx, req))


def _summary(job: jobs.Job) -> dict:
    output = job.spec["request"]["OutputConfig"]
    out = {"CompilationJobName": job.name, "CompilationJobArn": job.arn, "CreationTime": from_epoch(job.created_at),
           "CompilationStartTime": from_epoch(job.started_at), "CompilationEndTime": from_epoch(job.ended_at),
           "LastModifiedTime": from_epoch(job.updated_at), "CompilationJobStatus": status(job)}
    if "TargetDevice" in output:
        out["CompilationTargetDevice"] = output["TargetDevice"]
    else:
        platform = output["TargetPlatform"]
        out.update(CompilationTargetPlatformOs=platform["Os"], CompilationTargetPlatformArch=platform["Arch"])
        if "Accelerator" in platform:
            out["CompilationTargetPlatformAccelerator"] = platform["Accelerator"]
    return out


@handler("sagemaker", "ListCompilationJobs")
def list_compilation_jobs(ctx: RequestContext, req: dict) -> dict:
    epoch = lambda key: req[key].timestamp() if key in req else None  # noqa: E731
    page = jobs.list_jobs(
        ctx.engine, ctx.account_id, KIND, region=ctx.region, name_contains=req.get("NameContains"),
        states=KIND.states(req["StatusEquals"]) if "StatusEquals" in req else None,
        created_after=epoch("CreationTimeAfter"), created_before=epoch("CreationTimeBefore"),
        modified_after=epoch("LastModifiedTimeAfter"), modified_before=epoch("LastModifiedTimeBefore"),
        sort_by=req.get("SortBy", "CreationTime"), ascending=req.get("SortOrder") == "Ascending",
        limit=req.get("MaxResults", 100), token=req.get("NextToken"), bad_token=validation_error)
    out = {"CompilationJobSummaries": [_summary(job) for job in page.rows]}
    if page.next_token:
        out["NextToken"] = page.next_token
    return out


@handler("sagemaker", "StopCompilationJob")
def stop_compilation_job(ctx: RequestContext, req: dict) -> dict:
    jobs.request_stop(ctx.engine, _job(ctx, req))
    ctx.runtime.scheduler.wake()
    return {}


@handler("sagemaker", "DeleteCompilationJob")
def delete_compilation_job(ctx: RequestContext, req: dict) -> dict:
    jobs.delete(ctx.engine, _job(ctx, req))
    return {}
