"""Bedrock model customization end to end through boto3 against the real
server: tiny models built on the spot, datasets uploaded to jobforge's S3,
real training, Bedrock's metric files, custom models used with Converse."""

from __future__ import annotations

import csv
import io
import json
import os
import random
import subprocess
import sys
import time

import pytest
from botocore.exceptions import ClientError

from jobforge import tinylm
from jobforge.testing_server import ServerProcess

os.environ.setdefault("HF_HUB_OFFLINE", "1")

LLAMA31 = "meta.llama3-1-8b-instruct-v1:0"  # on-demand: bedrock-runtime's id, the distillation teacher
LLAMA31_FT = "meta.llama3-1-8b-instruct-v1:0:128k"  # its context-window variant: prompt/completion fine-tuning
LLAMA32 = "meta.llama3-2-1b-instruct-v1:0:128k"  # conversation format, distillation student
TITAN = "amazon.titan-text-lite-v1:0:4k"  # continued pre-training
BUCKET = "bedrock-e2e"
WORDS = ("red green blue north south east west river ocean forest city one two three four five six seven "
         "eight nine ten alpha bravo delta").split()
FAST = {"epochCount": "2", "batchSize": "1", "learningRate": "0.003", "fullFineTuning": "true"}


def sentences(n: int, seed: int) -> list[str]:
    rng = random.Random(seed)
    return [" ".join(rng.choice(WORDS) for _ in range(rng.randint(3, 7))) for _ in range(n)]


def prompt_completion(n: int, seed: int = 0) -> list[dict]:
    """A learnable task: the completion repeats the prompt's first two words."""
    return [{"prompt": f"{s} ->", "completion": " " + " ".join(s.split()[:2])} for s in sentences(n, seed)]


def jsonl(records) -> bytes:
    return "".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in records).encode()


def wait(bedrock, arn: str, until=("Completed", "Failed", "Stopped"), timeout: float = 240) -> dict:
    deadline = time.time() + timeout
    while time.time() < deadline:
        job = bedrock.get_model_customization_job(jobIdentifier=arn)
        if job["status"] in until:
            return job
        time.sleep(0.5)
    raise AssertionError(f"{arn} still {job['status']}: {job.get('statusDetails')}")


def wait_deployment(bedrock, arn: str, timeout: float = 120) -> dict:
    """A deployment once its model is loaded (Creating until then)."""
    deadline = time.time() + timeout
    while (found := bedrock.get_custom_model_deployment(customModelDeploymentIdentifier=arn))["status"] == \
            "Creating" and time.time() < deadline:
        time.sleep(0.3)
    return found


def read_csv(s3, key: str) -> list[dict]:
    return list(csv.DictReader(io.StringIO(s3.get_object(Bucket=BUCKET, Key=key)["Body"].read().decode())))


def cli(data_dir, *args) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "jobforge.cli", "--data-dir", str(data_dir), *args],
                          capture_output=True, text=True, timeout=60)


@pytest.fixture(scope="module")
def base_model(tmp_path_factory):
    return tinylm.build(tmp_path_factory.mktemp("tiny-llama"), sentences(300, 9) + [
        r["prompt"] + r["completion"] for r in prompt_completion(100, 8)])


