"""The SageMaker Python SDK v3's MultiTurnRLTrainer, unmodified, against the real server: it finds the registered
model in the hub, creates its model package groups, reads the engine's hyperparameters, submits the AgentRFT job
with a Lambda agent, follows it to Completed and names the registered model package."""

from __future__ import annotations

import json
import random
import uuid

import pytest

from sagemaker_sdk import sdk_environment
from signal_game import BASE_ARN, MODEL, jsonl, lambda_agent, register_model

BUCKET = "sdk-agent-rl"


@pytest.fixture(scope="module")
def sdk_env(server, tmp_path_factory):
    """What a user sets for the SDK: the endpoint and credentials, and telemetry opted out in its config file."""
    register_model(server.data_dir, tmp_path_factory.mktemp("digits"))
    with sdk_environment(server, tmp_path_factory.mktemp("sdk")):
        yield


@pytest.fixture(scope="module")
def agent(server, role_arn):
    s3 = server.client("s3")
    s3.create_bucket(Bucket=BUCKET)
    rng = random.Random(11)
    s3.put_object(Bucket=BUCKET, Key="train.jsonl", Body=jsonl(
        {"prompt": f"episode {s}", "seed": s} for s in (rng.randrange(10 ** 6) for _ in range(64))))
    return lambda_agent(server, role_arn, f"sdk-agent-{uuid.uuid4().hex[:6]}")


def test_multi_turn_rl_trainer_trains_and_registers(server, sdk_env, agent, role_arn):
    import boto3
    from sagemaker.core.helper.session_helper import Session
    from sagemaker.train.multi_turn_rl_trainer import MultiTurnRLTrainer

    trainer = MultiTurnRLTrainer(model=MODEL, agent_env=agent, training_dataset=f"s3://{BUCKET}/train.jsonl",
                                 sagemaker_session=Session(boto_session=boto3.Session()), role=role_arn)
    assert trainer._model_arn == BASE_ARN
    assert trainer.output_model_package_group.endswith(f":model-package-group/{MODEL}-mtrl-mpg")
    assert trainer.intermediate_checkpoint_model_package_group.endswith(f"/{MODEL}-mtrl-checkpoint-mpg")
    options = trainer.hyperparameters
    options.global_batch_size, options.group_size, options.max_steps = 32, 4, 2
    options.sampling_max_tokens, options.max_concurrent_rollouts = 512, 16

    job = trainer.train(wait=True)

    sm = server.client("sagemaker")
    described = sm.describe_job(JobName=job.job_name, JobCategory="AgentRFT")
    assert described["JobStatus"] == "Completed", described.get("FailureReason")
    document = json.loads(described["JobConfigDocument"])
    assert document["TrainingConfig"]["HyperParameters"] == {
        "global_batch_size": "32", "group_size": "4", "max_steps": "2", "sampling_max_tokens": "512",
        "max_concurrent_rollouts": "16"}  # only what the user changed, as the SDK sends it
    package_arn = document["ServiceOutput"]["OutputModelPackageArn"]
    assert package_arn.endswith(f":model-package/{MODEL}-mtrl-mpg/1")
    assert job.output_model_package_arn == package_arn
    package = sm.describe_model_package(ModelPackageName=package_arn)
    assert package["InferenceSpecification"]["Containers"][0]["BaseModel"]["HubContentName"] == MODEL
