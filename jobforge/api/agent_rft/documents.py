"""From a validated JobConfigDocument to the job's spec: what the workload runs, checked as AWS checks it.

The schema has already passed (CreateJob validates it); here come the rules a schema cannot say (the
hyperparameters' ranges, the parts jobforge refuses) and, in ``admit``, those that need the server's
records: the base model in the catalog, the model package groups and the package a job starts from, the
MLflow App the job logs to.
"""

from __future__ import annotations

from jobforge.api.base import RequestContext
from jobforge.core import mlflow_apps, model_packages, models_catalog
from jobforge.core.errors import ServiceError, validation_error
from jobforge.workloads.agent_rft import hyperparameters

TRAINING = "AgentRFT"
EVALUATION = "AgentRFTEvaluation"


def _agent(document: dict) -> dict:
    config = document["AgentConfig"]
    if "BedrockAgentCoreConfig" in config:
        runtime = config["BedrockAgentCoreConfig"]
        return {"agent_runtime_arn": runtime["AgentRuntimeArn"], "qualifier": runtime.get("Qualifier")}
    return {"lambda_arn": config["CustomAgentLambdaConfig"]["LambdaArn"]}


def _channels(document: dict) -> dict[str, str]:
    channels = {}
    for channel in document["InputDataConfig"]:
        name = channel["ChannelName"]
        if name in channels:
            raise validation_error(f"InputDataConfig names channel {name} twice.")
        source = channel["DataSource"]
        if "DatasetSource" in source:
            raise validation_error(f"InputDataConfig channel {name}: DataSource.DatasetSource (hub datasets) is not "
                                   "supported by this server; give the data as DataSource.S3DataSource.")
        channels[name] = source["S3DataSource"]["S3Uri"]
    return channels


def _refuse_unsupported(document: dict) -> None:
    if "VpcConfig" in document:
        raise validation_error("VpcConfig is not supported by this server: jobs reach the agent and the data "
                               "through the server itself.")
    if "KmsKeyArn" in document["OutputDataConfig"]:
        raise validation_error("OutputDataConfig.KmsKeyArn is not supported by this server: outputs are stored "
                               "with the object store's own encryption.")


def _mlflow(config: dict | None) -> dict:
    """The job's MLflow run: the app, the experiment and the run names (None: the job's name)."""
    if config is None:
        return {}
    return {"mlflow": {"arn": config["MlflowResourceArn"], "experiment": config.get("MlflowExperimentName"),
                       "run": config.get("MlflowRunName")}}


def _hyperparameters(parse, given: dict) -> dict:
    try:
        return parse(given)
    except hyperparameters.HyperParameterError as err:
        raise validation_error(str(err)) from None


def _max_runtime(document: dict) -> float | None:
    return document.get("StoppingCondition", {}).get("MaxRuntimeInSeconds")


def build_training(document: dict, req: dict) -> tuple[dict, dict, float | None]:
    config = document["TrainingConfig"]
    _refuse_unsupported(document)
    packages = document["ModelPackageConfig"]
    intermediate = packages.get("IntermediateCheckpointModelPackageGroupArn")
    if intermediate is not None and intermediate == packages["OutputModelPackageGroupArn"]:
        raise validation_error("ModelPackageConfig.IntermediateCheckpointModelPackageGroupArn must differ from "
                               "OutputModelPackageGroupArn.")
    spec = {
        "category": TRAINING, "agent": _agent(document), "channels": _channels(document),
        "output_path": document["OutputDataConfig"]["S3OutputPath"],
        "base_model": {"arn": config["BaseModelArn"]},
        "hyperparameters": _hyperparameters(hyperparameters.training, config.get("HyperParameters", {})),
        "model_packages": packages, "JobConfigSchemaVersion": req["JobConfigSchemaVersion"],
        **_mlflow(config.get("MlflowConfig")),
    }
    return spec, {}, _max_runtime(document)


