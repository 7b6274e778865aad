"""The JSON Schemas (draft 2020-12) of the AgentRFT and AgentRFTEvaluation JobConfigDocuments, version 1.0.0.

They describe the documents the SageMaker Python SDK v3 builds (``MultiTurnRLTrainer``,
``MultiTurnRLEvaluator``); keys the schemas do not name are tolerated, as AWS's schema is not public
and later SDKs may add some. ``check`` validates a document and names the first violation's JSON path
and rule.
"""

from __future__ import annotations

VERSION = "1.0.0"
DIALECT = "https://json-schema.org/draft/2020-12/schema"

ARN_PREFIX = "^arn:aws[a-z\\-]*:"
LAMBDA_ARN = ARN_PREFIX + "lambda:[a-z0-9\\-]+:[0-9]{12}:function:[a-zA-Z0-9\\-_]+(:(\\$LATEST|[a-zA-Z0-9\\-_]+))?$"
AGENTCORE_ARN = ARN_PREFIX + "bedrock-agentcore:[a-z0-9\\-]+:[0-9]{12}:runtime/.+$"
HUB_MODEL_ARN = ARN_PREFIX + "sagemaker:[a-z0-9\\-]+:([0-9]{12}|aws):hub-content/[^/]+/Model/[^/]+(/[^/]+)?$"
HUB_DATASET_ARN = ARN_PREFIX + "sagemaker:[a-z0-9\\-]+:([0-9]{12}|aws):hub-content/[^/]+/DataSet/[^/]+(/[^/]+)?$"
PACKAGE_GROUP_ARN = ARN_PREFIX + "sagemaker:[a-z0-9\\-]+:[0-9]{12}:model-package-group/[a-zA-Z0-9](-*[a-zA-Z0-9]){0,62}$"
PACKAGE_ARN = ARN_PREFIX + "sagemaker:[a-z0-9\\-]+:[0-9]{12}:model-package/.+$"
MLFLOW_ARN = ARN_PREFIX + "sagemaker:[a-z0-9\\-]+:[0-9]{12}:mlflow-[a-z\\-]+/.+$"
KMS_ARN = ARN_PREFIX + "kms:.+$"
S3_URI = "^s3://[a-z0-9][a-z0-9.\\-]{1,61}[a-z0-9](/.*)?$"


def _object(properties: dict, required: tuple[str, ...] = ()) -> dict:
    return {"type": "object", "properties": properties, "required": list(required)}


def _string(pattern: str | None = None, max_length: int = 2048) -> dict:
    out = {"type": "string", "minLength": 1, "maxLength": max_length}
    if pattern:
        out["pattern"] = pattern
    return out


AGENT_CONFIG = {
    **_object({
        "CustomAgentLambdaConfig": _object({"LambdaArn": _string(LAMBDA_ARN)}, ("LambdaArn",)),
        "BedrockAgentCoreConfig": _object({"AgentRuntimeArn": _string(AGENTCORE_ARN),
                                           "Qualifier": _string(max_length=128)}, ("AgentRuntimeArn",)),
    }),
    "minProperties": 1,
    "oneOf": [{"required": ["CustomAgentLambdaConfig"]}, {"required": ["BedrockAgentCoreConfig"]}],
}
S3_DATA_SOURCE = _object({"S3DataType": {"enum": ["S3Prefix"]}, "S3Uri": _string(S3_URI, 1024)},
                         ("S3DataType", "S3Uri"))
DATA_SOURCE = {
    **_object({"S3DataSource": S3_DATA_SOURCE,
               "DatasetSource": _object({"DatasetArn": _string(HUB_DATASET_ARN)}, ("DatasetArn",))}),
    "oneOf": [{"required": ["S3DataSource"]}, {"required": ["DatasetSource"]}],
}
MLFLOW_CONFIG = _object({"MlflowResourceArn": _string(MLFLOW_ARN), "MlflowExperimentName": _string(max_length=256),
                         "MlflowRunName": _string(max_length=256)}, ("MlflowResourceArn",))
HYPERPARAMETERS = {"type": "object", "maxProperties": 50,
                   "additionalProperties": {"type": "string", "maxLength": 2500},
                   "propertyNames": {"pattern": "^[a-zA-Z_][a-zA-Z0-9_.]*$", "maxLength": 256}}
VPC_CONFIG = _object({"SecurityGroupIds": {"type": "array", "items": _string(max_length=32), "maxItems": 5},
                      "Subnets": {"type": "array", "items": _string(max_length=32), "maxItems": 16}},
                     ("SecurityGroupIds", "Subnets"))
STOPPING_CONDITION = _object({"MaxRuntimeInSeconds": {"type": "integer", "minimum": 1, "maximum": 2419200}})


def _channels(names: list[str], required_name: str) -> dict:
    return {"type": "array", "minItems": 1, "maxItems": len(names),
            "items": _object({"ChannelName": {"enum": names}, "DataSource": DATA_SOURCE}, ("ChannelName", "DataSource")),
            "contains": _object({"ChannelName": {"const": required_name}}, ("ChannelName",))}


TRAINING = {
    "$schema": DIALECT,
    "$id": "urn:jobforge:sagemaker:job-config:AgentRFT:1.0.0",
    "title": "AgentRFT JobConfigDocument",
    **_object({
        "AgentConfig": AGENT_CONFIG,
        "InputDataConfig": _channels(["train", "validation"], "train"),
        "OutputDataConfig": _object({"S3OutputPath": _string(S3_URI, 1024), "KmsKeyArn": _string(KMS_ARN)},
                                    ("S3OutputPath",)),
        "ModelPackageConfig": _object({"OutputModelPackageGroupArn": _string(PACKAGE_GROUP_ARN),
                                       "InputModelPackageArn": _string(PACKAGE_ARN),
                                       "IntermediateCheckpointModelPackageGroupArn": _string(PACKAGE_GROUP_ARN)},
                                      ("OutputModelPackageGroupArn",)),
        "TrainingConfig": _object({"BaseModelArn": _string(HUB_MODEL_ARN), "MlflowConfig": MLFLOW_CONFIG,
                                   "AcceptEula": {"type": "boolean"}, "HyperParameters": HYPERPARAMETERS},
                                  ("BaseModelArn",)),
        "VpcConfig": VPC_CONFIG,
        "StoppingCondition": STOPPING_CONDITION,
    }, ("AgentConfig", "InputDataConfig", "OutputDataConfig", "ModelPackageConfig", "TrainingConfig")),
}

EVALUATION = {
    "$schema": DIALECT,
    "$id": "urn:jobforge:sagemaker:job-config:AgentRFTEvaluation:1.0.0",
    "title": "AgentRFTEvaluation JobConfigDocument",
    **_object({
        "AgentConfig": AGENT_CONFIG,
        "InputDataConfig": _channels(["evaluation"], "evaluation"),
        "OutputDataConfig": _object({"S3OutputPath": _string(S3_URI, 1024), "KmsKeyArn": _string(KMS_ARN),
                                     "MlflowConfig": MLFLOW_CONFIG}, ("S3OutputPath",)),
        "EvaluationConfig": _object({"BaseModelArn": _string(HUB_MODEL_ARN), "AcceptEula": {"type": "boolean"},
                                     "HyperParameters": HYPERPARAMETERS}, ("BaseModelArn",)),
        "ModelPackageConfig": _object({"InputModelPackageArn": _string(PACKAGE_ARN)}),
        "VpcConfig": VPC_CONFIG,
        "StoppingCondition": STOPPING_CONDITION,
    }, ("AgentConfig", "InputDataConfig", "OutputDataConfig", "EvaluationConfig")),
}
