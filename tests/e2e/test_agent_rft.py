"""SageMaker AgentRFT and AgentRFTEvaluation end to end against the real server: a tiny random policy built
here, registered as a JumpStart model; the agent a Lambda function created through boto3 that plays
"follow the signal" through the job runtime API (boto3's sagemakerjobruntime client); schemas, runtime
state machine and errors, Stop, and another account's reach."""

from __future__ import annotations

import json
import random
import subprocess
import sys
import time
import uuid
from math import comb

import pytest
from botocore.exceptions import ClientError

from jobforge.testing_server import ServerProcess

from signal_game import BASE_ARN, MODEL, jsonl, lambda_agent, register_model

BUCKET = "agent-rft"


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    data = tmp_path_factory.mktemp("agent-rft") / "data"
    srv = ServerProcess(data).start()
    register_model(data, tmp_path_factory.mktemp("digits"))
    s3 = srv.client("s3")
    s3.create_bucket(Bucket=BUCKET)
    rng = random.Random(7)
    s3.put_object(Bucket=BUCKET, Key="train.jsonl",
                  Body=jsonl({"prompt": f"episode {s}", "seed": s} for s in (rng.randrange(10 ** 6) for _ in range(256))))
    s3.put_object(Bucket=BUCKET, Key="validation.jsonl",
                  Body=jsonl({"prompt": f"episode {s}", "seed": s} for s in range(10 ** 6, 10 ** 6 + 16)))
    # Held out for evaluation jobs; every fourth episode's environment is broken.
    s3.put_object(Bucket=BUCKET, Key="evaluation.jsonl", Body=jsonl(
        {"prompt": f"episode {s}", "seed": s, "broken": s % 4 == 3} for s in range(2 * 10 ** 6, 2 * 10 ** 6 + 16)))
    sm = srv.client("sagemaker")
    for group in ("digits", "digits-checkpoints"):
        sm.create_model_package_group(ModelPackageGroupName=group)
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def role(server):
    return f"arn:aws:iam::{server.client('sts').get_caller_identity()['Account']}:role/JobforgeExecutionRole"


@pytest.fixture(scope="module")
def agent(server, role):
    return lambda_agent(server, role, f"follow-the-signal-{uuid.uuid4().hex[:6]}")


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


@pytest.fixture(scope="module")
def trained(sm, role, agent) -> dict:
    """The learning job, run to its end: its DescribeJob."""
    account = role.split(":")[4]
    # Each turn's reward is reported and every rollout of a prompt sees the same signals: per-turn advantages.
    # Groups of 8: with 4, a signal whose rollouts all answered wrong taught nothing, and a policy sure of a
    # wrong answer for it stayed so (about one run in seven ended under 0.75 after 50 steps, one at 0.21).
    document = training_document(agent, account, global_batch_size=32, group_size=8, max_steps=30,
                                 advantage_method="group_based_per_turn", learning_rate=0.01,
                                 max_concurrent_rollouts=16, max_epochs=8, sampling_max_tokens=512,
                                 checkpoint_interval=10)
    document["ModelPackageConfig"]["IntermediateCheckpointModelPackageGroupArn"] = \
        f"arn:aws:sagemaker:us-east-1:{account}:model-package-group/digits-checkpoints"
    create(sm, role, "follow-the-signal", document)
    return wait(sm, "follow-the-signal")


def test_follow_the_signal_learns_through_the_runtime_api(server, sm, trained):
    job = trained
    arn = job["JobArn"]
    assert job["JobStatus"] == "Completed", job.get("FailureReason")
    output = json.loads(job["JobConfigDocument"])["ServiceOutput"]
    assert output["ProgressInfo"]["CurrentStep"] == 30
    usage = output["BillableTokenUsage"]
    assert usage["SampleTokenCount"] > 0 and usage["PrefillTokenCount"] > usage["SampleTokenCount"]
    statuses = [t["Status"] for t in job["SecondaryStatusTransitions"]]
    assert statuses == ["Pending", "Starting", "Downloading", "Training", "Uploading", "Completed"], statuses
    events = server.client("logs").get_log_events(
        logGroupName="/aws/sagemaker/Job/AgentRFT",
        logStreamName=server.client("logs").describe_log_streams(
            logGroupName="/aws/sagemaker/Job/AgentRFT", logStreamNamePrefix="follow-the-signal/",
        )["logStreams"][0]["logStreamName"])["events"]
    validations = [e["message"] for e in events if e["message"].startswith("validation after step")]
    assert len(validations) == 2, validations
    before, after = (float(v.split("mean reward ")[1].split(",")[0]) for v in validations)
    # A random policy scores about 0.06; RL varies from run to run (0.95-0.97 seen after 30 steps).
    assert before < 0.3 and after >= 0.8, validations
    assert arn.endswith(":job/AgentRFT/follow-the-signal")


