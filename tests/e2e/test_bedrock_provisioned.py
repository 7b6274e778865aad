"""Bedrock Provisioned Throughput and the fidelity AWS's samples and langchain-aws rely on, end to end with boto3
and langchain-aws against the real server: a tiny model built on the spot, fine-tuned for real, provisioned,
loaded in the inference host and served through the Provisioned Throughput's ARN."""

from __future__ import annotations

import datetime
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

ON_DEMAND = "meta.llama3-1-8b-instruct-v1:0"  # what bedrock-runtime is called with
VARIANT = "meta.llama3-1-8b-instruct-v1:0:128k"  # the context-window variant Bedrock customizes and provisions
NOVA = "amazon.nova-micro-v1:0:128k"
BROKEN = "meta.llama3-2-1b-instruct-v1:0:128k"  # registered over a directory that holds no weights
BUCKET = "provisioned-e2e"
WORDS = "red green blue north south east west river ocean forest city one two three four five".split()
GREEDY = {"maxTokens": 5, "temperature": 0}


def sentences(n: int, seed: int) -> list[str]:
    rng = random.Random(seed)
    return [" ".join(rng.choice(WORDS) for _ in range(rng.randint(3, 6))) for _ in range(n)]


def jsonl(records) -> bytes:
    return "".join(json.dumps(r) + "\n" for r in records).encode()


def wait_for(read, until, timeout: float = 180):
    deadline = time.time() + timeout
    while True:
        found = read()
        if found["status"] in until or time.time() > deadline:
            return found
        time.sleep(0.3)


