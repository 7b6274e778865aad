"""Bedrock REINFORCEMENT_FINE_TUNING end to end through boto3: a tiny random policy built here and registered
under a Bedrock id, a grader Lambda created through boto3 that scores the answers in batches, the job's
statuses and metric files, the custom model deployed and asked with Converse; bad records with their line
numbers, bad rftConfig values refused at create."""

from __future__ import annotations

import csv
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

BUCKET = "bedrock-rft"
MODEL_ID = "jobforge.tiny-digits-v1"  # outside Bedrock's families: takes RFT as the open-weight models do

# The grader receives a list of samples and scores each: 1 when the answer is the reference. It keeps what it
# received, so the test can check the documented input format.
GRADER = """
import json, boto3

def handler(event, context):
    boto3.client("s3").put_object(Bucket="%s", Key="grader/last-batch.json", Body=json.dumps(event))
    out = []
    for sample in event:
        answer = sample["messages"][-1]["content"].strip()
        right = float(answer == str(sample["reference_answer"]))
        out.append({"id": sample["id"], "aggregate_reward_score": right,
                    "metrics_list": [{"name": "exact_match", "value": right, "type": "Metric"}]})
    return out
""" % BUCKET

BROKEN_GRADER = """
def handler(event, context):
    return {"score": 1}
"""


def code_zip(source: str) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("app.py", textwrap.dedent(source))
    return buffer.getvalue()


def jsonl(rows) -> bytes:
    return "".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows).encode()


def prompts(n: int, seed: int) -> list[dict]:
    """Single-turn "follow the signal": the answer to digit o is (3·o + 1) mod 10."""
    rng = random.Random(seed)
    digits = [rng.randrange(10) for _ in range(n)]
    return [{"messages": [{"role": "user", "content": str(d)}], "reference_answer": str((3 * d + 1) % 10),
             "id": f"p{i}"} for i, d in enumerate(digits)]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    data = tmp_path_factory.mktemp("bedrock-rft") / "data"
    srv = ServerProcess(data).start()
    model = tinylm.build_digits(tmp_path_factory.mktemp("digits"))
    added = subprocess.run([sys.executable, "-m", "jobforge.cli", "--data-dir", str(data), "models", "add", MODEL_ID,
                            str(model)], capture_output=True, text=True, timeout=60)
    assert added.returncode == 0, added.stderr
    s3 = srv.client("s3")
    s3.create_bucket(Bucket=BUCKET)
    s3.put_object(Bucket=BUCKET, Key="train.jsonl", Body=jsonl(prompts(128, 1)))
    s3.put_object(Bucket=BUCKET, Key="validation.jsonl", Body=jsonl(prompts(10, 2)))
    bad = prompts(120, 3)
    bad[4] = {"messages": [{"role": "user", "content": "3"}]}  # no reference_answer
    bad[9] = "{not json"
    bad[17] = {"messages": [{"role": "user", "content": "1"}, {"role": "assistant", "content": "4"}],
               "reference_answer": "4"}
    s3.put_object(Bucket=BUCKET, Key="bad/train.jsonl", Body=jsonl(bad))
    s3.put_object(Bucket=BUCKET, Key="few/train.jsonl", Body=jsonl(prompts(40, 4)))
    s3.put_object(Bucket=BUCKET, Key="bad-first/train.jsonl", Body=jsonl([{"messages": [{"role": "user", "content": "1"}]}]
                                                                          + prompts(120, 5)))
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def role(server):
    return f"arn:aws:iam::{server.client('sts').get_caller_identity()['Account']}:role/JobforgeExecutionRole"


def create_function(server, role, name: str, source: str) -> str:
    lam = server.client("lambda", read_timeout=120)
    arn = lam.create_function(FunctionName=name, Runtime=f"python3.{sys.version_info[1]}", Role=role,
                              Handler="app.handler", Code={"ZipFile": code_zip(source)}, Timeout=60)["FunctionArn"]
    deadline = time.time() + 30
    while lam.get_function_configuration(FunctionName=name)["State"] != "Active":
        assert time.time() < deadline
        time.sleep(0.1)
    return arn


@pytest.fixture(scope="module")
def grader(server, role):
    return create_function(server, role, "digits-grader", GRADER)


@pytest.fixture(scope="module")
def bedrock(server):
    return server.client("bedrock")