def test_the_trained_model_and_its_checkpoints_are_registered(server, sm, trained):
    output = json.loads(trained["JobConfigDocument"])["ServiceOutput"]
    package = sm.describe_model_package(ModelPackageName=output["OutputModelPackageArn"])
    assert package["ModelPackageGroupName"] == "digits" and package["ModelPackageVersion"] == 1
    [container] = package["InferenceSpecification"]["Containers"]
    assert container["BaseModel"] == {"HubContentName": MODEL, "HubContentVersion": "1.0.0"}
    model_uri = container["ModelDataSource"]["S3DataSource"]["S3Uri"]
    assert model_uri == f"s3://{BUCKET}/output/follow-the-signal/output/model/"
    keys = [o["Key"] for o in server.client("s3").list_objects_v2(
        Bucket=BUCKET, Prefix="output/follow-the-signal/output/model/")["Contents"]]
    assert any(k.endswith(".safetensors") for k in keys) and any(k.endswith("config.json") for k in keys)
    checkpoints = sm.list_model_packages(ModelPackageGroupName="digits-checkpoints")["ModelPackageSummaryList"]
    assert [c["ModelPackageVersion"] for c in checkpoints] == [1, 2]  # after steps 10 and 20 (30 is the model)
    described = sm.describe_model_package(ModelPackageName=checkpoints[1]["ModelPackageArn"])
    [container] = described["InferenceSpecification"]["Containers"]
    assert container["IsCheckpoint"] is True
    assert container["ModelDataSource"]["S3DataSource"]["S3Uri"].endswith("/checkpoints/step-20/")


def evaluation_document(agent: str, package: str | None = None, **hyperparameters) -> dict:
    document = {
        "AgentConfig": {"CustomAgentLambdaConfig": {"LambdaArn": agent}},
        "InputDataConfig": [{"ChannelName": "evaluation", "DataSource": {"S3DataSource": {
            "S3DataType": "S3Prefix", "S3Uri": f"s3://{BUCKET}/evaluation.jsonl"}}}],
        "OutputDataConfig": {"S3OutputPath": f"s3://{BUCKET}/evaluations"},
        "EvaluationConfig": {"BaseModelArn": BASE_ARN, "AcceptEula": True,
                             "HyperParameters": {k: str(v) for k, v in hyperparameters.items()}},
        "StoppingCondition": {"MaxRuntimeInSeconds": 3600},
    }
    if package:
        document["ModelPackageConfig"] = {"InputModelPackageArn": package}
    return document


def run_evaluation(server, sm, role, name: str, document: dict) -> tuple[dict, dict, list]:
    """The evaluation job run to its end: its DescribeJob, its results JSON and the RolloutInfo seen meanwhile."""
    create(sm, role, name, document, "AgentRFTEvaluation")
    seen, deadline = [], time.time() + 600
    while (job := sm.describe_job(JobName=name, JobCategory="AgentRFTEvaluation"))["JobStatus"] == "InProgress":
        assert time.time() < deadline
        info = json.loads(job["JobConfigDocument"]).get("ServiceOutput", {}).get("RolloutInfo")
        if info and job["SecondaryStatus"] == "Evaluating":
            seen.append(info)
        time.sleep(0.05)
    assert job["JobStatus"] == "Completed", job.get("FailureReason")
    output = json.loads(job["JobConfigDocument"])["ServiceOutput"]
    bucket, key = output["ResultsS3Uri"].removeprefix("s3://").split("/", 1)
    results = json.loads(server.client("s3").get_object(Bucket=bucket, Key=key)["Body"].read())
    return job, results, seen


