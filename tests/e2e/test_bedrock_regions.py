"""Bedrock's resources belong to the region of the request that made them, as on AWS, end to end with boto3
clients of several regions: custom models, deployments, Provisioned Throughputs and the invocation-logging
configuration are listed, read, tagged and served only there, their names are unique per region, their ARNs
name it, and a client token used in another region makes another resource. Foundation models are offered in
every region."""

from __future__ import annotations

import gzip
import json
import os
import random
import subprocess
import sys
import time

import pytest
from botocore.exceptions import ClientError

from jobforge import tinylm

os.environ.setdefault("HF_HUB_OFFLINE", "1")

WEST, EAST, EUROPE = "us-west-2", "us-east-1", "eu-west-1"
ON_DEMAND = "meta.llama3-1-8b-instruct-v1:0"
VARIANT = "meta.llama3-1-8b-instruct-v1:0:128k"  # what Bedrock provisions and customizes
BUCKET = "bedrock-regions"
WORDS = "red green blue north south east west river ocean forest city".split()
QUESTION = [{"role": "user", "content": [{"text": "red ->"}]}]
GREEDY = {"maxTokens": 3, "temperature": 0}


def sentences(n: int, seed: int) -> list[str]:
    rng = random.Random(seed)
    return [" ".join(rng.choice(WORDS) for _ in range(rng.randint(3, 6))) for _ in range(n)]


def error_of(call) -> tuple[str, str]:
    with pytest.raises(ClientError) as err:
        call()
    return err.value.response["Error"]["Code"], err.value.response["Error"]["Message"]


def region_of(arn: str) -> str:
    return arn.split(":")[3]


def wait_until(read, busy: str, timeout: float = 120) -> dict:
    deadline = time.time() + timeout
    while (found := read())["status"] == busy and time.time() < deadline:
        time.sleep(0.3)
    return found


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    return tinylm.build(tmp_path_factory.mktemp("tiny"), sentences(150, 1))