def create(bedrock, role, name: str, grader: str, train: str = "train.jsonl", validation: bool = True,
           **hyperparameters) -> str:
    rft = {"graderConfig": {"lambdaGrader": {"lambdaArn": grader}},
           "hyperParameters": {"batchSize": 16, "trainingSamplePerPrompt": 4, "epochCount": 1,
                               "learningRate": 1e-3, "inferenceMaxTokens": 1, **hyperparameters}}
    args = dict(jobName=name, customModelName=f"{name}-model", roleArn=role, baseModelIdentifier=MODEL_ID,
                customizationType="REINFORCEMENT_FINE_TUNING", customizationConfig={"rftConfig": rft},
                trainingDataConfig={"s3Uri": f"s3://{BUCKET}/{train}"},
                outputDataConfig={"s3Uri": f"s3://{BUCKET}/output"}, hyperParameters={"seed": "0"})
    if validation:
        args["validationDataConfig"] = {"validators": [{"s3Uri": f"s3://{BUCKET}/validation.jsonl"}]}
    return bedrock.create_model_customization_job(**args)["jobArn"]


def wait(bedrock, arn: str, timeout: float = 600) -> dict:
    deadline = time.time() + timeout
    while time.time() < deadline:
        job = bedrock.get_model_customization_job(jobIdentifier=arn)
        if job["status"] in ("Completed", "Failed", "Stopped"):
            return job
        time.sleep(1)
    raise AssertionError(f"{arn} still {job['status']}: {job['statusDetails']}")


def read_csv(s3, key: str) -> list[dict]:
    return list(csv.DictReader(io.StringIO(s3.get_object(Bucket=BUCKET, Key=key)["Body"].read().decode())))


def test_rft_with_a_grader_lambda_trains_a_usable_custom_model(server, bedrock, role, grader):
    arn = create(bedrock, role, "digits-rft", grader, epochCount=5, evalInterval=8)
    assert ":model-customization-job/" in arn
    job = wait(bedrock, arn)
    assert job["status"] == "Completed", job.get("failureMessage")
    assert job["customizationType"] == "REINFORCEMENT_FINE_TUNING"
    assert job["customizationConfig"]["rftConfig"]["hyperParameters"]["trainingSamplePerPrompt"] == 4
    assert {k: v["status"] for k, v in job["statusDetails"].items()} == {
        "validationDetails": "Completed", "trainingDetails": "Completed"}
    s3 = server.client("s3")
    prefix = f"output/model-customization-job-{arn.rsplit('/', 1)[1]}/"
    rows = read_csv(s3, prefix + "training_artifacts/step_wise_training_metrics.csv")
    assert [int(r["step_number"]) for r in rows] == list(range(40))  # 128 prompts / 16 a step × 5 epochs
    assert {int(r["epoch_number"]) for r in rows} == set(range(5))
    rewards = [float(r["critic/rewards/mean"]) for r in rows]
    assert all(0 <= float(r["critic/rewards/min"]) <= float(r["critic/rewards/max"]) <= 1 for r in rows)
    early, late = sum(rewards[:5]) / 5, sum(rewards[-5:]) / 5
    assert early < 0.3 and late > early + 0.3, rewards
    assert job["trainingMetrics"]["trainingLoss"] == pytest.approx(float(rows[-1]["training_loss"]))
    validation = read_csv(s3, prefix + "validation_artifacts/post_fine_tuning_validation/validation/"
                                       "validation_metrics.csv")
    assert [int(r["step_number"]) for r in validation] == [7, 15, 23, 31, 39]

    batch = json.loads(s3.get_object(Bucket=BUCKET, Key="grader/last-batch.json")["Body"].read())
    assert isinstance(batch, list) and 1 <= len(batch) <= 32
    sample = batch[0]
    assert sample["messages"][-1]["role"] == "assistant" and sample["messages"][0]["role"] == "user"
    assert sample["reference_answer"] == sample["metadata"]["reference_answer"]
    assert sample["metadata"]["id"].startswith("p") and len({s["id"] for s in batch}) == len(batch)

    model = bedrock.get_custom_model(modelIdentifier=job["outputModelArn"])
    assert model["customizationType"] == "REINFORCEMENT_FINE_TUNING" and model["modelStatus"] == "Active"
    deployment = bedrock.create_custom_model_deployment(modelDeploymentName="digits",
                                                        modelArn=job["outputModelArn"])["customModelDeploymentArn"]
    deadline = time.time() + 120
    while bedrock.get_custom_model_deployment(customModelDeploymentIdentifier=deployment)["status"] == "Creating":
        assert time.time() < deadline
        time.sleep(0.3)
    runtime = server.client("bedrock-runtime")
    right = 0
    for digit in range(10):
        reply = runtime.converse(modelId=deployment, messages=[{"role": "user", "content": [{"text": str(digit)}]}],
                                 inferenceConfig={"maxTokens": 1, "temperature": 0})
        right += reply["output"]["message"]["content"][0]["text"] == str((3 * digit + 1) % 10)
    assert right >= 5, right  # greedy answers of the trained policy: a random one gets about 1 in 10