def test_evaluations_of_the_base_and_the_fine_tuned_model(server, sm, role, agent, trained):
    package = json.loads(trained["JobConfigDocument"])["ServiceOutput"]["OutputModelPackageArn"]
    settings = dict(eval_group_size=8, pass_k_values="[1, 4, 8, 16]", success_threshold=1, max_tokens=1,
                    max_concurrent_rollouts=16)
    scores = {}
    for name, document in (("base-eval", evaluation_document(agent, **settings)),
                           ("tuned-eval", evaluation_document(agent, package, **settings))):
        job, results, seen = run_evaluation(server, sm, role, name, document)
        output = json.loads(job["JobConfigDocument"])["ServiceOutput"]
        assert output["RolloutInfo"] == {"Total": 128, "Completed": 128}
        assert seen and seen[0]["Total"] == 128 and seen[0]["Completed"] < 128
        assert [i["Completed"] for i in seen] == sorted(i["Completed"] for i in seen)  # it only moves forward
        statuses = [t["Status"] for t in job["SecondaryStatusTransitions"]]
        assert statuses == ["Pending", "Starting", "Downloading", "Evaluating", "Uploading", "Completed"], statuses
        # Every fourth environment is broken: a quarter of the rollouts fail, and count as unsuccessful.
        assert results["FailureRate"] == 0.25 and results["Rollouts"] == 128 and results["MeanTurns"] == 4
        successes = results["SuccessesPerPrompt"]
        assert len(successes) == 16 and all(successes[i] == 0 for i in range(3, 16, 4))
        for k in (1, 4, 8):  # the unbiased estimator, by hand: 1 - C(n - c, k) / C(n, k), averaged
            expected = sum(1 - comb(8 - c, k) / comb(8, k) for c in successes) / 16
            assert results["PassAtK"][str(k)] == pytest.approx(expected)
        assert "16" not in results["PassAtK"] and results["SkippedK"] == [16]
        assert results["SuccessThreshold"] == 1 and results["BaseModelArn"] == BASE_ARN
        assert results.get("ModelPackageArn") == (package if name == "tuned-eval" else None)
        scores[name] = results
    assert scores["base-eval"]["MeanReward"] < 0.3 and scores["tuned-eval"]["MeanReward"] >= 0.8
    # Success is all four turns right (at most 0.75 of the prompts: a quarter is broken).
    assert scores["base-eval"]["PassAtK"]["8"] < 0.1 < 0.4 < scores["tuned-eval"]["PassAtK"]["8"]
    assert scores["tuned-eval"]["PassAtK"]["1"] > scores["base-eval"]["PassAtK"]["1"] + 0.15

    # A checkpoint's package holds the LoRA adapter of step 20, evaluated on the base model.
    checkpoint = sm.list_model_packages(ModelPackageGroupName="digits-checkpoints",
                                        SortOrder="Descending")["ModelPackageSummaryList"][0]["ModelPackageArn"]
    _, results, _ = run_evaluation(server, sm, role, "checkpoint-eval", evaluation_document(agent, checkpoint, **settings))
    assert results["ModelPackageArn"] == checkpoint and results["MeanReward"] >= 0.6


def test_training_continues_from_a_package(server, sm, role, agent, trained):
    package = json.loads(trained["JobConfigDocument"])["ServiceOutput"]["OutputModelPackageArn"]
    document = training_document(agent, role.split(":")[4], global_batch_size=32, group_size=2, max_steps=1,
                                 sampling_max_tokens=512)
    document["ModelPackageConfig"]["InputModelPackageArn"] = package
    create(sm, role, "continued", document)
    job = wait(sm, "continued")
    assert job["JobStatus"] == "Completed", job.get("FailureReason")
    logs = server.client("logs")
    stream = logs.describe_log_streams(logGroupName="/aws/sagemaker/Job/AgentRFT",
                                       logStreamNamePrefix="continued/")["logStreams"][0]["logStreamName"]
    validations = [e["message"] for e in logs.get_log_events(
        logGroupName="/aws/sagemaker/Job/AgentRFT", logStreamName=stream)["events"]
        if e["message"].startswith("validation after step 0")]
    assert float(validations[0].split("mean reward ")[1].split(",")[0]) >= 0.8, validations  # where it left off
    output = json.loads(job["JobConfigDocument"])["ServiceOutput"]
    assert output["OutputModelPackageArn"].endswith("model-package/digits/2")