@pytest.fixture(scope="module")
def registered(server, tmp_path_factory):
    model = tinylm.build(tmp_path_factory.mktemp("tiny"), sentences(200, 1) + [f"{s} -> {s.split()[0]}"
                                                                                for s in sentences(50, 2)])
    broken = tmp_path_factory.mktemp("broken")
    (broken / "config.json").write_text((model / "config.json").read_text())
    for model_id, location in ((ON_DEMAND, model), (VARIANT, model), (NOVA, model), (BROKEN, broken)):
        done = subprocess.run([sys.executable, "-m", "jobforge.cli", "models", "add", model_id, str(location),
                               "--data-dir", str(server.data_dir)], capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, done.stderr
    return server


@pytest.fixture(scope="module")
def bedrock(registered):
    return registered.client("bedrock")


@pytest.fixture(scope="module")
def runtime(registered):
    return registered.client("bedrock-runtime")


@pytest.fixture(scope="module")
def s3(registered):
    client = registered.client("s3")
    client.create_bucket(Bucket=BUCKET)
    client.put_object(Bucket=BUCKET, Key="ft/train.jsonl", Body=jsonl(
        {"prompt": f"{s} ->", "completion": " " + s.split()[0]} for s in sentences(24, 3)))
    return client


@pytest.fixture(scope="module")
def custom_models(bedrock, s3, role_arn):
    """Two custom models of the variant: a fine-tuned one and a second customization of it."""
    def customize(name: str, base: str) -> str:
        arn = bedrock.create_model_customization_job(
            jobName=name, customModelName=f"{name}-model", roleArn=role_arn, baseModelIdentifier=base,
            trainingDataConfig={"s3Uri": f"s3://{BUCKET}/ft/train.jsonl"},
            outputDataConfig={"s3Uri": f"s3://{BUCKET}/output"},
            hyperParameters={"epochCount": "1", "learningRate": "0.01", "fullFineTuning": "true"})["jobArn"]
        job = wait_for(lambda: bedrock.get_model_customization_job(jobIdentifier=arn),
                       ("Completed", "Failed", "Stopped"), timeout=300)
        assert job["status"] == "Completed", job.get("failureMessage")
        return job["outputModelArn"]

    first = customize("pt-first", VARIANT)
    return first, customize("pt-second", first)


def get(bedrock, arn: str) -> dict:
    return bedrock.get_provisioned_model_throughput(provisionedModelId=arn)


def test_on_demand_identifiers_are_neither_customized_nor_provisioned(bedrock, s3, role_arn):
    summaries = {m["modelId"]: m for m in bedrock.list_foundation_models()["modelSummaries"]}
    assert summaries[ON_DEMAND]["customizationsSupported"] == []
    assert summaries[ON_DEMAND]["inferenceTypesSupported"] == ["ON_DEMAND"]
    assert summaries[VARIANT]["customizationsSupported"] == ["FINE_TUNING", "DISTILLATION"]
    assert summaries[VARIANT]["inferenceTypesSupported"] == ["ON_DEMAND", "PROVISIONED"]
    for base in (ON_DEMAND, f"arn:aws:bedrock:us-east-1::foundation-model/{ON_DEMAND}"):
        with pytest.raises(ClientError) as err:
            bedrock.create_model_customization_job(
                jobName="on-demand-job", customModelName="on-demand-model", roleArn=role_arn,
                baseModelIdentifier=base, trainingDataConfig={"s3Uri": f"s3://{BUCKET}/ft/train.jsonl"},
                outputDataConfig={"s3Uri": f"s3://{BUCKET}/output"})
        assert err.value.response["Error"] == {"Code": "ValidationException",
                                               "Message": "The provided model identifier is invalid."}
    with pytest.raises(ClientError) as err:
        bedrock.create_provisioned_model_throughput(modelUnits=1, provisionedModelName="on-demand",
                                                    modelId=ON_DEMAND)
    assert err.value.response["Error"]["Message"] == "The provided model identifier is invalid."


def test_aws_samples_nova_job_is_accepted(bedrock, s3, role_arn):
    """AWS's Nova tool-use sample: its dataset's schemaVersion, and the batchSize its notebooks send."""
    turns = [{"schemaVersion": "tooluse-dataset-2024", "system": [{"text": "pick a tool"}], "messages": [
        {"role": "user", "content": [{"text": f"weather in {s}?"}]},
        {"role": "assistant", "content": [{"text": "weather_api"}]}]} for s in sentences(8, 4)]
    s3.put_object(Bucket=BUCKET, Key="nova/tooluse.jsonl", Body=jsonl(turns))
    arn = bedrock.create_model_customization_job(
        jobName="nova-tooluse", customModelName="nova-tooluse-model", roleArn=role_arn, baseModelIdentifier=NOVA,
        trainingDataConfig={"s3Uri": f"s3://{BUCKET}/nova/tooluse.jsonl"},
        outputDataConfig={"s3Uri": f"s3://{BUCKET}/output"},
        hyperParameters={"epochCount": "1", "batchSize": "1", "learningRate": "0.00001",
                         "learningRateWarmupSteps": "5"})["jobArn"]
    bedrock.stop_model_customization_job(jobIdentifier=arn)  # accepted is what this shows; no need to train
    assert wait_for(lambda: bedrock.get_model_customization_job(jobIdentifier=arn),
                    ("Stopped", "Completed", "Failed"))["status"] in ("Stopped", "Completed")


def test_provisioned_custom_model_serves_every_runtime_call(bedrock, runtime, custom_models):
    first, second = custom_models
    arn = bedrock.create_provisioned_model_throughput(
        modelUnits=1, provisionedModelName="pt-custom", modelId=first, clientRequestToken="pt-custom-1",
        tags=[{"key": "team", "value": "e2e"}])["provisionedModelArn"]
    assert arn.startswith("arn:aws:bedrock:us-east-1:") and ":provisioned-model/" in arn
    assert bedrock.create_provisioned_model_throughput(
        modelUnits=1, provisionedModelName="pt-custom", modelId=first, clientRequestToken="pt-custom-1",
        tags=[{"key": "team", "value": "e2e"}])["provisionedModelArn"] == arn
    assert get(bedrock, arn)["status"] in ("Creating", "InService")
    provisioned = wait_for(lambda: get(bedrock, "pt-custom"), ("InService", "Failed"))
    assert provisioned["status"] == "InService", provisioned.get("failureMessage")
    assert provisioned["modelArn"] == provisioned["desiredModelArn"] == first
    assert provisioned["foundationModelArn"] == f"arn:aws:bedrock:us-east-1::foundation-model/{VARIANT}"
    assert provisioned["modelUnits"] == provisioned["desiredModelUnits"] == 1
    assert "commitmentDuration" not in provisioned and "commitmentExpirationTime" not in provisioned
    assert bedrock.list_tags_for_resource(resourceARN=arn)["tags"] == [{"key": "team", "value": "e2e"}]

    question = [{"role": "user", "content": [{"text": "red ocean ->"}]}]
    by_name = runtime.converse(modelId="pt-first-model", messages=question, inferenceConfig=GREEDY)
    answer = runtime.converse(modelId=arn, messages=question, inferenceConfig=GREEDY)
    assert answer["output"] == by_name["output"] and answer["usage"] == by_name["usage"]
    streamed = list(runtime.converse_stream(modelId=arn, messages=question, inferenceConfig=GREEDY)["stream"])
    assert "".join(e["contentBlockDelta"]["delta"]["text"] for e in streamed if "contentBlockDelta" in e) == \
        answer["output"]["message"]["content"][0]["text"]
    body = json.dumps({"prompt": "red ocean ->", "max_gen_len": 5, "temperature": 0})
    invoked = runtime.invoke_model(modelId=arn, body=body)
    whole = json.loads(invoked["body"].read())
    headers = invoked["ResponseMetadata"]["HTTPHeaders"]
    assert int(headers["x-amzn-bedrock-input-token-count"]) == whole["prompt_token_count"]
    assert int(headers["x-amzn-bedrock-output-token-count"]) == whole["generation_token_count"]
    assert int(headers["x-amzn-bedrock-invocation-latency"]) >= 0
    chunks = [json.loads(e["chunk"]["bytes"]) for e in runtime.invoke_model_with_response_stream(
        modelId=arn, body=body)["body"]]
    assert "".join(c["generation"] for c in chunks) == whole["generation"]
    metrics = chunks[-1]["amazon-bedrock-invocationMetrics"]
    assert (metrics["inputTokenCount"], metrics["outputTokenCount"]) == (whole["prompt_token_count"],
                                                                         whole["generation_token_count"])

    # A custom model's Provisioned Throughput moves to another custom model of the same base model.
    with pytest.raises(ClientError) as err:
        bedrock.update_provisioned_model_throughput(provisionedModelId=arn, desiredModelId=ON_DEMAND)
    assert err.value.response["Error"]["Code"] == "ValidationException"
    bedrock.update_provisioned_model_throughput(provisionedModelId=arn, desiredModelId=second,
                                                desiredProvisionedModelName="pt-moved")
    moving = get(bedrock, arn)
    assert moving["provisionedModelName"] == "pt-moved" and moving["desiredModelArn"] == second
    if moving["status"] == "Updating":
        assert moving["modelArn"] == first
        runtime.converse(modelId=arn, messages=question, inferenceConfig=GREEDY)  # the earlier model still serves
    moved = wait_for(lambda: get(bedrock, arn), ("InService", "Failed"))
    assert moved["status"] == "InService" and moved["modelArn"] == second
    assert runtime.converse(modelId=arn, messages=question, inferenceConfig=GREEDY)["output"] == \
        runtime.converse(modelId="pt-second-model", messages=question, inferenceConfig=GREEDY)["output"]

    with pytest.raises(ClientError) as err:
        bedrock.delete_custom_model(modelIdentifier=second)
    assert err.value.response["Error"]["Code"] == "ConflictException"
    assert "pt-moved" in err.value.response["Error"]["Message"]
    bedrock.delete_provisioned_model_throughput(provisionedModelId="pt-moved")
    with pytest.raises(ClientError) as err:
        get(bedrock, arn)
    assert err.value.response["Error"]["Code"] == "ResourceNotFoundException"
    with pytest.raises(ClientError) as err:
        runtime.converse(modelId=arn, messages=question)
    assert err.value.response["Error"]["Code"] == "ValidationException"


def test_base_model_commitment_and_failure(bedrock, runtime, custom_models):
    arn = bedrock.create_provisioned_model_throughput(modelUnits=2, provisionedModelName="pt-base",
                                                      modelId=VARIANT, commitmentDuration="OneMonth")[
        "provisionedModelArn"]
    provisioned = wait_for(lambda: get(bedrock, arn), ("InService", "Failed"))
    assert provisioned["status"] == "InService" and provisioned["modelUnits"] == 2
    assert provisioned["modelArn"] == provisioned["foundationModelArn"]
    term = provisioned["commitmentExpirationTime"] - provisioned["creationTime"]
    assert provisioned["commitmentDuration"] == "OneMonth" and term.days == 30
    answer = runtime.converse(modelId=arn, messages=[{"role": "user", "content": [{"text": "blue ->"}]}],
                              inferenceConfig=GREEDY)
    assert answer["output"] == runtime.converse(modelId=VARIANT, messages=[
        {"role": "user", "content": [{"text": "blue ->"}]}], inferenceConfig=GREEDY)["output"]
    with pytest.raises(ClientError) as err:
        bedrock.update_provisioned_model_throughput(provisionedModelId=arn, desiredModelId=custom_models[0])
    assert err.value.response["Error"]["Code"] == "ValidationException"  # only a custom model's moves
    with pytest.raises(ClientError) as err:
        bedrock.delete_provisioned_model_throughput(provisionedModelId=arn)
    assert err.value.response["Error"]["Code"] == "ConflictException"
    assert "commitment" in err.value.response["Error"]["Message"]

    broken = bedrock.create_provisioned_model_throughput(modelUnits=1, provisionedModelName="pt-broken",
                                                         modelId=BROKEN)["provisionedModelArn"]
    failed = wait_for(lambda: get(bedrock, broken), ("InService", "Failed"))
    assert failed["status"] == "Failed" and failed["failureMessage"]
    with pytest.raises(ClientError) as err:
        runtime.converse(modelId=broken, messages=[{"role": "user", "content": [{"text": "blue ->"}]}])
    assert err.value.response["Error"]["Message"] == "Provisioned Throughput pt-broken is Failed, not InService."
    bedrock.delete_provisioned_model_throughput(provisionedModelId=broken)


def test_list_filters_sorts_and_pages(bedrock, custom_models):
    made = [bedrock.create_provisioned_model_throughput(modelUnits=1, provisionedModelName=f"pt-list-{i}",
                                                        modelId=custom_models[0])["provisionedModelArn"]
            for i in range(3)]
    for arn in made:
        wait_for(lambda arn=arn: get(bedrock, arn), ("InService", "Failed"))
    pages = list(bedrock.get_paginator("list_provisioned_model_throughputs").paginate(
        nameContains="pt-list", PaginationConfig={"PageSize": 1}))
    assert len(pages) == 3 and [s["provisionedModelArn"] for p in pages
                                for s in p["provisionedModelSummaries"]] == made[::-1]
    ascending = bedrock.list_provisioned_model_throughputs(nameContains="pt-list", sortBy="CreationTime",
                                                           sortOrder="Ascending")["provisionedModelSummaries"]
    assert [s["provisionedModelName"] for s in ascending] == ["pt-list-0", "pt-list-1", "pt-list-2"]
    summary = ascending[0]
    assert summary["status"] == "InService" and summary["modelArn"] == custom_models[0]
    assert summary["foundationModelArn"] == f"arn:aws:bedrock:us-east-1::foundation-model/{VARIANT}"
    by_model = bedrock.list_provisioned_model_throughputs(modelArnEquals=custom_models[0])
    assert {s["provisionedModelArn"] for s in by_model["provisionedModelSummaries"]} == set(made)
    in_service = bedrock.list_provisioned_model_throughputs(statusEquals="InService", nameContains="pt-list")
    assert len(in_service["provisionedModelSummaries"]) == 3
    assert bedrock.list_provisioned_model_throughputs(statusEquals="Creating", nameContains="pt-list")[
        "provisionedModelSummaries"] == []
    second_created = ascending[1]["creationTime"] - datetime.timedelta(milliseconds=1)  # times come rounded to ms
    after = bedrock.list_provisioned_model_throughputs(nameContains="pt-list", creationTimeAfter=second_created)
    assert {s["provisionedModelArn"] for s in after["provisionedModelSummaries"]} == set(made[1:])
    before = bedrock.list_provisioned_model_throughputs(nameContains="pt-list", creationTimeBefore=second_created)
    assert [s["provisionedModelArn"] for s in before["provisionedModelSummaries"]] == made[:1]
    with pytest.raises(ClientError) as err:
        bedrock.list_provisioned_model_throughputs(nextToken=pages[0]["nextToken"])  # other filters
    assert err.value.response["Error"]["Code"] == "ValidationException"
    with pytest.raises(ClientError) as err:
        bedrock.create_provisioned_model_throughput(modelUnits=1, provisionedModelName="pt-list-0",
                                                    modelId=custom_models[0])
    assert err.value.response["Error"]["Code"] == "ValidationException"
    for arn in made:
        bedrock.delete_provisioned_model_throughput(provisionedModelId=arn)


def test_deployment_is_creating_while_its_model_loads(bedrock, runtime, custom_models):
    arn = bedrock.create_custom_model_deployment(modelDeploymentName="loading", modelArn=custom_models[0])[
        "customModelDeploymentArn"]
    assert bedrock.get_custom_model_deployment(customModelDeploymentIdentifier=arn)["status"] in ("Creating",
                                                                                                  "Active")
    deployment = wait_for(lambda: bedrock.get_custom_model_deployment(customModelDeploymentIdentifier=arn),
                          ("Active", "Failed"))
    assert deployment["status"] == "Active"
    runtime.converse(modelId=arn, messages=[{"role": "user", "content": [{"text": "red ->"}]}],
                     inferenceConfig=GREEDY)
    bedrock.delete_custom_model_deployment(customModelDeploymentIdentifier=arn)


@pytest.mark.parametrize("content, message", [
    ([], "The content field in the Message object at messages.0 is empty. Add a ContentBlock object to the "
         "content field and try again."),
    ([{"text": "red"}, {"text": "  "}], "The text field in the ContentBlock object at messages.0.content.1 is "
                                         "blank. Add text to the text field, and try again."),
])
def test_converse_refuses_blank_text_and_empty_content(runtime, registered, content, message):
    with pytest.raises(ClientError) as err:
        runtime.converse(modelId=ON_DEMAND, messages=[{"role": "user", "content": content}])
    assert err.value.response["Error"] == {"Code": "ValidationException", "Message": message}


def test_langchain_reads_usage_from_jobforge(runtime, custom_models, bedrock):
    from langchain_aws import ChatBedrock, ChatBedrockConverse

    arn = bedrock.create_provisioned_model_throughput(modelUnits=1, provisionedModelName="pt-langchain",
                                                      modelId=custom_models[0])["provisionedModelArn"]
    assert wait_for(lambda: get(bedrock, arn), ("InService", "Failed"))["status"] == "InService"
    for model_id in (ON_DEMAND, arn):
        chat = ChatBedrock(model_id=model_id, provider="meta", client=runtime,
                           model_kwargs={"max_gen_len": 4, "temperature": 0})
        reply = chat.invoke("red ocean ->")
        usage = reply.usage_metadata
        assert usage["input_tokens"] > 0 and 0 < usage["output_tokens"] <= 4
        assert usage["total_tokens"] == usage["input_tokens"] + usage["output_tokens"]
        converse = ChatBedrockConverse(model=model_id, provider="meta", client=runtime, max_tokens=4,
                                       temperature=0)
        answer = converse.invoke("red ocean ->")
        assert 0 < answer.usage_metadata["output_tokens"] <= 4 and answer.usage_metadata["input_tokens"] > 0
    bedrock.delete_provisioned_model_throughput(provisionedModelId=arn)
