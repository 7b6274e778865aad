"""SageMaker AgentRFT and AgentRFTEvaluation end to end against the real server: a tiny random policy built
here, registered as a JumpStart model; the agent a Lambda function created through boto3 that plays
"follow the signal" through the job runtime API (boto3's sagemakerjobruntime client); schemas, runtime
state machine and errors, Stop, and another account's reach."""

from __future__ import annotations

import io
import json
import random
import subprocess
import sys
import textwrap
import time
import uuid
import zipfile

import pytest
from botocore.exceptions import ClientError

from jobforge import tinylm
from jobforge.testing_server import ServerProcess

BUCKET = "agent-rft"
MODEL = "tiny-digits"
BASE_ARN = f"arn:aws:sagemaker:us-east-1:aws:hub-content/SageMakerPublicHub/Model/{MODEL}/1.0.0"
TURNS = 4

# The environment emits a digit each turn; the right answer is (3·o + 1) mod 10. Per-turn rewards, mean reported.
AGENT = """
import functools, json, random, boto3

@functools.cache  # one client per warm environment, as Lambda code keeps its clients
def client(endpoint, region):
    return boto3.client("sagemakerjobruntime", endpoint_url=endpoint, region_name=region)

def handler(event, context):
    meta = event["metadata"]
    runtime = client(meta["endpoint"], meta["region"])
    ids = dict(JobArn=meta["job_arn"], TrajectoryId=meta["trajectory_id"])
    rng = random.Random(int(event["instance"]["seed"]))
    messages, rewards = [], []
    for _ in range(%(turns)d):
        signal = rng.randrange(10)
        messages.append({"role": "user", "content": str(signal)})
        body = {"messages": messages, "max_tokens": 1, **event["inferenceParams"], "max_tokens": 1}
        answer = json.loads(runtime.sample(Body=json.dumps(body), **ids)["Body"].read())
        text = answer["choices"][0]["message"]["content"]
        rewards.append(1.0 if text == str((3 * signal + 1) %% 10) else 0.0)
        messages.append({"role": "assistant", "content": text})
    runtime.complete_rollout(Status="ready", **ids)
    runtime.update_reward(Rewards=rewards, **ids)
    return {}
""" % {"turns": TURNS}


def code_zip(source: str) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("app.py", textwrap.dedent(source))
    return buffer.getvalue()


def jsonl(rows) -> bytes:
    return "".join(json.dumps(r) + "\n" for r in rows).encode()


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    data = tmp_path_factory.mktemp("agent-rft") / "data"
    srv = ServerProcess(data).start()
    model = tinylm.build_digits(tmp_path_factory.mktemp("digits"))
    added = subprocess.run([sys.executable, "-m", "jobforge.cli", "--data-dir", str(data), "models", "add", MODEL,
                            str(model)], capture_output=True, text=True, timeout=60)
    assert added.returncode == 0, added.stderr
    s3 = srv.client("s3")
    s3.create_bucket(Bucket=BUCKET)
    rng = random.Random(7)
    s3.put_object(Bucket=BUCKET, Key="train.jsonl",
                  Body=jsonl({"prompt": f"episode {s}", "seed": s} for s in (rng.randrange(10 ** 6) for _ in range(256))))
    s3.put_object(Bucket=BUCKET, Key="validation.jsonl",
                  Body=jsonl({"prompt": f"episode {s}", "seed": s} for s in range(10 ** 6, 10 ** 6 + 16)))
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def role(server):
    return f"arn:aws:iam::{server.client('sts').get_caller_identity()['Account']}:role/JobforgeExecutionRole"


@pytest.fixture(scope="module")
def agent(server, role):
    lam = server.client("lambda", read_timeout=120)
    name = f"follow-the-signal-{uuid.uuid4().hex[:6]}"
    arn = lam.create_function(FunctionName=name, Runtime=f"python3.{sys.version_info[1]}", Role=role,
                              Handler="app.handler", Code={"ZipFile": code_zip(AGENT)}, Timeout=120,
                              MemorySize=256)["FunctionArn"]
    deadline = time.time() + 30
    while lam.get_function_configuration(FunctionName=name)["State"] != "Active":
        assert time.time() < deadline
        time.sleep(0.1)
    return arn


@pytest.fixture(scope="module")
def sm(server):
    return server.client("sagemaker")


def training_document(agent: str, account: str, **hyperparameters) -> dict:
    return {
        "AgentConfig": {"CustomAgentLambdaConfig": {"LambdaArn": agent}},
        "InputDataConfig": [
            {"ChannelName": "train", "DataSource": {"S3DataSource": {"S3DataType": "S3Prefix",
                                                                      "S3Uri": f"s3://{BUCKET}/train.jsonl"}}},
            {"ChannelName": "validation", "DataSource": {"S3DataSource": {
                "S3DataType": "S3Prefix", "S3Uri": f"s3://{BUCKET}/validation.jsonl"}}}],
        "OutputDataConfig": {"S3OutputPath": f"s3://{BUCKET}/output"},
        "ModelPackageConfig": {"OutputModelPackageGroupArn":
                               f"arn:aws:sagemaker:us-east-1:{account}:model-package-group/digits"},
        "TrainingConfig": {"BaseModelArn": BASE_ARN, "HyperParameters": {k: str(v) for k, v in hyperparameters.items()}},
    }


def create(sm, role, name: str, document: dict, category: str = "AgentRFT") -> str:
    return sm.create_job(JobName=name, RoleArn=role, JobCategory=category, JobConfigSchemaVersion="1.0.0",
                         JobConfigDocument=json.dumps(document))["JobArn"]


def wait(sm, name: str, category: str = "AgentRFT", until=("Completed", "Failed", "Stopped"),
         timeout: float = 900) -> dict:
    deadline = time.time() + timeout
    while time.time() < deadline:
        job = sm.describe_job(JobName=name, JobCategory=category)
        if job["JobStatus"] in until:
            return job
        time.sleep(1)
    raise AssertionError(f"{name} still {job['JobStatus']} / {job['SecondaryStatus']}")


def test_follow_the_signal_learns_through_the_runtime_api(server, sm, role, agent):
    account = role.split(":")[4]
    document = training_document(agent, account, global_batch_size=32, group_size=4, max_steps=60,
                                 learning_rate=0.003, max_concurrent_rollouts=16, max_epochs=8, sampling_max_tokens=512)
    arn = create(sm, role, "follow-the-signal", document)
    job = wait(sm, "follow-the-signal")
    assert job["JobStatus"] == "Completed", job.get("FailureReason")
    output = json.loads(job["JobConfigDocument"])["ServiceOutput"]
    assert output["ProgressInfo"]["CurrentStep"] == 60
    usage = output["BillableTokenUsage"]
    assert usage["SampleTokenCount"] > 0 and usage["PrefillTokenCount"] > usage["SampleTokenCount"]
    statuses = [t["Status"] for t in job["SecondaryStatusTransitions"]]
    assert statuses == ["Pending", "Starting", "Downloading", "Training", "Uploading", "Completed"], statuses
    events = server.client("logs").get_log_events(
        logGroupName="/aws/sagemaker/Job/AgentRFT",
        logStreamName=server.client("logs").describe_log_streams(
            logGroupName="/aws/sagemaker/Job/AgentRFT")["logStreams"][0]["logStreamName"])["events"]
    validations = [e["message"] for e in events if e["message"].startswith("validation after step")]
    assert len(validations) == 2, validations
    before, after = (float(v.split("mean reward ")[1].split(",")[0]) for v in validations)
    assert before < 0.3 and after >= 0.8, validations
    assert arn.endswith(":job/AgentRFT/follow-the-signal")