# An agent that only records its event (under events/<trajectory>.json) and leaves the trajectory PENDING, so
# the test itself drives the runtime API on a live trajectory.
RECORDER = """
import json, boto3

def handler(event, context):
    trajectory = event["metadata"]["trajectory_id"]
    boto3.client("s3").put_object(Bucket="%s", Key=f"events/{trajectory}.json", Body=json.dumps(event))
    return {}
""" % BUCKET


@pytest.fixture(scope="module")
def live(server, sm, role):
    """A running job with PENDING trajectories (its agent never reports) and one recorded event."""
    arn = lambda_agent(server, role, "recorder", RECORDER, timeout=30)
    document = training_document(arn, role.split(":")[4], global_batch_size=32, group_size=2,
                                 rollout_timeout_seconds=600, max_concurrent_rollouts=4)
    document["InputDataConfig"] = document["InputDataConfig"][:1]
    job_arn = create(sm, role, "live-trajectories", document)
    s3 = server.client("s3")
    deadline = time.time() + 120
    while len(found := s3.list_objects_v2(Bucket=BUCKET, Prefix="events/").get("Contents", [])) < 3:
        assert time.time() < deadline, sm.describe_job(JobName="live-trajectories", JobCategory="AgentRFT")
        time.sleep(0.5)
    events = [json.loads(s3.get_object(Bucket=BUCKET, Key=o["Key"])["Body"].read()) for o in found]
    yield job_arn, events
    if sm.describe_job(JobName="live-trajectories", JobCategory="AgentRFT")["JobStatus"] == "InProgress":
        sm.stop_job(JobName="live-trajectories", JobCategory="AgentRFT")


def test_agent_event_serves_both_sdk_styles(live, server):
    job_arn, events = live
    event = events[0]
    metadata = event["metadata"]
    assert metadata["jobId"] == metadata["job_arn"] == job_arn
    assert metadata["rolloutId"] == metadata["trajectory_id"]
    assert metadata["experimentId"] == "live-trajectories" and metadata["region"] == "us-east-1"
    assert metadata["endpoint"] == server.endpoint
    assert event["prompt"] == event["instance"]["prompt"] and "seed" in event["instance"]
    assert event["inferenceParams"] == event["inference_params"] == {"temperature": 1.0, "top_p": 1.0,
                                                                     "max_tokens": 4096}


def test_runtime_state_machine_and_errors(live, server):
    job_arn, events = live
    runtime = server.client("sagemakerjobruntime")
    trajectory = events[0]["metadata"]["trajectory_id"]
    ids = {"JobArn": job_arn, "TrajectoryId": trajectory}
    answer = json.loads(runtime.sample(Body=json.dumps({"messages": [{"role": "user", "content": "3"}],
                                                        "max_tokens": 2}), **ids)["Body"].read())
    assert answer["object"] == "chat.completion" and answer["model"] == MODEL
    assert answer["usage"]["completion_tokens"] <= 2 and answer["choices"][0]["message"]["role"] == "assistant"

    def error(call, **kwargs):
        with pytest.raises(ClientError) as caught:
            call(**kwargs)
        return caught.value.response["Error"]["Code"], caught.value.response["Error"]["Message"]

    assert error(runtime.sample, JobArn=job_arn, TrajectoryId="nope", Body=b'{"messages": []}')[0] == \
        "ResourceNotFoundException"
    assert error(runtime.sample, Body=b'{"prompt": "no messages"}', **ids)[0] == "ValidationException"
    assert error(runtime.update_reward, Rewards=[1.0], **ids)[0] == "ConflictException"  # not READY yet
    runtime.complete_rollout(Status="ready", ClientToken="once", **ids)
    runtime.complete_rollout(Status="ready", ClientToken="once", **ids)  # the same token: the first answer
    code, message = error(runtime.complete_rollout, Status="ready", **ids)
    assert code == "ConflictException" and "Cannot transition trajectory" in message
    code, message = error(runtime.sample, Body=b'{"messages": [{"role": "user", "content": "1"}]}', **ids)
    assert code == "ConflictException" and "not in valid status" in message
    assert error(runtime.update_reward, Rewards=[1.0, 0.0, 1.0], **ids)[0] == "ValidationException"
    runtime.update_reward(Rewards=[0.5], **ids)
    assert error(runtime.update_reward, Rewards=[0.5], **ids)[0] == "ConflictException"
    other_job = job_arn.replace("live-trajectories", "no-such-job")
    assert error(runtime.sample, JobArn=other_job, TrajectoryId=trajectory,
                 Body=b'{"messages": [{"role": "user", "content": "1"}]}')[0] == "ResourceNotFoundException"


