"""AgentRFT and AgentRFTEvaluation with the agent on an AgentCore runtime (BedrockAgentCoreConfig): the agent is
a BedrockAgentCoreApp zipped with its dependencies, created through boto3, and reached by the job through
InvokeAgentRuntime; it samples through the job runtime API from its session's own network namespace."""

from __future__ import annotations

import json
import random
import sys
import time

import pytest

from jobforge.testing_server import ServerProcess

import agent_code
from signal_game import BASE_ARN, jsonl, register_model

BUCKET = "agentcore-rft"
TURNS = 2
AGENT = """
import json, random

import boto3
from bedrock_agentcore import BedrockAgentCoreApp

app = BedrockAgentCoreApp()


@app.entrypoint
def rollout(event, context):
    meta = event["metadata"]
    runtime = boto3.client("sagemakerjobruntime", endpoint_url=meta["endpoint"], region_name=meta["region"])
    ids = dict(JobArn=meta["job_arn"], TrajectoryId=meta["trajectory_id"])
    rng = random.Random(int(event["instance"]["seed"]))
    messages, rewards = [], []
    for _ in range(%(turns)d):
        signal = rng.randrange(10)
        messages.append({"role": "user", "content": str(signal)})
        body = {"messages": messages, **event["inferenceParams"], "max_tokens": 1}
        answer = json.loads(runtime.sample(Body=json.dumps(body), **ids)["Body"].read())
        text = answer["choices"][0]["message"]["content"]
        rewards.append(1.0 if text == str((3 * signal + 1) %% 10) else 0.0)
        messages.append({"role": "assistant", "content": text})
    runtime.complete_rollout(Status="ready", **ids)
    runtime.update_reward(Rewards=rewards, **ids)
    print("rollout", meta["trajectory_id"], "in session", context.session_id, flush=True)
    return {"rewards": rewards}


if __name__ == "__main__":
    app.run()
""" % {"turns": TURNS}


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    data = tmp_path_factory.mktemp("agentcore-rft") / "data"
    srv = ServerProcess(data).start()
    register_model(data, tmp_path_factory.mktemp("digits"))
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def role(server):
    return f"arn:aws:iam::{server.client('sts').get_caller_identity()['Account']}:role/JobforgeExecutionRole"


@pytest.fixture(scope="module")
def runtime_arn(server, role) -> str:
    s3 = server.client("s3")
    s3.create_bucket(Bucket=BUCKET)
    s3.put_object(Bucket=BUCKET, Key="agent.zip", Body=agent_code.code_zip({"main.py": AGENT}, ["bedrock-agentcore"]))
    rng = random.Random(3)
    s3.put_object(Bucket=BUCKET, Key="prompts.jsonl",
                  Body=jsonl({"prompt": f"episode {s}", "seed": s} for s in (rng.randrange(10 ** 6) for _ in range(32))))
    control = server.client("bedrock-agentcore-control")
    created = control.create_agent_runtime(
        agentRuntimeName="signal_follower", roleArn=role, networkConfiguration={"networkMode": "PUBLIC"},
        agentRuntimeArtifact={"codeConfiguration": {
            "code": {"s3": {"bucket": BUCKET, "prefix": "agent.zip"}},
            "runtime": f"PYTHON_3_{sys.version_info[1]}", "entryPoint": ["main.py"]}})
    deadline = time.time() + 60
    while (got := control.get_agent_runtime(agentRuntimeId=created["agentRuntimeId"]))["status"] != "READY":
        assert got["status"] == "CREATING" and time.time() < deadline, got
        time.sleep(0.2)
    return created["agentRuntimeArn"]


def channel(name: str) -> dict:
    return {"ChannelName": name, "DataSource": {"S3DataSource": {"S3DataType": "S3Prefix",
                                                                 "S3Uri": f"s3://{BUCKET}/prompts.jsonl"}}}


