"""Inference recommendation jobs end to end through boto3, the AWS CLI and sagemaker-core: a tiny scikit-learn
model deployed on each candidate instance type, loaded by the load generator, measured and removed; Default and
Advanced jobs, the open-loop mode, an existing endpoint benchmarked, a job stopped mid-test, instance types this
host cannot realise reported as skipped with the reason, and the requests refused."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import numpy as np
import pytest
from botocore.exceptions import ClientError

from jobforge.testing_server import ServerProcess
from jobforge.workloads.recommend import cost
from selftest_kind import SELFTEST_ENV

BUCKET = "recommender-models"
IMAGE = "683313688378.dkr.ecr.us-east-1.amazonaws.com/sagemaker-scikit-learn:1.2-1-cpu-py3"
SMALL = "ml.t2.medium"  # 2 vCPUs, 4 GiB: what a small CI host realises
HUGE = "ml.c5.18xlarge"  # 72 vCPUs: what it does not
PRICE = {"ml.t2.medium": 0.056, "ml.m5.large": 0.115}  # the shipped catalog's
AWS = str(Path(sys.executable).with_name("aws"))
QUICK_STAIRS = {"TrafficType": "STAIRS", "Stairs": {"DurationInSeconds": 3, "NumberOfSteps": 3, "UsersPerStep": 1}}


def tarball(files: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """Each instance holds its instance type's memory: allowed more than a small CI host has."""
    srv = ServerProcess(tmp_path_factory.mktemp("server") / "data", env=SELFTEST_ENV,
                        extra_args=["--memory-mb", "65536"]).start()
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def sm(server):
    return server.client("sagemaker")


@pytest.fixture(scope="module")
def model(server, sm, role_arn):
    """A logistic regression over 4 features, and two CSV rows to send it."""
    import joblib
    from sklearn.linear_model import LogisticRegression

    rng = np.random.default_rng(0)
    features = rng.normal(size=(200, 4))
    buffer = io.BytesIO()
    joblib.dump(LogisticRegression().fit(features, (features[:, 0] > 0).astype(int)), buffer)
    s3 = server.client("s3")
    s3.create_bucket(Bucket=BUCKET)
    s3.put_object(Bucket=BUCKET, Key="iris/model.tar.gz", Body=tarball({"model.joblib": buffer.getvalue()}))
    s3.put_object(Bucket=BUCKET, Key="iris/payload.tar.gz",
                  Body=tarball({"rows/a.csv": b"1.0,2.0,3.0,4.0\n", "rows/b.csv": b"0.5,-1.0,2.0,0.0\n"}))
    sm.create_model(ModelName="iris", ExecutionRoleArn=role_arn,
                    PrimaryContainer={"ModelDataUrl": f"s3://{BUCKET}/iris/model.tar.gz", "Image": IMAGE})
    return "iris"


def input_config(model: str, **extra) -> dict:
    return {"ModelName": model, "ContainerConfig": {"PayloadConfig": {
        "SamplePayloadUrl": f"s3://{BUCKET}/iris/payload.tar.gz", "SupportedContentTypes": ["text/csv"]}}, **extra}


def wait(sm, name: str, timeout: float = 240) -> dict:
    deadline = time.time() + timeout
    while time.time() < deadline:
        job = sm.describe_inference_recommendations_job(JobName=name)
        if job["Status"] in ("COMPLETED", "FAILED", "STOPPED"):
            return job
        time.sleep(0.5)
    raise AssertionError(f"job {name} still {job['Status']}")


def log_lines(server, name: str) -> list[str]:
    logs = server.client("logs")
    group = "/aws/sagemaker/InferenceRecommendationsJobs"
    streams = logs.describe_log_streams(logGroupName=group, logStreamNamePrefix=f"{name}/")["logStreams"]
    return [event["message"] for stream in streams
            for event in logs.get_log_events(logGroupName=group, logStreamName=stream["logStreamName"])["events"]]