def test_bad_records_fail_validation_with_line_numbers(bedrock, role, grader):
    job = wait(bedrock, create(bedrock, role, "digits-bad", grader, train="bad/train.jsonl", validation=False))
    assert job["status"] == "Failed"
    message = job["failureMessage"]
    assert "Line 5: Reinforcement fine-tuning records need" in message and "reference_answer" in message
    assert "Line 10: Invalid JSON" in message
    assert "Line 18: The last message must be the user's" in message
    assert job["statusDetails"]["validationDetails"]["status"] == "Failed"
    assert job["statusDetails"]["trainingDetails"]["status"] == "NotStarted"
    assert "outputModelArn" not in job


def test_too_few_records_and_a_broken_grader_fail_the_job(server, bedrock, role, grader):
    job = wait(bedrock, create(bedrock, role, "digits-few", grader, train="few/train.jsonl", validation=False))
    assert job["status"] == "Failed" and "40 records; the minimum is 100" in job["failureMessage"]
    broken = create_function(server, role, "broken-grader", BROKEN_GRADER)
    job = wait(bedrock, create(bedrock, role, "digits-broken-grader", broken, validation=False))
    assert job["status"] == "Failed"
    assert broken in job["failureMessage"] and "must return a list" in job["failureMessage"]


@pytest.mark.parametrize("change, message", [
    ({"batchSize": 1024}, "batchSize"),
    ({"trainingSamplePerPrompt": 32}, "trainingSamplePerPrompt"),
    ({"learningRate": 0.01}, "learningRate"),
    ({"epochCount": 51}, "epochCount"),
    ({"evalInterval": 101}, "evalInterval"),
    ({"reasoningEffort": "extreme"}, "reasoningEffort"),
    ({"maxPromptLength": 0}, "maxPromptLength must be a positive number of tokens"),
])
def test_bad_rft_config_values_are_refused(server, role, grader, change, message):
    bedrock = server.client("bedrock", parameter_validation=False)
    with pytest.raises(ClientError) as caught:
        create(bedrock, role, f"bad-{uuid.uuid4().hex[:6]}", grader, **change)
    assert caught.value.response["Error"]["Code"] == "ValidationException"
    assert message in caught.value.response["Error"]["Message"]


def test_rft_requests_refused_at_create(server, bedrock, role, grader):
    def refused(**changes):
        args = dict(jobName=f"r-{uuid.uuid4().hex[:6]}", customModelName=f"m-{uuid.uuid4().hex[:6]}", roleArn=role,
                    baseModelIdentifier=MODEL_ID, customizationType="REINFORCEMENT_FINE_TUNING",
                    customizationConfig={"rftConfig": {"graderConfig": {"lambdaGrader": {"lambdaArn": grader}}}},
                    trainingDataConfig={"s3Uri": f"s3://{BUCKET}/train.jsonl"},
                    outputDataConfig={"s3Uri": f"s3://{BUCKET}/output"})
        args.update(changes)
        with pytest.raises(ClientError) as caught:
            bedrock.create_model_customization_job(**args)
        assert caught.value.response["Error"]["Code"] == "ValidationException"
        return caught.value.response["Error"]["Message"]

    assert "need a grader" in refused(customizationConfig={"rftConfig": {}})
    assert "was not found" in refused(customizationConfig={"rftConfig": {"graderConfig": {"lambdaGrader": {
        "lambdaArn": grader.replace("digits-grader", "no-such-grader")}}}})
    assert "rftConfig.hyperParameters" in refused(hyperParameters={"epochCount": "2"})
    message = refused(trainingDataConfig={"s3Uri": f"s3://{BUCKET}/bad-first/train.jsonl"})
    assert message.startswith("Unable to parse S3 file") and "line 1" in message and "reference_answer" in message
    assert "applies only to REINFORCEMENT_FINE_TUNING" in refused(customizationType="FINE_TUNING")
