"""CreateModel, DescribeModel, ListModels, DeleteModel.

A model is one container: ``PrimaryContainer``, or ``Containers`` holding one (an inference pipeline of
several is refused). Its image, when it names one, must be a SageMaker framework image jobforge's model
servers follow (``frameworks``); its data is a ``ModelDataUrl`` tarball or a ``ModelDataSource`` in S3 of the
caller's account, or those of the model package ``ModelPackageName`` names (its first container's).
"""

from __future__ import annotations

from jobforge.api.base import RequestContext, handler
from jobforge.api.roles import require_role
from jobforge.api.sagemaker_hosting.common import list_records
from jobforge.core import hosting, model_packages
from jobforge.core.errors import validation_error
from jobforge.core.timestamps import from_epoch
from jobforge.workloads.serving import frameworks

DESCRIBED = ("PrimaryContainer", "Containers", "InferenceExecutionConfig", "ExecutionRoleArn", "VpcConfig",
             "EnableNetworkIsolation")


def _from_package(ctx: RequestContext, container: dict) -> dict:
    """A container naming a model package: the package's first container (its image, model data and
    environment), with the request's Environment laid over the package's."""
    package = model_packages.get_package(ctx.engine, ctx.account_id, ctx.region, container["ModelPackageName"])
    model_packages.model_data(package)  # a package without model data is refused here
    packaged = dict(package.containers[0])
    environment = {**(packaged.get("Environment") or {}), **(container.get("Environment") or {})}
    return {**{key: packaged[key] for key in ("Image", "ModelDataUrl", "ModelDataSource") if key in packaged},
            "Environment": environment, "ModelPackageName": package.arn}


def _container(ctx: RequestContext, req: dict) -> dict:
    if ("PrimaryContainer" in req) == bool(req.get("Containers")):
        raise validation_error("Exactly one of PrimaryContainer and Containers must be given.")
    containers = req.get("Containers") or [req["PrimaryContainer"]]
    if len(containers) > 1:
        raise validation_error("jobforge serves one container per model: an inference pipeline of several "
                               "Containers is not supported.")
    container = containers[0]
    if container.get("ModelPackageName"):
        if container.get("ModelDataUrl") or container.get("ModelDataSource") or container.get("Image"):
            raise validation_error("A container with ModelPackageName takes its image and model data from the "
                                   "package: give neither Image nor ModelDataUrl nor ModelDataSource.")
        container = _from_package(ctx, container)
    if container.get("Mode") == "MultiModel":
        raise validation_error("Multi-model endpoints (Mode MultiModel) are not supported by jobforge.")
    if container.get("AdditionalModelDataSources"):
        raise validation_error("AdditionalModelDataSources are not supported by jobforge.")
    source = container.get("ModelDataSource", {}).get("S3DataSource")
    if container.get("ModelDataUrl") and source:
        raise validation_error("Give ModelDataUrl or ModelDataSource, not both.")
    if source is not None and source.get("S3DataType") == "S3Prefix" and source.get("CompressionType") == "Gzip":
        raise validation_error("An S3Prefix ModelDataSource must have CompressionType None.")
    if container.get("ModelDataUrl", "s3://").split("://")[0] != "s3":
        raise validation_error(f"ModelDataUrl {container['ModelDataUrl']} must be an s3:// URI.")
    try:
        frameworks.image_framework(container.get("Image"))
    except frameworks.Unservable as err:
        raise validation_error(str(err)) from None
    if (container.get("Environment") or {}).get("HF_MODEL_ID", "/opt/ml/model") != "/opt/ml/model":
        raise validation_error("HF_MODEL_ID naming a model on the Hugging Face Hub is not supported: jobforge "
                               "does not download models. Package the model in the ModelDataUrl tarball.")
    return container


def stored_model(record: hosting.Record) -> dict:
    """What a deployment keeps of a model: its container and role, and whether its network is isolated."""
    return {"ModelName": record.name, "ModelArn": record.arn, "Container": record.spec["Container"],
            "ExecutionRoleArn": record.spec.get("ExecutionRoleArn"),
            "EnableNetworkIsolation": bool(record.spec.get("EnableNetworkIsolation"))}


@handler("sagemaker", "CreateModel")
def create_model(ctx: RequestContext, req: dict) -> dict:
    container = _container(ctx, req)
    if req.get("ExecutionRoleArn"):
        require_role(ctx, req["ExecutionRoleArn"], "ValidationException", 400)
    spec = {key: req[key] for key in DESCRIBED if key in req}
    spec["Container"] = container
    record = hosting.create_model(ctx.engine, ctx.account_id, ctx.region, req["ModelName"], spec,
                                  req.get("Tags") or [])
    return {"ModelArn": record.arn}


def _model(ctx: RequestContext, name: str) -> hosting.Record:
    record = hosting.model(ctx.engine, ctx.account_id, ctx.region, name)
    if record is None:
        raise hosting.not_found("model", hosting.arn(ctx.region, ctx.account_id, "model", name))
    return record


@handler("sagemaker", "DescribeModel")
def describe_model(ctx: RequestContext, req: dict) -> dict:
    record = _model(ctx, req["ModelName"])
    out = {key: record.spec[key] for key in DESCRIBED if key in record.spec}
    return {"ModelName": record.name, "ModelArn": record.arn, "CreationTime": from_epoch(record.created_at), **out}


@handler("sagemaker", "ListModels")
def list_models(ctx: RequestContext, req: dict) -> dict:
    return list_records(ctx, req, "models", lambda row: {
        "ModelName": row.name, "ModelArn": row.arn, "CreationTime": from_epoch(row.created_at)}, "Models")


@handler("sagemaker", "DeleteModel")
def delete_model(ctx: RequestContext, req: dict) -> dict:
    hosting.delete_model(ctx.engine, _model(ctx, req["ModelName"]))
    return {}