def assert_measured(recommendation: dict, instance_type: str) -> None:
    metrics = recommendation["Metrics"]
    assert recommendation["EndpointConfiguration"]["InstanceType"] == instance_type
    assert recommendation["EndpointConfiguration"]["InitialInstanceCount"] == 1
    assert metrics["MaxInvocations"] > 0 and metrics["ModelLatency"] >= 0
    assert metrics["CostPerHour"] == PRICE[instance_type]
    assert metrics["CostPerInference"] == cost.cost_per_inference(metrics["CostPerHour"], metrics["MaxInvocations"])
    assert 0 < metrics["CpuUtilization"] <= 100 and 0 < metrics["MemoryUtilization"] <= 100
    assert metrics["ModelSetupTime"] > 0
    assert recommendation["InvocationStartTime"] < recommendation["InvocationEndTime"]


def test_an_advanced_job_measures_each_instance_type_and_skips_what_the_host_cannot_realise(server, sm, role_arn,
                                                                                             model):
    arn = sm.create_inference_recommendations_job(
        JobName="advanced-stairs", JobType="Advanced", RoleArn=role_arn, JobDescription="stairs on two types",
        InputConfig=input_config(model, JobDurationInSeconds=120, TrafficPattern=QUICK_STAIRS,
                                 EndpointConfigurations=[{"InstanceType": SMALL}, {"InstanceType": HUGE}]),
        StoppingConditions={"ModelLatencyThresholds": [{"Percentile": "P95", "ValueInMilliseconds": 1000}],
                            "FlatInvocations": "Continue"})["JobArn"]
    assert arn.endswith(":inference-recommendations-job/advanced-stairs")
    planned = sm.list_inference_recommendations_job_steps(JobName="advanced-stairs")["Steps"]
    assert [s["StepType"] for s in planned] == ["BENCHMARK", "BENCHMARK"]
    assert planned[1]["Status"] == "FAILED"  # known at once: this host cannot realise it
    job = wait(sm, "advanced-stairs")
    assert job["Status"] == "COMPLETED", job.get("FailureReason")
    assert job["JobDescription"] == "stairs on two types" and job["JobType"] == "Advanced"
    assert job["CompletionTime"] >= job["CreationTime"]
    [recommendation] = job["InferenceRecommendations"]
    assert_measured(recommendation, SMALL)
    steps = sm.list_inference_recommendations_job_steps(JobName="advanced-stairs")["Steps"]
    done, skipped = steps
    assert done["Status"] == "COMPLETED" and done["InferenceBenchmark"]["Metrics"] == recommendation["Metrics"]
    assert done["InferenceBenchmark"]["EndpointMetrics"] == {
        "MaxInvocations": recommendation["Metrics"]["MaxInvocations"],
        "ModelLatency": recommendation["Metrics"]["ModelLatency"]}
    assert skipped["Status"] == "FAILED" and "Metrics" not in skipped["InferenceBenchmark"]
    assert "cannot realise the instance type ml.c5.18xlarge" in skipped["InferenceBenchmark"]["FailureReason"]
    assert skipped["InferenceBenchmark"]["EndpointConfiguration"]["InstanceType"] == HUGE
    only_failed = sm.list_inference_recommendations_job_steps(JobName="advanced-stairs", Status="FAILED")["Steps"]
    assert [s["InferenceBenchmark"]["EndpointConfiguration"]["InstanceType"] for s in only_failed] == [HUGE]
    first = sm.list_inference_recommendations_job_steps(JobName="advanced-stairs", MaxResults=1)
    rest = sm.list_inference_recommendations_job_steps(JobName="advanced-stairs", MaxResults=1,
                                                       NextToken=first["NextToken"])
    assert first["Steps"] + rest["Steps"] == steps and "NextToken" not in rest
    lines = log_lines(server, "advanced-stairs")
    assert any(line.startswith("load generator ceiling: ") for line in lines)
    assert sum(" users: " in line for line in lines) == 3  # the three stairs, each a window
    assert sm.list_endpoints()["Endpoints"] == []  # the test's deployment is gone


def test_a_default_job_ramps_its_own_traffic_on_the_types_given(server, sm, role_arn, model):
    sm.create_inference_recommendations_job(
        JobName="default-ramp", JobType="Default", RoleArn=role_arn,
        InputConfig=input_config(model, JobDurationInSeconds=40, ContainerConfig={
            "Domain": "MACHINE_LEARNING", "Task": "CLASSIFICATION", "Framework": "SAGEMAKER-SCIKIT-LEARN",
            "SupportedInstanceTypes": [SMALL, "ml.m5.large"], "PayloadConfig": {
                "SamplePayloadUrl": f"s3://{BUCKET}/iris/payload.tar.gz", "SupportedContentTypes": ["text/csv"]}}))
    job = wait(sm, "default-ramp")
    assert job["Status"] == "COMPLETED", job.get("FailureReason")
    recommendations = job["InferenceRecommendations"]
    for recommendation in recommendations:
        assert_measured(recommendation, recommendation["EndpointConfiguration"]["InstanceType"])
    costs = [r["Metrics"]["CostPerInference"] for r in recommendations]
    assert costs == sorted(costs)  # ranked cheapest per inference first
    lines = log_lines(server, "default-ramp")
    assert any("1 users: " in line for line in lines) and any("2 users: " in line for line in lines)