@pytest.fixture(scope="module")
def registered(server, base_model):
    for model_id in (LLAMA31, LLAMA31_FT, LLAMA32, TITAN):
        done = subprocess.run([sys.executable, "-m", "jobforge.cli", "models", "add", model_id, str(base_model),
                               "--data-dir", str(server.data_dir)], capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, done.stderr  # the spelling, while the server runs
    return server


@pytest.fixture(scope="module")
def bedrock(registered):
    return registered.client("bedrock")


@pytest.fixture(scope="module")
def s3(registered):
    client = registered.client("s3")
    client.create_bucket(Bucket=BUCKET)
    put = lambda key, records: client.put_object(Bucket=BUCKET, Key=key, Body=jsonl(records))  # noqa: E731
    put("ft/train.jsonl", prompt_completion(48))
    put("ft/validation.jsonl", prompt_completion(8, seed=1))
    put("cpt/train.jsonl", [{"input": s} for s in sentences(40, 2)])
    put("distill/prompts.jsonl", [{"schemaVersion": "bedrock-conversation-2024",
                                   "messages": [{"role": "user", "content": [{"text": s + " ->"}]}]}
                                  for s in sentences(12, 3)])
    bad = prompt_completion(6, seed=4)
    bad[2] = {"prompt": "no completion here"}
    bad[4] = "{not json"
    put("bad/train.jsonl", bad)
    put("bad-first/train.jsonl", [{"text": "wrong keys"}] + prompt_completion(3))
    put("long/train.jsonl", prompt_completion(200, seed=5))
    return client


def create(bedrock, role_arn, name, base=LLAMA31_FT, train="ft/train.jsonl", **extra):
    args = dict(jobName=name, customModelName=f"{name}-model", roleArn=role_arn, baseModelIdentifier=base,
                trainingDataConfig={"s3Uri": f"s3://{BUCKET}/{train}"},
                outputDataConfig={"s3Uri": f"s3://{BUCKET}/output"}, hyperParameters=dict(FAST))
    args.update(extra)
    return bedrock.create_model_customization_job(**args)["jobArn"]


@pytest.fixture(scope="module")
def started(bedrock, s3, role_arn):
    """Every job of the module, created at once so they train side by side."""
    return {
        "ft": create(bedrock, role_arn, "ft-job", clientRequestToken="ft-token-1",
                     validationDataConfig={"validators": [{"s3Uri": f"s3://{BUCKET}/ft/validation.jsonl"}]},
                     jobTags=[{"key": "team", "value": "e2e"}]),
        "bad": create(bedrock, role_arn, "bad-data-job", train="bad/train.jsonl"),
        "cpt": create(bedrock, role_arn, "cpt-job", base=TITAN, train="cpt/train.jsonl",
                      customizationType="CONTINUED_PRE_TRAINING",
                      hyperParameters={"epochCount": "2", "batchSize": "4", "learningRate": "0.01"}),
        "distill": create(bedrock, role_arn, "distill-job", base=LLAMA32, train="distill/prompts.jsonl",
                          customizationType="DISTILLATION",
                          hyperParameters={"epochCount": "4", "learningRate": "0.003", "fullFineTuning": "true"},
                          customizationConfig={"distillationConfig": {"teacherModelConfig": {
                              "teacherModelIdentifier": LLAMA31, "maxResponseLengthForInference": 8}}}),
    }


def test_catalog_lists_registered_models_with_their_customizations(bedrock, registered):
    summaries = {m["modelId"]: m for m in bedrock.list_foundation_models()["modelSummaries"]}
    assert summaries[LLAMA31_FT]["customizationsSupported"] == ["FINE_TUNING", "DISTILLATION"]
    assert summaries[LLAMA31]["customizationsSupported"] == []  # as on Bedrock: on demand only
    assert summaries[TITAN]["customizationsSupported"] == ["FINE_TUNING", "CONTINUED_PRE_TRAINING"]
    assert summaries[LLAMA31]["modelArn"] == f"arn:aws:bedrock:us-east-1::foundation-model/{LLAMA31}"
    cpt = bedrock.list_foundation_models(byCustomizationType="CONTINUED_PRE_TRAINING")["modelSummaries"]
    assert [m["modelId"] for m in cpt] == [TITAN]
    assert bedrock.get_foundation_model(modelIdentifier=summaries[TITAN]["modelArn"])["modelDetails"]["modelId"] \
        == TITAN
    with pytest.raises(ClientError) as err:
        bedrock.get_foundation_model(modelIdentifier="meta.llama3-2-3b-instruct-v1:0")
    assert err.value.response["Error"]["Code"] == "ResourceNotFoundException"
    assert "jobforge models add meta.llama3-2-3b-instruct-v1:0" in err.value.response["Error"]["Message"]
    assert "not a Bedrock model identifier" in cli(registered.data_dir, "models", "add", "Bad_Id", ".").stderr


@pytest.mark.parametrize("change, message", [
    ({"hyperParameters": {"epochCount": "11"}}, "epochCount value 11 is out of range. Valid range: [1, 10]"),
    ({"hyperParameters": {"learningRate": "1"}}, "learningRate value 1 is out of range"),
    ({"hyperParameters": {"batchSize": "2"}}, "batchSize value 2 is out of range. Valid range: [1, 1]"),
    ({"hyperParameters": {"warmup": "3"}}, "warmup are not supported for base model"),
    ({"customizationType": "REINFORCEMENT_FINE_TUNING"}, "REINFORCEMENT_FINE_TUNING jobs need a grader"),
    ({"customizationType": "CONTINUED_PRE_TRAINING"}, "does not support customization type CONTINUED_PRE_TRAINING"),
    ({"baseModelIdentifier": "amazon.nova-lite-v1:0:300k"}, "jobforge models add amazon.nova-lite-v1:0:300k"),
    ({"trainingDataConfig": {"s3Uri": f"s3://{BUCKET}/ft/train.json"}}, "Input data must be in .jsonl format"),
    ({"trainingDataConfig": {"s3Uri": f"s3://{BUCKET}/missing.jsonl"}}, "The object does not exist"),
    ({"trainingDataConfig": {"s3Uri": f"s3://{BUCKET}/bad-first/train.jsonl"}}, "Unable to parse S3 file"),
    ({"roleArn": "arn:aws:iam::123456789012:role/Other"}, "Could not assume provided IAM role."),
    ({"trainingDataConfig": {"s3Uri": "s3://Bad_Bucket/x.jsonl"}}, "Member must satisfy regular expression"),
    ({"outputDataConfig": {"s3Uri": "s3://no-such-output-bucket/out"}},
     "Provided S3 location is invalid: s3://no-such-output-bucket/out. The bucket no-such-output-bucket does not "
     "exist."),
    ({"trainingDataConfig": {"s3Uri": f"s3://{BUCKET}/ft/train.jsonl", "invocationLogsConfig": {
        "invocationLogSource": {"s3Uri": f"s3://{BUCKET}/logs/"}}}}, "either s3Uri or invocationLogsConfig, not both"),
])
def test_create_validates_synchronously(bedrock, s3, role_arn, change, message):
    with pytest.raises(ClientError) as err:
        create(bedrock, role_arn, "rejected-job", **change)
    assert err.value.response["Error"]["Code"] == "ValidationException"
    assert err.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400
    assert message in err.value.response["Error"]["Message"]


def test_fine_tuning_trains_registers_the_model_and_serves_it(bedrock, s3, started, role_arn, registered):
    arn = started["ft"]
    assert arn.startswith("arn:aws:bedrock:us-east-1:") and f":model-customization-job/{LLAMA31_FT}/" in arn
    # The same token and parameters return the same job; other parameters are a conflict.
    assert create(bedrock, role_arn, "ft-job", clientRequestToken="ft-token-1",
                  validationDataConfig={"validators": [{"s3Uri": f"s3://{BUCKET}/ft/validation.jsonl"}]},
                  jobTags=[{"key": "team", "value": "e2e"}]) == arn
    with pytest.raises(ClientError) as err:
        create(bedrock, role_arn, "ft-job-2", clientRequestToken="ft-token-1")
    assert err.value.response["Error"]["Code"] == "ConflictException"
    with pytest.raises(ClientError) as err:
        create(bedrock, role_arn, "ft-job")
    assert err.value.response["Error"]["Code"] == "ConflictException"

    job = wait(bedrock, arn)
    assert job["status"] == "Completed", job.get("failureMessage")
    details = job["statusDetails"]
    assert details["validationDetails"]["status"] == details["trainingDetails"]["status"] == "Completed"
    assert "dataProcessingDetails" not in details
    job_id = arn.rsplit("/", 1)[1]
    prefix = f"output/model-customization-job-{job_id}/"
    rows = read_csv(s3, prefix + "training_artifacts/step_wise_training_metrics.csv")
    assert list(rows[0]) == ["step_number", "epoch_number", "training_loss", "perplexity"]
    losses = [float(r["training_loss"]) for r in rows]
    assert sum(losses[-10:]) / 10 < sum(losses[:10]) / 10 - 0.5
    assert job["trainingMetrics"]["trainingLoss"] == pytest.approx(losses[-1])
    validation = read_csv(s3, prefix + "validation_artifacts/post_fine_tuning_validation/validation/"
                          "validation_metrics.csv")
    assert job["validationMetrics"] == [{"validationLoss": pytest.approx(float(validation[-1]["validation_loss"]))}]

    model = bedrock.get_custom_model(modelIdentifier=job["outputModelArn"])
    assert model["modelArn"] == job["outputModelArn"] and model["modelName"] == "ft-job-model"
    assert model["jobArn"] == arn and model["modelStatus"] == "Active"
    assert model["baseModelArn"] == job["baseModelArn"]
    listed = bedrock.list_custom_models(nameContains="ft-job")["modelSummaries"]
    assert [m["modelArn"] for m in listed] == [job["outputModelArn"]]
    assert bedrock.list_tags_for_resource(resourceARN=arn)["tags"] == [{"key": "team", "value": "e2e"}]

    summaries = bedrock.list_model_customization_jobs(statusEquals="Completed", nameContains="ft-")
    assert [s["jobArn"] for s in summaries["modelCustomizationJobSummaries"]] == [arn]
    assert summaries["modelCustomizationJobSummaries"][0]["customModelArn"] == job["outputModelArn"]

    # Serve it: a deployment ARN is the modelId, as on Bedrock.
    deployment = bedrock.create_custom_model_deployment(modelDeploymentName="ft-deployment",
                                                        modelArn=job["outputModelArn"])["customModelDeploymentArn"]
    assert wait_deployment(bedrock, deployment)["status"] == "Active"
    runtime = registered.client("bedrock-runtime")
    question = {"role": "user", "content": [{"text": "red ocean five city ->"}]}
    greedy = {"maxTokens": 6, "temperature": 0}
    tuned = runtime.converse(modelId=deployment, messages=[question], inferenceConfig=greedy)
    base = runtime.converse(modelId=LLAMA31, messages=[question], inferenceConfig=greedy)
    text = tuned["output"]["message"]["content"][0]["text"]
    assert text != base["output"]["message"]["content"][0]["text"]
    # The answer is what the trained weights in S3 generate.
    local = registered.data_dir.parent / "downloaded-model"
    for item in s3.list_objects_v2(Bucket=BUCKET, Prefix=prefix + "custom-model/")["Contents"]:
        relative = item["Key"][len(prefix + "custom-model/"):]
        if not relative.startswith("adapter/"):
            (local / relative).parent.mkdir(parents=True, exist_ok=True)
            s3.download_file(BUCKET, item["Key"], str(local / relative))
    from jobforge.workloads.customize.generate import generate

    expected, *_ = generate(local, messages=[{"role": "user", "content": "red ocean five city ->"}],
                            max_tokens=6, temperature=0)
    assert text == expected
    streamed = runtime.converse_stream(modelId=deployment, messages=[question], inferenceConfig=greedy)["stream"]
    events = list(streamed)
    assert "".join(e["contentBlockDelta"]["delta"]["text"] for e in events if "contentBlockDelta" in e) == text
    assert events[-1]["metadata"]["usage"]["outputTokens"] == tuned["usage"]["outputTokens"]

    with pytest.raises(ClientError) as err:
        bedrock.delete_custom_model(modelIdentifier=job["outputModelArn"])
    assert err.value.response["Error"]["Code"] == "ConflictException"  # still deployed
    bedrock.delete_custom_model_deployment(customModelDeploymentIdentifier=deployment)
    bedrock.delete_custom_model(modelIdentifier=job["outputModelArn"])
    assert bedrock.list_custom_models(nameContains="ft-job")["modelSummaries"] == []
    assert bedrock.get_model_customization_job(jobIdentifier=arn)["outputModelArn"] == job["outputModelArn"]
    with pytest.raises(ClientError) as err:
        bedrock.get_custom_model(modelIdentifier=job["outputModelArn"])
    assert err.value.response["Error"]["Code"] == "ResourceNotFoundException"


def test_bad_records_fail_validation_with_line_numbers(bedrock, started):
    job = wait(bedrock, started["bad"])
    assert job["status"] == "Failed"
    assert "Line 3:" in job["failureMessage"] and "Line 5:" in job["failureMessage"]
    assert job["statusDetails"]["validationDetails"]["status"] == "Failed"
    assert job["statusDetails"]["trainingDetails"]["status"] == "NotStarted"
    assert "outputModelArn" not in job
    with pytest.raises(ClientError) as err:
        bedrock.stop_model_customization_job(jobIdentifier="bad-data-job")
    assert err.value.response["Error"]["Code"] == "ConflictException"


def test_continued_pre_training(bedrock, s3, started):
    job = wait(bedrock, started["cpt"])
    assert job["status"] == "Completed", job.get("failureMessage")
    assert job["customizationType"] == "CONTINUED_PRE_TRAINING"
    rows = read_csv(s3, f"output/model-customization-job-{started['cpt'].rsplit('/', 1)[1]}/training_artifacts/"
                    "step_wise_training_metrics.csv")
    assert float(rows[-1]["training_loss"]) < float(rows[0]["training_loss"])


def test_distillation_teacher_answers_then_student_trains(bedrock, s3, started):
    job = wait(bedrock, started["distill"])
    assert job["status"] == "Completed", job.get("failureMessage")
    details = job["statusDetails"]
    assert details["dataProcessingDetails"]["status"] == "Completed"
    teacher = job["customizationConfig"]["distillationConfig"]["teacherModelConfig"]
    assert teacher == {"teacherModelIdentifier": LLAMA31, "maxResponseLengthForInference": 8}
    prefix = f"output/model-customization-job-{started['distill'].rsplit('/', 1)[1]}/"
    synthetic = s3.get_object(Bucket=BUCKET, Key=prefix + "distillation_artifacts/synthetic_data.jsonl")
    assert len(synthetic["Body"].read().decode().splitlines()) > 0
    losses = [float(r["training_loss"]) for r in read_csv(s3, prefix + "training_artifacts/"
                                                          "step_wise_training_metrics.csv")]
    assert sum(losses[-5:]) < sum(losses[:5])


def test_stop_leaves_no_custom_model(bedrock, s3, started, role_arn):
    arn = create(bedrock, role_arn, "stop-job", train="long/train.jsonl",
                 hyperParameters={"epochCount": "10", "learningRate": "0.001"})
    deadline = time.time() + 120
    while "trainingMetrics" not in bedrock.get_model_customization_job(jobIdentifier=arn):
        assert time.time() < deadline
        time.sleep(0.5)
    bedrock.stop_model_customization_job(jobIdentifier=arn)
    assert bedrock.get_model_customization_job(jobIdentifier=arn)["status"] in ("Stopping", "Stopped")
    job = wait(bedrock, arn)
    assert job["status"] == "Stopped" and "outputModelArn" not in job
    assert job["statusDetails"]["trainingDetails"]["status"] == "Stopped"
    assert bedrock.list_custom_models(nameContains="stop-job")["modelSummaries"] == []
    with pytest.raises(ClientError) as err:
        bedrock.stop_model_customization_job(jobIdentifier=arn)
    assert err.value.response["Error"]["Code"] == "ConflictException"


def test_server_killed_mid_training_resumes_from_checkpoint(tmp_path, base_model):
    data_dir = tmp_path / "data"
    server = ServerProcess(data_dir).start()
    try:
        assert cli(data_dir, "models", "add", LLAMA31_FT, str(base_model)).returncode == 0
        s3 = server.client("s3")
        s3.create_bucket(Bucket=BUCKET)
        s3.put_object(Bucket=BUCKET, Key="train.jsonl", Body=jsonl(prompt_completion(120, seed=6)))
        account = server.client("sts").get_caller_identity()["Account"]
        bedrock = server.client("bedrock")
        arn = bedrock.create_model_customization_job(
            jobName="resume-job", customModelName="resumed",
            roleArn=f"arn:aws:iam::{account}:role/JobforgeExecutionRole",
            baseModelIdentifier=LLAMA31_FT, trainingDataConfig={"s3Uri": f"s3://{BUCKET}/train.jsonl"},
            outputDataConfig={"s3Uri": f"s3://{BUCKET}/output"},
            hyperParameters={"epochCount": "2", "learningRate": "0.01", "checkpointInterval": "20"})["jobArn"]
        logs = lambda: cli(data_dir, "jobs", "logs", arn).stdout  # noqa: E731
        deadline = time.time() + 120
        while "Checkpoint saved at step" not in logs():
            assert time.time() < deadline, logs()
            time.sleep(0.5)
        server.kill()
        server = ServerProcess(data_dir, port=server.port).start()
        bedrock = server.client("bedrock")
        job = wait(bedrock, arn)
        assert job["status"] == "Completed", job.get("failureMessage")
        assert "Resumed from the checkpoint at step" in logs()
        assert bedrock.get_custom_model(modelIdentifier="resumed")["modelArn"] == job["outputModelArn"]
    finally:
        server.stop()


def test_list_jobs_filters_sorts_and_pages(bedrock, started):
    names = {"ft-job", "bad-data-job", "cpt-job", "distill-job"}
    paginator = bedrock.get_paginator("list_model_customization_jobs")
    pages = list(paginator.paginate(PaginationConfig={"PageSize": 1}))
    paged = [s["jobName"] for p in pages for s in p["modelCustomizationJobSummaries"]]
    assert names <= set(paged) and len(paged) == len(set(paged))
    ascending = [s["jobName"] for s in bedrock.list_model_customization_jobs(
        sortBy="CreationTime", sortOrder="Ascending", maxResults=1000)["modelCustomizationJobSummaries"]]
    assert ascending == paged[::-1]
    summary = next(s for p in pages for s in p["modelCustomizationJobSummaries"] if s["jobName"] == "cpt-job")
    assert summary["customizationType"] == "CONTINUED_PRE_TRAINING" and summary["customModelName"] == "cpt-job-model"
    assert bedrock.list_model_customization_jobs(nameContains="distill")["modelCustomizationJobSummaries"][0][
        "jobArn"] == started["distill"]
    wait(bedrock, started["bad"])
    failed = bedrock.list_model_customization_jobs(statusEquals="Failed")["modelCustomizationJobSummaries"]
    assert [s["jobName"] for s in failed] == ["bad-data-job"]
    future = bedrock.list_model_customization_jobs(creationTimeAfter="2100-01-01T00:00:00Z")
    assert future["modelCustomizationJobSummaries"] == []
    with pytest.raises(ClientError) as err:
        bedrock.list_model_customization_jobs(statusEquals="Bogus")
    assert err.value.response["Error"]["Code"] == "ValidationException"


def test_invoke_model_speaks_each_family_native_body(registered):
    runtime = registered.client("bedrock-runtime")
    llama = json.loads(runtime.invoke_model(modelId=LLAMA31, body=json.dumps(
        {"prompt": "red green ->", "max_gen_len": 4, "temperature": 0}))["body"].read())
    assert set(llama) == {"generation", "prompt_token_count", "generation_token_count", "stop_reason"}
    assert llama["generation_token_count"] <= 4 and llama["stop_reason"] in ("stop", "length")
    titan = json.loads(runtime.invoke_model(modelId=TITAN, contentType="application/json", body=json.dumps(
        {"inputText": "red green", "textGenerationConfig": {"maxTokenCount": 3, "temperature": 0}}))["body"].read())
    assert titan["results"][0]["tokenCount"] <= 3 and titan["inputTextTokenCount"] > 0
    body = json.dumps({"prompt": "blue city ->", "max_gen_len": 6, "temperature": 0})
    whole = json.loads(runtime.invoke_model(modelId=LLAMA31, body=body)["body"].read())
    chunks = [json.loads(event["chunk"]["bytes"])
              for event in runtime.invoke_model_with_response_stream(modelId=LLAMA31, body=body)["body"]]
    assert "".join(c["generation"] for c in chunks) == whole["generation"]
    metrics = chunks[-1]["amazon-bedrock-invocationMetrics"]
    assert metrics["outputTokenCount"] == whole["generation_token_count"] and metrics["invocationLatency"] > 0
    with pytest.raises(ClientError) as err:
        runtime.invoke_model(modelId=LLAMA31, body=b"{not json")
    assert err.value.response["Error"]["Code"] == "ValidationException"
    with pytest.raises(ClientError) as err:
        runtime.converse(modelId="meta.llama3-3-70b-instruct-v1:0",
                         messages=[{"role": "user", "content": [{"text": "hi"}]}])
    assert "jobforge models add meta.llama3-3-70b-instruct-v1:0" in err.value.response["Error"]["Message"]
    with pytest.raises(ClientError) as err:
        runtime.converse_stream(modelId=LLAMA31, messages=[{"role": "user", "content": [
            {"image": {"format": "png", "source": {"bytes": b"x"}}}]}])
    assert err.value.response["Error"]["Code"] == "ValidationException"


def test_imported_weights_from_s3_serve_through_a_deployment(bedrock, s3, registered, base_model):
    for path in sorted(base_model.iterdir()):
        s3.upload_file(str(path), BUCKET, f"imports/tiny/{path.name}")
    arn = bedrock.create_custom_model(modelName="imported-tiny", clientRequestToken="import-1",
                                      modelSourceConfig={"s3DataSource": {"s3Uri": f"s3://{BUCKET}/imports/tiny/"}}
                                      )["modelArn"]
    assert ":custom-model/imported/" in arn
    assert bedrock.create_custom_model(modelName="imported-tiny", clientRequestToken="import-1", modelSourceConfig={
        "s3DataSource": {"s3Uri": f"s3://{BUCKET}/imports/tiny/"}})["modelArn"] == arn
    model = bedrock.get_custom_model(modelIdentifier="imported-tiny")
    assert model["modelStatus"] == "Active" and model["customizationType"] == "IMPORTED"
    with pytest.raises(ClientError) as err:
        bedrock.create_custom_model(modelName="missing", modelSourceConfig={
            "s3DataSource": {"s3Uri": f"s3://{BUCKET}/imports/nothing/"}})
    assert err.value.response["Error"]["Code"] == "ValidationException"
    deployment = bedrock.create_custom_model_deployment(modelDeploymentName="imported", modelArn=arn)[
        "customModelDeploymentArn"]
    listed = bedrock.list_custom_model_deployments(modelArnEquals=arn)["modelDeploymentSummaries"]
    assert [d["customModelDeploymentArn"] for d in listed] == [deployment]
    assert wait_deployment(bedrock, deployment)["status"] == "Active"
    runtime = registered.client("bedrock-runtime")
    question = [{"role": "user", "content": [{"text": "red ->"}]}]
    greedy = {"maxTokens": 5, "temperature": 0}
    imported = runtime.converse(modelId=deployment, messages=question, inferenceConfig=greedy)
    foundation = runtime.converse(modelId=LLAMA31, messages=question, inferenceConfig=greedy)
    assert imported["output"] == foundation["output"]  # the same weights, read back from S3
    by_name = runtime.converse(modelId="imported-tiny", messages=question, inferenceConfig=greedy)
    assert by_name["output"] == imported["output"]


def test_distillation_from_invocation_logs_filtered_by_request_metadata(bedrock, s3, registered, role_arn):
    s3.create_bucket(Bucket="bedrock-invocation-logs")
    bedrock.put_model_invocation_logging_configuration(loggingConfig={
        "s3Config": {"bucketName": "bedrock-invocation-logs", "keyPrefix": "runtime"},
        "textDataDeliveryEnabled": True})
    assert bedrock.get_model_invocation_logging_configuration()["loggingConfig"]["s3Config"]["keyPrefix"] == "runtime"
    runtime = registered.client("bedrock-runtime")
    prompts = [s + " ->" for s in sentences(6, 11)]
    for index, prompt in enumerate(prompts):
        runtime.converse(modelId=LLAMA31, messages=[{"role": "user", "content": [{"text": prompt}]}],
                         inferenceConfig={"maxTokens": 3}, requestMetadata={"project": "pd" if index % 2 else "other"})
    runtime.invoke_model(modelId=LLAMA31, body=json.dumps({"prompt": "red river ->", "max_gen_len": 3}),
                         requestMetadata=json.dumps({"project": "pd"}))
    bedrock.delete_model_invocation_logging_configuration()
    runtime.converse(modelId=LLAMA31, messages=[{"role": "user", "content": [{"text": "not logged"}]}],
                     inferenceConfig={"maxTokens": 2}, requestMetadata={"project": "pd"})
    logs = s3.list_objects_v2(Bucket="bedrock-invocation-logs", Prefix="runtime/AWSLogs/")["Contents"]
    assert len(logs) == 7 and all(item["Key"].endswith(".json.gz") for item in logs)

    arn = create(bedrock, role_arn, "logs-distill-job", base=LLAMA32, customizationType="DISTILLATION",
                 trainingDataConfig={"invocationLogsConfig": {
                     "invocationLogSource": {"s3Uri": "s3://bedrock-invocation-logs/runtime/"},
                     "usePromptResponse": False, "requestMetadataFilters": {"equals": {"project": "pd"}}}},
                 hyperParameters={"epochCount": "1"},
                 customizationConfig={"distillationConfig": {"teacherModelConfig": {
                     "teacherModelIdentifier": LLAMA31, "maxResponseLengthForInference": 6}}})
    job = wait(bedrock, arn)
    assert job["status"] == "Completed", job.get("failureMessage")
    prefix = f"output/model-customization-job-{arn.rsplit('/', 1)[1]}/distillation_artifacts/"
    read = lambda name: s3.get_object(Bucket=BUCKET, Key=prefix + name)["Body"].read().decode().splitlines()  # noqa
    synthetic = [json.loads(line) for line in read("synthetic_data.jsonl")]
    assert len(synthetic) + len(read("prompt_insights.jsonl")) == 4  # 3 Converse + 1 InvokeModel with project=pd
    asked = {m["content"][0]["text"] for r in synthetic for m in r["messages"] if m["role"] == "user"}
    assert asked <= {prompts[1], prompts[3], prompts[5], "red river ->"}


def test_a_custom_model_can_be_customized_again(bedrock, s3, started, role_arn):
    parent = wait(bedrock, started["cpt"])["outputModelArn"]
    arn = create(bedrock, role_arn, "second-stage-job", base=parent, train="ft/train.jsonl",
                 hyperParameters={"epochCount": "1", "batchSize": "8", "learningRate": "0.003"})
    assert f":model-customization-job/{TITAN}/" in arn
    job = wait(bedrock, arn)
    assert job["status"] == "Completed", job.get("failureMessage")
    assert job["baseModelArn"] == f"arn:aws:bedrock:us-east-1::foundation-model/{TITAN}"
    summary = bedrock.list_model_customization_jobs(nameContains="second-stage")["modelCustomizationJobSummaries"][0]
    assert summary["baseModelArn"] == parent
