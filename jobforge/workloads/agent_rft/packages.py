"""The model packages an AgentRFT job registers: its model in ``OutputModelPackageGroupArn``, and its
intermediate checkpoints (the LoRA adapter) in ``IntermediateCheckpointModelPackageGroupArn``.

Each is a version of its group created through the SageMaker API with the job role's credentials, as the
service does on the user's behalf. Its one container holds the model as an uncompressed S3 prefix
(``ModelDataSource``) and names the hub model it was trained from (``BaseModel``, which the SageMaker SDK's
evaluator reads); a checkpoint's says ``IsCheckpoint``. The client token is derived from the job and the
step, so an attempt resumed after a restart registers a step's package once.
"""

from __future__ import annotations

import re
import uuid

from jobforge.core.models_catalog import HUB_CONTENT_ARN
from jobforge.execution.context import JobContext


def base_model(hub_content_arn: str) -> dict:
    """``BaseModel`` of a package: the hub content's name, and its version where the ARN gives one."""
    out = {"HubContentName": HUB_CONTENT_ARN.fullmatch(hub_content_arn)["name"]}
    version = hub_content_arn.split("/Model/", 1)[1].partition("/")[2]
    if re.fullmatch(r"\d{1,4}\.\d{1,4}\.\d{1,4}", version):
        out["HubContentVersion"] = version
    return out


def register(ctx: JobContext, spec: dict, group_arn: str, model_uri: str, step: int, checkpoint: bool) -> str:
    """The ARN of the package version registered for the model under ``model_uri`` (an S3 prefix)."""
    import boto3

    container = {"ModelDataSource": {"S3DataSource": {"S3Uri": model_uri, "S3DataType": "S3Prefix",
                                                      "CompressionType": "None"}},
                 "BaseModel": base_model(spec["base_model"]["arn"])}
    if checkpoint:
        container["IsCheckpoint"] = True
    kind = "checkpoint" if checkpoint else "model"
    token = str(uuid.uuid5(uuid.NAMESPACE_URL, f"{ctx.job_arn}/{kind}/{step}"))
    # The worker's environment names the server as every service's endpoint, with the job role's keys.
    client = boto3.client("sagemaker", region_name=ctx.region)
    return client.create_model_package(
        ModelPackageGroupName=group_arn, ClientToken=token,
        ModelPackageDescription=f"{ctx.job_name}: {'LoRA adapter at step' if checkpoint else 'model after'} "
                                f"{step} steps",
        InferenceSpecification={"Containers": [container]})["ModelPackageArn"]