def test_open_loop_mode_is_labelled_and_measured(server, sm, role_arn, model):
    sm.create_inference_recommendations_job(
        JobName="open-loop", JobType="Advanced", RoleArn=role_arn,
        InputConfig=input_config(model, JobDurationInSeconds=60, EndpointConfigurations=[{"InstanceType": SMALL}],
                                 TrafficPattern={"TrafficType": "PHASES", "Phases": [
                                     {"InitialNumberOfUsers": 2, "SpawnRate": 0, "DurationInSeconds": 3}]}),
        Tags=[{"Key": "jobforge:OpenLoopRequestsPerSecondPerUser", "Value": "25"}])
    job = wait(sm, "open-loop")
    assert job["Status"] == "COMPLETED", job.get("FailureReason")
    # Arrivals at 2 users x 25 a second: the endpoint serves what was sent, about 3000 a minute.
    assert job["InferenceRecommendations"][0]["Metrics"]["MaxInvocations"] == pytest.approx(3000, rel=0.2)
    assert any("open-loop mode (an addition of jobforge" in line for line in log_lines(server, "open-loop"))


def test_an_existing_endpoint_is_benchmarked_and_left_running(server, sm, role_arn, model):
    sm.create_endpoint_config(EndpointConfigName="iris-live", ProductionVariants=[
        {"VariantName": "AllTraffic", "ModelName": model, "InstanceType": SMALL, "InitialInstanceCount": 1}])
    sm.create_endpoint(EndpointName="iris-live", EndpointConfigName="iris-live")
    deadline = time.time() + 120
    while sm.describe_endpoint(EndpointName="iris-live")["EndpointStatus"] == "Creating" and time.time() < deadline:
        time.sleep(0.2)
    sm.create_inference_recommendations_job(
        JobName="live-endpoint", JobType="Advanced", RoleArn=role_arn,
        InputConfig=input_config(model, JobDurationInSeconds=60, TrafficPattern=QUICK_STAIRS,
                                 Endpoints=[{"EndpointName": "iris-live"}]))
    job = wait(sm, "live-endpoint")
    assert job["Status"] == "COMPLETED", job.get("FailureReason")
    [performance] = job["EndpointPerformances"]
    assert performance["EndpointInfo"] == {"EndpointName": "iris-live"}
    assert performance["Metrics"]["MaxInvocations"] > 0 and performance["Metrics"]["ModelLatency"] >= 0
    assert "InferenceRecommendations" not in job
    assert sm.describe_endpoint(EndpointName="iris-live")["EndpointStatus"] == "InService"
    answer = server.client("sagemaker-runtime").invoke_endpoint(EndpointName="iris-live", Body=b"1,2,3,4",
                                                                ContentType="text/csv")
    assert answer["ResponseMetadata"]["HTTPStatusCode"] == 200
    sm.delete_endpoint(EndpointName="iris-live")
    deadline = time.time() + 60
    while any(e["EndpointName"] == "iris-live" for e in sm.list_endpoints()["Endpoints"]):
        assert time.time() < deadline, "the endpoint was not deleted"
        time.sleep(0.2)