def wait(sm, name: str, category: str) -> dict:
    deadline = time.time() + 600
    while (job := sm.describe_job(JobName=name, JobCategory=category))["JobStatus"] not in (
            "Completed", "Failed", "Stopped"):
        assert time.time() < deadline, job["SecondaryStatus"]
        time.sleep(0.5)
    return job


def test_training_and_evaluation_through_invoke_agent_runtime(server, role, runtime_arn):
    sm = server.client("sagemaker")
    account = role.split(":")[4]
    group = sm.create_model_package_group(ModelPackageGroupName="agentcore-digits")["ModelPackageGroupArn"]
    agent = {"BedrockAgentCoreConfig": {"AgentRuntimeArn": runtime_arn, "Qualifier": "DEFAULT"}}
    training = {
        "AgentConfig": agent, "InputDataConfig": [channel("train")],
        "OutputDataConfig": {"S3OutputPath": f"s3://{BUCKET}/output"},
        "ModelPackageConfig": {"OutputModelPackageGroupArn": group},
        "TrainingConfig": {"BaseModelArn": BASE_ARN, "HyperParameters": {
            "global_batch_size": "32", "group_size": "2", "max_steps": "1", "max_concurrent_rollouts": "2",
            "sampling_max_tokens": "512"}},
    }
    sm.create_job(JobName="agentcore-training", RoleArn=role, JobCategory="AgentRFT", JobConfigSchemaVersion="1.0.0",
                  JobConfigDocument=json.dumps(training))
    job = wait(sm, "agentcore-training", "AgentRFT")
    assert job["JobStatus"] == "Completed", job.get("FailureReason")
    output = json.loads(job["JobConfigDocument"])["ServiceOutput"]
    assert output["ProgressInfo"]["CurrentStep"] == 1 and output["OutputModelPackageArn"].startswith(
        f"arn:aws:sagemaker:us-east-1:{account}:model-package/agentcore-digits/")

    evaluation = {
        "AgentConfig": agent, "InputDataConfig": [channel("evaluation")],
        "OutputDataConfig": {"S3OutputPath": f"s3://{BUCKET}/evaluations"},
        "EvaluationConfig": {"BaseModelArn": BASE_ARN, "HyperParameters": {
            "eval_group_size": "2", "pass_k_values": "[1, 2]", "max_concurrent_rollouts": "2"}},
        "ModelPackageConfig": {"InputModelPackageArn": output["OutputModelPackageArn"]},
    }
    sm.create_job(JobName="agentcore-evaluation", RoleArn=role, JobCategory="AgentRFTEvaluation",
                  JobConfigSchemaVersion="1.0.0", JobConfigDocument=json.dumps(evaluation))
    job = wait(sm, "agentcore-evaluation", "AgentRFTEvaluation")
    assert job["JobStatus"] == "Completed", job.get("FailureReason")
    output = json.loads(job["JobConfigDocument"])["ServiceOutput"]
    assert output["RolloutInfo"] == {"Total": 64, "Completed": 64}
    bucket, key = output["ResultsS3Uri"].removeprefix("s3://").split("/", 1)
    results = json.loads(server.client("s3").get_object(Bucket=bucket, Key=key)["Body"].read())
    assert results["FailureRate"] == 0 and results["MeanTurns"] == TURNS

    # Every rollout ran in the runtime's sessions, two at a time: each job kept two sessions for all of them.
    logs = server.client("logs")
    group_name = f"/aws/bedrock-agentcore/runtimes/{runtime_arn.rsplit('/', 1)[1]}-DEFAULT"
    streams = logs.describe_log_streams(logGroupName=group_name)["logStreams"]
    lines = [e["message"] for s in streams for e in
             logs.get_log_events(logGroupName=group_name, logStreamName=s["logStreamName"])["events"]]
    sessions = {line.split(" in session ")[1].strip() for line in lines if line.startswith("rollout ")}
    assert len([line for line in lines if line.startswith("rollout ")]) == 128 and len(sessions) == 4, sessions