def test_openai_client_with_a_bearer_token_and_streaming(live, server):
    import openai
    from botocore.credentials import Credentials
    from sagemaker.core.token_generator import generate_token

    job_arn, events = live
    trajectory = events[1]["metadata"]["trajectory_id"]
    credentials = server.credentials()

    class Keys:
        def load(self):
            return Credentials(credentials["aws_access_key_id"], credentials["aws_secret_access_key"])

    token = generate_token(region="us-east-1", aws_credentials_provider=Keys())
    client = openai.OpenAI(base_url=server.endpoint + "/v1", api_key=token, max_retries=0, default_headers={
        "X-Amzn-SageMaker-Job-Arn": job_arn, "X-Amzn-SageMaker-Trajectory-Id": trajectory})
    first = client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "4"}], max_tokens=1)
    assert first.choices[0].finish_reason in ("stop", "length") and first.usage.completion_tokens == 1
    messages = [{"role": "user", "content": "4"}, {"role": "assistant", "content": first.choices[0].message.content},
                {"role": "user", "content": "5"}]
    chunks = list(client.chat.completions.create(model=MODEL, messages=messages, max_tokens=3, stream=True))
    assert chunks[0].choices[0].delta.role == "assistant" and chunks[-1].choices[0].finish_reason in ("stop", "length")
    bad = openai.OpenAI(base_url=server.endpoint, api_key="sk-not-a-sagemaker-key", max_retries=0,
                        default_headers={"X-Amzn-SageMaker-Job-Arn": job_arn,
                                         "X-Amzn-SageMaker-Trajectory-Id": trajectory})
    with pytest.raises(openai.PermissionDeniedError):
        bad.chat.completions.create(model=MODEL, messages=messages, max_tokens=1)


def test_another_account_cannot_reach_the_trajectories(live, server):
    job_arn, events = live
    subprocess.run([sys.executable, "-m", "jobforge.cli", "--data-dir", str(server.data_dir), "accounts", "create",
                    "intruder"], check=True, capture_output=True, timeout=60)
    runtime = server.client("sagemakerjobruntime", profile="intruder")
    with pytest.raises(ClientError) as caught:
        runtime.sample(JobArn=job_arn, TrajectoryId=events[-1]["metadata"]["trajectory_id"],
                       Body=b'{"messages": [{"role": "user", "content": "1"}]}')
    assert caught.value.response["Error"]["Code"] == "ResourceNotFoundException"


def test_schema_violations_and_unregistered_models(server, sm, role, agent):
    account = role.split(":")[4]

    def refused(document, category="AgentRFT"):
        with pytest.raises(ClientError) as caught:
            create(sm, role, f"bad-{uuid.uuid4().hex[:6]}", document, category)
        return caught.value.response["Error"]

    document = training_document(agent, account)
    del document["TrainingConfig"]["BaseModelArn"]
    error = refused(document)
    assert error["Code"] == "ValidationException" and "$.TrainingConfig" in error["Message"] and \
        "required" in error["Message"]
    document = training_document(agent, account, group_size=64)
    assert "group_size must be an integer from 2 to 32" in refused(document)["Message"]
    document = training_document(agent, account, advantage_method="ppo_gae")
    assert "advantage_method" in refused(document)["Message"]
    document = training_document(agent, account)
    document["TrainingConfig"]["BaseModelArn"] = BASE_ARN.replace(MODEL, "unregistered-model")
    error = refused(document)
    assert error["Code"] == "ResourceNotFound" and "jobforge models add unregistered-model" in error["Message"]
    document = training_document(agent, account)
    document["AgentConfig"]["BedrockAgentCoreConfig"] = {
        "AgentRuntimeArn": f"arn:aws:bedrock-agentcore:us-east-1:{account}:runtime/agent-abc"}
    assert "$.AgentConfig" in refused(document)["Message"]  # one agent, not both
    document = training_document(agent, account)
    document["ModelPackageConfig"]["OutputModelPackageGroupArn"] += "-missing"
    error = refused(document)
    assert error["Code"] == "ResourceNotFound" and "CreateModelPackageGroup" in error["Message"]
    document = training_document(agent, account)
    document["ModelPackageConfig"]["InputModelPackageArn"] = \
        f"arn:aws:sagemaker:us-east-1:{account}:model-package/digits/99"
    error = refused(document)
    assert error["Code"] == "ResourceNotFound" and "InputModelPackageArn" in error["Message"]
    schema = json.loads(sm.describe_job_schema_version(JobCategory="AgentRFT")["JobConfigSchema"])
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert [s["JobConfigSchemaVersion"] for s in
            sm.list_job_schema_versions(JobCategory="AgentRFTEvaluation")["JobConfigSchemas"]] == ["1.0.0"]