def test_stopping_a_job_mid_test_stops_its_load_and_removes_its_endpoint(server, sm, role_arn, model):
    sm.create_inference_recommendations_job(
        JobName="stopped-mid-test", JobType="Advanced", RoleArn=role_arn,
        InputConfig=input_config(model, JobDurationInSeconds=600, EndpointConfigurations=[
            {"InstanceType": SMALL}, {"InstanceType": "ml.m5.large"}], TrafficPattern={
                "TrafficType": "STAIRS", "Stairs": {"DurationInSeconds": 300, "NumberOfSteps": 2, "UsersPerStep": 1}}))
    deadline = time.time() + 120
    while time.time() < deadline:
        steps = sm.list_inference_recommendations_job_steps(JobName="stopped-mid-test")["Steps"]
        if steps[0]["Status"] == "IN_PROGRESS" and any(" users: " in line or "deploying" in line
                                                       for line in log_lines(server, "stopped-mid-test")):
            break
        time.sleep(0.3)
    sm.stop_inference_recommendations_job(JobName="stopped-mid-test")
    assert sm.describe_inference_recommendations_job(JobName="stopped-mid-test")["Status"] in ("STOPPING", "STOPPED")
    job = wait(sm, "stopped-mid-test", timeout=60)
    assert job["Status"] == "STOPPED"
    assert [s["Status"] for s in sm.list_inference_recommendations_job_steps(JobName="stopped-mid-test")["Steps"]] \
        == ["STOPPED", "STOPPED"]
    with pytest.raises(ClientError) as refused:
        sm.stop_inference_recommendations_job(JobName="stopped-mid-test")
    assert refused.value.response["Error"]["Code"] == "ValidationException"
    job_dirs = [d for d in (server.data_dir / "jobs").iterdir() if (d / "deployments").exists()]
    assert all(not any((d / "deployments").iterdir()) for d in job_dirs)
    instances = [d for d in (server.data_dir / "jobs").iterdir() if d.name.startswith("ep-")]
    assert instances == []


@pytest.mark.parametrize("change, message", [
    (lambda r: r["InputConfig"].pop("ContainerConfig"), "PayloadConfig needs SamplePayloadUrl"),
    (lambda r: r["InputConfig"].pop("TrafficPattern"), "needs InputConfig.TrafficPattern"),
    (lambda r: r.update(JobType="Default"), "TrafficPattern is for Advanced jobs"),
    (lambda r: r["InputConfig"].update(ModelName="no-such-model"), 'Could not find model'),
    (lambda r: r["InputConfig"].update(ModelPackageVersionArn="arn:aws:sagemaker:us-east-1:123456789012:"
                                       "model-package/p/1"), "keeps no model packages"),
    (lambda r: r["InputConfig"]["EndpointConfigurations"].append({"InstanceType": SMALL, "ServerlessConfig": {
        "MemorySizeInMB": 2048, "MaxConcurrency": 1}}), "Serverless endpoints are not supported"),
    (lambda r: r["InputConfig"].update(JobDurationInSeconds=2), "more than the job's JobDurationInSeconds"),
    (lambda r: r["InputConfig"].update(JobDurationInSeconds=20000), "at most 18000"),
    (lambda r: r["InputConfig"]["TrafficPattern"].update(TrafficType="PHASES"), "TrafficType PHASES needs"),
    (lambda r: r.update(StoppingConditions={"ModelLatencyThresholds": [
        {"Percentile": "P50", "ValueInMilliseconds": 100}]}), "P95 or P99"),
    (lambda r: r.update(Tags=[{"Key": "jobforge:OpenLoopRequestsPerSecondPerUser", "Value": "fast"}]),
     "positive number"),
    (lambda r: r["InputConfig"]["ContainerConfig"].update(DataInputConfig='{"x": [1, 4]}'),
     "run CreateCompilationJob"),
])
def test_requests_jobforge_cannot_serve_are_refused_with_the_reason(sm, role_arn, model, change, message):
    request = {"JobName": "refused", "JobType": "Advanced", "RoleArn": role_arn,
               "InputConfig": input_config(model, TrafficPattern=dict(QUICK_STAIRS),
                                           EndpointConfigurations=[{"InstanceType": SMALL}])}
    change(request)
    with pytest.raises(ClientError) as refused:
        sm.create_inference_recommendations_job(**request)
    assert refused.value.response["Error"]["Code"] == "ValidationException"
    assert message in refused.value.response["Error"]["Message"]