@pytest.fixture(scope="module")
def registered(server, weights):
    for model_id in (ON_DEMAND, VARIANT):
        done = subprocess.run([sys.executable, "-m", "jobforge.cli", "models", "add", model_id, str(weights),
                               "--data-dir", str(server.data_dir)], capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, done.stderr
    s3 = server.client("s3")
    s3.create_bucket(Bucket=BUCKET)
    for path in sorted(weights.iterdir()):
        s3.upload_file(str(path), BUCKET, f"weights/{path.name}")
    s3.put_object(Bucket=BUCKET, Key="train.jsonl", Body="".join(
        json.dumps({"prompt": f"{s} ->", "completion": " " + s.split()[0]}) + "\n" for s in sentences(8, 2)))
    return server


@pytest.fixture(scope="module")
def bedrock(registered):
    return {region: registered.client("bedrock", region=region) for region in (WEST, EAST, EUROPE)}


@pytest.fixture(scope="module")
def runtime(registered):
    return {region: registered.client("bedrock-runtime", region=region) for region in (WEST, EAST, EUROPE)}


def import_model(client, name: str, token: str) -> str:
    return client.create_custom_model(modelName=name, clientRequestToken=token, modelSourceConfig={
        "s3DataSource": {"s3Uri": f"s3://{BUCKET}/weights/"}})["modelArn"]


@pytest.fixture(scope="module")
def models(bedrock) -> dict[str, str]:
    """A custom model named "regional" in us-west-2 and another of that name in us-east-1, made with one token."""
    return {region: import_model(bedrock[region], "regional", "one-token") for region in (WEST, EAST)}


def test_foundation_models_are_offered_in_every_region(bedrock):
    for region, client in bedrock.items():
        arns = {m["modelId"]: m["modelArn"] for m in client.list_foundation_models()["modelSummaries"]}
        assert arns[VARIANT] == f"arn:aws:bedrock:{region}::foundation-model/{VARIANT}"


def test_a_custom_model_lives_in_the_region_it_was_made_in(bedrock, models):
    west, east = models[WEST], models[EAST]
    assert region_of(west) == WEST and region_of(east) == EAST and west != east  # the token did not replay
    assert import_model(bedrock[WEST], "regional", "one-token") == west  # in its own region it does

    def listed(region: str) -> list[str]:
        return [m["modelArn"] for m in bedrock[region].list_custom_models(nameContains="regional")["modelSummaries"]]

    assert listed(WEST) == [west] and listed(EAST) == [east] and listed(EUROPE) == []
    assert bedrock[WEST].get_custom_model(modelIdentifier="regional")["modelArn"] == west
    for identifier in ("regional", west):
        assert error_of(lambda: bedrock[EUROPE].get_custom_model(modelIdentifier=identifier))[0] == \
            "ResourceNotFoundException"
    assert error_of(lambda: bedrock[EAST].get_custom_model(modelIdentifier=west))[0] == "ResourceNotFoundException"
    assert error_of(lambda: bedrock[EUROPE].list_tags_for_resource(resourceARN=west))[0] == \
        "ResourceNotFoundException"
    assert error_of(lambda: bedrock[EUROPE].delete_custom_model(modelIdentifier=west))[0] == \
        "ResourceNotFoundException"
    assert error_of(lambda: import_model(bedrock[WEST], "regional", "another-token"))[0] == "ConflictException"


def test_a_customization_job_reserves_its_model_name_in_its_region_only(bedrock, models, role_arn):
    def customize(region: str, name: str) -> str:
        return bedrock[region].create_model_customization_job(
            jobName=name, customModelName="regional", roleArn=role_arn, baseModelIdentifier=VARIANT,
            trainingDataConfig={"s3Uri": f"s3://{BUCKET}/train.jsonl"},
            outputDataConfig={"s3Uri": f"s3://{BUCKET}/output"}, hyperParameters={"epochCount": "1"})["jobArn"]

    code, message = error_of(lambda: customize(WEST, "west-job"))  # us-west-2 has a model of that name
    assert code == "ConflictException" and "regional" in message
    job = customize(EUROPE, "europe-job")  # eu-west-1 has none
    assert region_of(job) == EUROPE
    assert error_of(lambda: import_model(bedrock[EUROPE], "regional", "europe-token"))[0] == "ConflictException"
    bedrock[EUROPE].stop_model_customization_job(jobIdentifier=job)


def test_a_deployment_serves_only_in_its_region(bedrock, runtime, models):
    deployment = bedrock[WEST].create_custom_model_deployment(
        modelDeploymentName="regional-deployment", modelArn=models[WEST])["customModelDeploymentArn"]
    assert region_of(deployment) == WEST
    # a deployment of the same name in another region, of another region's model: refused, that model is not there
    assert error_of(lambda: bedrock[EUROPE].create_custom_model_deployment(
        modelDeploymentName="regional-deployment", modelArn=models[WEST]))[0] == "ResourceNotFoundException"
    assert error_of(lambda: bedrock[EUROPE].get_custom_model_deployment(
        customModelDeploymentIdentifier=deployment))[0] == "ResourceNotFoundException"
    assert bedrock[EUROPE].list_custom_model_deployments()["modelDeploymentSummaries"] == []
    assert [d["customModelDeploymentArn"] for d in
            bedrock[WEST].list_custom_model_deployments()["modelDeploymentSummaries"]] == [deployment]
    found = wait_until(lambda: bedrock[WEST].get_custom_model_deployment(customModelDeploymentIdentifier=deployment),
                       "Creating")
    assert found["status"] == "Active", found.get("failureMessage")
    served = runtime[WEST].converse(modelId=deployment, messages=QUESTION, inferenceConfig=GREEDY)
    assert served["output"]["message"]["content"][0]["text"]
    by_name = runtime[EAST].converse(modelId="regional", messages=QUESTION, inferenceConfig=GREEDY)
    assert by_name["output"] == served["output"]  # us-east-1's own model of that name, from the same weights
    for model_id in (deployment, "regional-deployment"):
        assert error_of(lambda: runtime[EUROPE].converse(modelId=model_id, messages=QUESTION,
                                                         inferenceConfig=GREEDY)) == \
            ("ValidationException", "The provided model identifier is invalid.")
    assert error_of(lambda: runtime[EUROPE].converse(modelId="regional", messages=QUESTION))[0] == \
        "ValidationException"


def test_a_provisioned_throughput_lives_and_serves_in_its_region(bedrock, runtime):
    def provision(region: str) -> str:
        return bedrock[region].create_provisioned_model_throughput(
            modelUnits=1, provisionedModelName="regional-throughput", modelId=VARIANT,
            clientRequestToken="throughput-token")["provisionedModelArn"]

    west, east = provision(WEST), provision(EAST)  # one name and one token, two regions
    assert region_of(west) == WEST and region_of(east) == EAST and west != east
    assert error_of(lambda: bedrock[WEST].create_provisioned_model_throughput(
        modelUnits=1, provisionedModelName="regional-throughput", modelId=VARIANT))[0] == "ValidationException"

    def listed(region: str) -> list[str]:
        return [p["provisionedModelArn"] for p in
                bedrock[region].list_provisioned_model_throughputs()["provisionedModelSummaries"]]

    assert listed(WEST) == [west] and listed(EAST) == [east] and listed(EUROPE) == []
    for identifier in (west, "regional-throughput"):
        assert error_of(lambda: bedrock[EUROPE].get_provisioned_model_throughput(
            provisionedModelId=identifier))[0] == "ResourceNotFoundException"
    assert error_of(lambda: bedrock[EAST].delete_provisioned_model_throughput(provisionedModelId=west))[0] == \
        "ResourceNotFoundException"
    found = wait_until(lambda: bedrock[WEST].get_provisioned_model_throughput(provisionedModelId=west), "Creating")
    assert found["status"] == "InService", found.get("failureMessage")
    assert runtime[WEST].converse(modelId=west, messages=QUESTION, inferenceConfig=GREEDY)["output"]
    assert error_of(lambda: runtime[EUROPE].converse(modelId=west, messages=QUESTION, inferenceConfig=GREEDY)) == \
        ("ValidationException", "The provided model identifier is invalid.")


def test_invocation_logging_is_configured_per_region(registered, bedrock, runtime):
    s3 = registered.client("s3")
    s3.create_bucket(Bucket="regional-invocation-logs")
    bedrock[WEST].put_model_invocation_logging_configuration(loggingConfig={
        "s3Config": {"bucketName": "regional-invocation-logs"}, "textDataDeliveryEnabled": True})
    assert "loggingConfig" not in bedrock[EAST].get_model_invocation_logging_configuration()
    bedrock[EAST].delete_model_invocation_logging_configuration()  # us-east-1's: us-west-2's stays
    assert bedrock[WEST].get_model_invocation_logging_configuration()["loggingConfig"]["s3Config"] == \
        {"bucketName": "regional-invocation-logs"}
    for region in (EAST, WEST):
        runtime[region].converse(modelId=ON_DEMAND, messages=QUESTION, inferenceConfig=GREEDY)
    keys = [item["Key"] for item in s3.list_objects_v2(Bucket="regional-invocation-logs")["Contents"]]
    assert len(keys) == 1 and f"/BedrockModelInvocationLogs/{WEST}/" in keys[0]
    record = json.loads(gzip.decompress(s3.get_object(Bucket="regional-invocation-logs", Key=keys[0])["Body"].read()))
    assert record["region"] == WEST