# Samples one turn, says so, then works on for a while and reports what the runtime API answers it then.
SLOW_AGENT = """
import json, time, boto3

def handler(event, context):
    meta = event["metadata"]
    runtime = boto3.client("sagemakerjobruntime", endpoint_url=meta["endpoint"], region_name=meta["region"])
    s3 = boto3.client("s3")
    ids = dict(JobArn=meta["job_arn"], TrajectoryId=meta["trajectory_id"])
    runtime.sample(Body=json.dumps({"messages": [{"role": "user", "content": "1"}], "max_tokens": 1}), **ids)
    s3.put_object(Bucket="%(bucket)s", Key=f"slow/started/{ids['TrajectoryId']}", Body=b"")
    time.sleep(8)
    try:
        runtime.complete_rollout(Status="ready", **ids)
        answer = "accepted"
    except runtime.exceptions.ClientError as err:
        answer = err.response["Error"]["Code"]
    s3.put_object(Bucket="%(bucket)s", Key=f"slow/ended/{ids['TrajectoryId']}", Body=answer.encode())
    return {}
""" % {"bucket": BUCKET}


def test_stop_ends_the_job_and_its_pending_rollouts(live, server, sm):
    job_arn, events = live
    sm.stop_job(JobName="live-trajectories", JobCategory="AgentRFT")
    # Its trajectories wait for reports that never come; the job does not wait for them.
    job = wait(sm, "live-trajectories", timeout=10)
    assert job["JobStatus"] == "Stopped" and job["SecondaryStatus"] == "Stopped"
    assert [t["Status"] for t in job["SecondaryStatusTransitions"]][-2:] == ["Stopping", "Stopped"]
    with pytest.raises(ClientError) as caught:
        server.client("sagemakerjobruntime").complete_rollout(
            JobArn=job_arn, TrajectoryId=events[-1]["metadata"]["trajectory_id"], Status="ready")
    assert caught.value.response["Error"]["Code"] == "ResourceNotFoundException"


def test_stop_does_not_wait_for_running_agents(server, sm, role):
    arn = lambda_agent(server, role, "slow-agent", SLOW_AGENT, timeout=60)
    document = training_document(arn, role.split(":")[4], global_batch_size=32, group_size=2,
                                 max_concurrent_rollouts=4)
    create(sm, role, "stopped-midway", document)
    s3 = server.client("s3")
    deadline = time.time() + 120
    while not (started := s3.list_objects_v2(Bucket=BUCKET, Prefix="slow/started/").get("Contents")):
        assert time.time() < deadline, sm.describe_job(JobName="stopped-midway", JobCategory="AgentRFT")
        time.sleep(0.2)
    sm.stop_job(JobName="stopped-midway", JobCategory="AgentRFT")
    # Stopped while its agents still work: the job does not wait for them.
    job = wait(sm, "stopped-midway", timeout=7)
    assert job["JobStatus"] == "Stopped" and job["SecondaryStatus"] == "Stopped"
    trajectory = started[0]["Key"].rsplit("/", 1)[1]
    runtime = server.client("sagemakerjobruntime")
    with pytest.raises(ClientError) as caught:
        runtime.sample(JobArn=job["JobArn"], TrajectoryId=trajectory,
                       Body=b'{"messages": [{"role": "user", "content": "1"}]}')
    assert caught.value.response["Error"]["Code"] == "ResourceNotFoundException"
    # The agents that were running find their rollouts gone when they report.
    deadline = time.time() + 60
    while not (ended := s3.list_objects_v2(Bucket=BUCKET, Prefix="slow/ended/").get("Contents")):
        assert time.time() < deadline
        time.sleep(0.5)
    answers = {s3.get_object(Bucket=BUCKET, Key=o["Key"])["Body"].read() for o in ended}
    assert answers == {b"ResourceNotFoundException"}, answers