def test_names_listing_and_missing_jobs(sm, role_arn, model):
    with pytest.raises(ClientError) as taken:
        sm.create_inference_recommendations_job(
            JobName="advanced-stairs", JobType="Advanced", RoleArn=role_arn,
            InputConfig=input_config(model, TrafficPattern=QUICK_STAIRS, EndpointConfigurations=[
                {"InstanceType": SMALL}]))
    assert taken.value.response["Error"]["Code"] == "ResourceInUse"
    for call in (sm.describe_inference_recommendations_job, sm.stop_inference_recommendations_job,
                 sm.list_inference_recommendations_job_steps):
        with pytest.raises(ClientError) as missing:
            call(JobName="no-such-job")
        assert missing.value.response["Error"]["Code"] == "ResourceNotFound"
    listed = sm.list_inference_recommendations_jobs(ModelNameEquals=model, StatusEquals="COMPLETED",
                                                    SortBy="Name", SortOrder="Ascending")
    names = [j["JobName"] for j in listed["InferenceRecommendationsJobs"]]
    assert names == sorted(names) and "advanced-stairs" in names and "stopped-mid-test" not in names
    summary = next(j for j in listed["InferenceRecommendationsJobs"] if j["JobName"] == "advanced-stairs")
    assert summary["ModelName"] == model and summary["SamplePayloadUrl"] == f"s3://{BUCKET}/iris/payload.tar.gz"
    assert sm.list_inference_recommendations_jobs(ModelNameEquals="other")["InferenceRecommendationsJobs"] == []
    page = sm.list_inference_recommendations_jobs(NameContains="-", MaxResults=1)
    assert len(page["InferenceRecommendationsJobs"]) == 1 and page["NextToken"]


def client_env(server) -> dict:
    env = {key: value for key, value in os.environ.items() if not key.startswith("AWS_")}
    env.update(AWS_CONFIG_FILE=str(server.data_dir / "config"),
               AWS_SHARED_CREDENTIALS_FILE=str(server.data_dir / "credentials"))
    return env


def test_the_aws_cli_describes_lists_and_steps(server, sm):
    def aws(*args):
        done = subprocess.run([AWS, "sagemaker", *args, "--output", "json"], capture_output=True, text=True,
                              env=client_env(server), timeout=120)
        assert done.returncode == 0, done.stderr
        return json.loads(done.stdout)

    described = aws("describe-inference-recommendations-job", "--job-name", "advanced-stairs")
    assert described["Status"] == "COMPLETED"
    assert described["InferenceRecommendations"][0]["Metrics"]["CostPerHour"] == PRICE[SMALL]
    listed = aws("list-inference-recommendations-jobs", "--name-contains", "advanced")
    assert [j["JobName"] for j in listed["InferenceRecommendationsJobs"]] == ["advanced-stairs"]
    steps = aws("list-inference-recommendations-job-steps", "--job-name", "advanced-stairs", "--status", "COMPLETED")
    assert len(steps["Steps"]) == 1


SDK_SCRIPT = """
import json, sys
from sagemaker.core.resources import InferenceRecommendationsJob
from sagemaker.core.shapes import (RecommendationJobContainerConfig, RecommendationJobInputConfig,
                                   RecommendationJobPayloadConfig, Stairs, TrafficPattern, EndpointInputConfiguration)

role, payload = sys.argv[1:3]
job = InferenceRecommendationsJob.create(
    job_name="sdk-advanced", job_type="Advanced", role_arn=role,
    input_config=RecommendationJobInputConfig(
        model_name="iris", job_duration_in_seconds=60,
        traffic_pattern=TrafficPattern(traffic_type="STAIRS", stairs=Stairs(
            duration_in_seconds=3, number_of_steps=3, users_per_step=1)),
        endpoint_configurations=[EndpointInputConfiguration(instance_type="ml.t2.medium")],
        container_config=RecommendationJobContainerConfig(payload_config=RecommendationJobPayloadConfig(
            sample_payload_url=payload, supported_content_types=["text/csv"]))))
job.wait(poll=1, timeout=240)
job.refresh()
first = job.inference_recommendations[0]
print(json.dumps({"status": job.status, "type": first.endpoint_configuration.instance_type,
                  "max": first.metrics.max_invocations, "cost": first.metrics.cost_per_hour}))
"""


def test_sagemaker_core_creates_and_waits_for_a_job(server, role_arn, model):
    done = subprocess.run([sys.executable, "-c", SDK_SCRIPT, role_arn, f"s3://{BUCKET}/iris/payload.tar.gz"],
                          capture_output=True, text=True, env=client_env(server), timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["status"] == "COMPLETED" and result["type"] == SMALL
    assert result["max"] > 0 and result["cost"] == PRICE[SMALL]