def build_evaluation(document: dict, req: dict) -> tuple[dict, dict, float | None]:
    config = document["EvaluationConfig"]
    _refuse_unsupported(document)
    spec = {
        "category": EVALUATION, "agent": _agent(document), "channels": _channels(document),
        "output_path": document["OutputDataConfig"]["S3OutputPath"],
        "base_model": {"arn": config["BaseModelArn"]},
        "hyperparameters": _hyperparameters(hyperparameters.evaluation, config.get("HyperParameters", {})),
        "model_packages": document.get("ModelPackageConfig", {}),
        "JobConfigSchemaVersion": req["JobConfigSchemaVersion"],
        **_mlflow(document["OutputDataConfig"].get("MlflowConfig")),
    }
    return spec, {}, _max_runtime(document)


def _input_package(ctx: RequestContext, arn: str, base_name: str) -> dict:
    """The model package a job starts from: its model's S3 URI, once it is known to come from the base model."""
    package = model_packages.find_package(ctx.engine, ctx.account_id, ctx.region, arn)
    if package is None:
        raise ServiceError("ResourceNotFound", f"ModelPackageConfig.InputModelPackageArn {arn} does not exist.")
    trained_from = next((c["BaseModel"].get("HubContentName") for c in package.containers if "BaseModel" in c), None)
    if trained_from and trained_from != base_name:
        raise validation_error(f"ModelPackageConfig.InputModelPackageArn {arn} holds a model trained from "
                               f"{trained_from}, not from the base model {base_name} the document names.")
    return {"arn": package.arn, "uri": model_packages.model_data(package)}


def _check_mlflow_app(ctx: RequestContext, arn: str) -> None:
    if mlflow_apps.arn_parts(arn) is None:
        raise validation_error(f"MlflowConfig.MlflowResourceArn {arn}: only MLflow Apps (arn:aws:sagemaker:"
                               "<region>:<account>:mlflow-app/<id>) are served here, not MLflow tracking servers.")
    if mlflow_apps.APPS.find(ctx.engine, ctx.account_id, ctx.region, arn) is None:
        raise ServiceError("ResourceNotFound", f"MlflowConfig.MlflowResourceArn {arn} does not exist: create the "
                           "app with CreateMlflowApp first (in this account and region).")


def admit(ctx: RequestContext, spec: dict, resources: dict) -> tuple[dict, dict]:
    """The base model resolved through the model catalog and the model packages through the registry; the job's
    share of the executor's nodes."""
    arn = spec["base_model"]["arn"]
    model = models_catalog.hub_model(ctx.engine, arn)
    if model is None:
        name = models_catalog.hub_model_name(arn) or arn
        raise ServiceError("ResourceNotFound", f"The base model {arn} is not available on this server. "
                           + models_catalog.HUB_REGISTER_HINT.format(name=name))
    name = model.model_id.removeprefix(models_catalog.HUB_KEY)
    spec = dict(spec, base_model={"arn": arn, "name": name, "path": model.location})
    packages = spec.get("model_packages", {})
    for member in ("OutputModelPackageGroupArn", "IntermediateCheckpointModelPackageGroupArn"):
        if member in packages and model_packages.find_group(ctx.engine, ctx.account_id, ctx.region,
                                                            packages[member]) is None:
            raise ServiceError("ResourceNotFound", f"ModelPackageConfig.{member} {packages[member]} does not "
                               "exist: create it with CreateModelPackageGroup first.")
    if "InputModelPackageArn" in packages:
        spec["input_package"] = _input_package(ctx, packages["InputModelPackageArn"], name)
    if "mlflow" in spec:
        _check_mlflow_app(ctx, spec["mlflow"]["arn"])
    node = ctx.runtime.scheduler.executor.capacity()
    # The policy samples and trains in the worker: up to 4 CPU threads, one GPU where the nodes have any.
    return spec, {"cpus": max(1, min(4, node.cpus)), "memory_mb": min(8192, node.memory_mb),
                  "gpus": 1 if node.gpus else 0}
