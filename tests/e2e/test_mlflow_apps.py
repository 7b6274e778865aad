"""SageMaker MLflow Apps against the real server: the app operations through boto3; the tracking API through
MLflow's own client as the SageMaker SDK drives it (the app's ARN as tracking URI, the sagemaker-mlflow plugin
signing with SigV4 for SAGEMAKER_MLFLOW_CUSTOM_ENDPOINT); the UI and its API through a presigned URL's cookie
session; another account refused; AgentRFT and AgentRFTEvaluation jobs with MlflowConfig whose MLflow runs hold
the job's own metrics."""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
import time
import uuid

import pytest
import requests
import sqlalchemy as sa
from botocore.exceptions import ClientError

from jobforge.testing_server import ServerProcess

from signal_game import BASE_ARN, jsonl, lambda_agent, register_model

BUCKET = "mlflow-apps"


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    data = tmp_path_factory.mktemp("mlflow-apps") / "data"
    srv = ServerProcess(data).start()
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def sm(server):
    return server.client("sagemaker")


@pytest.fixture(scope="module")
def role(server):
    return f"arn:aws:iam::{server.client('sts').get_caller_identity()['Account']}:role/JobforgeExecutionRole"


@pytest.fixture(scope="module")
def app(sm, role) -> str:
    return sm.create_mlflow_app(Name="experiments", ArtifactStoreUri=f"s3://{BUCKET}/mlflow", RoleArn=role,
                                Tags=[{"Key": "team", "Value": "rl"}])["Arn"]


@pytest.fixture(scope="module")
def tracking(server, app, monkeypatch_module):
    """MLflow's client for the app, configured as the SageMaker SDK and a SageMaker job configure it."""
    credentials = server.credentials()
    for name, value in {"SAGEMAKER_MLFLOW_CUSTOM_ENDPOINT": server.endpoint, "AWS_DEFAULT_REGION": "us-east-1",
                        "AWS_ACCESS_KEY_ID": credentials["aws_access_key_id"],
                        "AWS_SECRET_ACCESS_KEY": credentials["aws_secret_access_key"]}.items():
        monkeypatch_module.setenv(name, value)
    monkeypatch_module.delenv("AWS_SESSION_TOKEN", raising=False)
    monkeypatch_module.delenv("AWS_PROFILE", raising=False)
    import mlflow
    from mlflow import MlflowClient

    mlflow.set_tracking_uri(app)
    return MlflowClient(app)


@pytest.fixture(scope="module")
def monkeypatch_module():
    with pytest.MonkeyPatch.context() as patch:
        yield patch


def browser_session(sm, app: str) -> tuple[requests.Session, str]:
    """A session opened by a presigned URL, and the app's base URL it was redirected to (as the SDK reads it)."""
    url = sm.create_presigned_mlflow_app_url(Arn=app, ExpiresInSeconds=60)["AuthorizedUrl"]
    session = requests.Session()
    opened = session.get(url, timeout=30)
    assert opened.status_code == 200, opened.text
    return session, opened.url.split("#")[0].split("?")[0].rstrip("/")


def test_create_describe_list_update_delete(sm, role):
    arn = sm.create_mlflow_app(Name="scratch", ArtifactStoreUri=f"s3://{BUCKET}/scratch", RoleArn=role,
                               AccountDefaultStatus="ENABLED", DefaultDomainIdList=["d-abc123"])["Arn"]
    account = role.split(":")[4]
    assert arn.startswith(f"arn:aws:sagemaker:us-east-1:{account}:mlflow-app/app-")
    described = sm.describe_mlflow_app(Arn=arn)
    assert described["Status"] == "Created" and described["Name"] == "scratch"
    assert described["ArtifactStoreUri"] == f"s3://{BUCKET}/scratch" and described["RoleArn"] == role
    assert described["AccountDefaultStatus"] == "ENABLED" and described["DefaultDomainIdList"] == ["d-abc123"]
    assert described["ModelRegistrationMode"] == "AutoModelRegistrationDisabled"
    assert described["MlflowVersion"].startswith("3.") and described["CreatedBy"]["IamIdentity"]["Arn"]
    listed = sm.list_mlflow_apps(AccountDefaultStatus="ENABLED")["Summaries"]
    assert [s["Arn"] for s in listed] == [arn] and listed[0]["MlflowVersion"] == described["MlflowVersion"]
    assert [s["Arn"] for s in sm.list_mlflow_apps(DefaultForDomainId="d-abc123")["Summaries"]] == [arn]
    assert sm.list_mlflow_apps(DefaultForDomainId="d-abc12")["Summaries"] == []
    assert sm.list_mlflow_apps(MlflowVersion="0.0.1")["Summaries"] == []
    with pytest.raises(ClientError) as caught:  # one account default at a time
        sm.create_mlflow_app(Name="second", ArtifactStoreUri=f"s3://{BUCKET}/x", RoleArn=role,
                             AccountDefaultStatus="ENABLED")
    assert caught.value.response["Error"]["Code"] == "ConflictException"
    sm.update_mlflow_app(Arn=arn, Name="renamed", AccountDefaultStatus="DISABLED")
    described = sm.describe_mlflow_app(Arn=arn)
    assert described["Status"] == "Updated" and described["Name"] == "renamed"
    assert described["AccountDefaultStatus"] == "DISABLED"
    assert sm.delete_mlflow_app(Arn=arn)["Arn"] == arn
    for call in (sm.describe_mlflow_app, sm.delete_mlflow_app, sm.create_presigned_mlflow_app_url):
        with pytest.raises(ClientError) as caught:
            call(Arn=arn)
        assert caught.value.response["Error"]["Code"] == "ResourceNotFound"


def test_bad_requests_are_refused(sm, role):
    cases = [
        (dict(Name="x", ArtifactStoreUri=f"s3://{BUCKET}/x", RoleArn=role, KmsKeyId="key"), "KmsKeyId"),
        (dict(Name="x", ArtifactStoreUri=f"s3://{BUCKET}/x", RoleArn=role,
              ModelRegistrationMode="AutoModelRegistrationEnabled"), "model registry"),
        (dict(Name="x", ArtifactStoreUri=f"s3://{BUCKET}/x",
              RoleArn=role.replace("JobforgeExecutionRole", "NoSuchRole")), "does not exist"),
        (dict(Name="bad name!", ArtifactStoreUri=f"s3://{BUCKET}/x", RoleArn=role), "at 'name'"),
    ]
    for request, words in cases:
        with pytest.raises(ClientError) as caught:
            sm.create_mlflow_app(**request)
        assert caught.value.response["Error"]["Code"] == "ValidationException"
        assert words in caught.value.response["Error"]["Message"]


def test_the_tracking_api_through_sigv4_and_the_presigned_session(sm, app, tracking):
    experiment = tracking.create_experiment("signed")
    run = tracking.create_run(experiment, run_name="first")
    for step, value in enumerate((0.25, 0.5, 0.75)):
        tracking.log_metric(run.info.run_id, "rollout/reward/mean", value, step=step)
    history = tracking.get_metric_history(run.info.run_id, "rollout/reward/mean")
    assert [(m.step, m.value) for m in history] == [(0, 0.25), (1, 0.5), (2, 0.75)]

    session, base = browser_session(sm, app)
    answer = session.get(f"{base}/api/2.0/mlflow/metrics/get-history",
                         params={"run_id": run.info.run_id, "metric_key": "rollout/reward/mean"}, timeout=30)
    assert [m["value"] for m in answer.json()["metrics"]] == [0.25, 0.5, 0.75]
    found = session.post(f"{base}/ajax-api/2.0/mlflow/runs/search", json={"experiment_ids": [experiment]},
                         timeout=30).json()["runs"]
    assert [r["info"]["run_name"] for r in found] == ["first"]
    # The UI: its page, its script and what it asks the app.
    page = session.get(base + "/", timeout=30)
    assert page.status_code == 200 and "<title>MLflow</title>" in page.text
    script = page.text.split('src="', 1)[1].split('"', 1)[0]
    assert session.get(f"{base}/{script}", timeout=30).status_code == 200
    experiments = session.get(f"{base}/ajax-api/2.0/mlflow/experiments/search", params={"max_results": 20},
                              timeout=30).json()["experiments"]
    assert "signed" in [e["name"] for e in experiments]


def test_presigned_urls_are_single_use_and_sessions_are_their_own(server, sm, app):
    url = sm.create_presigned_mlflow_app_url(Arn=app)["AuthorizedUrl"]
    first = requests.get(url, allow_redirects=False, timeout=30)
    assert first.status_code == 302
    cookie = first.headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "Path=/_jobforge/mlflow/" in cookie
    assert requests.get(url, timeout=30).status_code == 403  # spent
    base = url.split("/auth?", 1)[0]
    assert requests.get(f"{base}/api/2.0/mlflow/experiments/search", timeout=30).status_code == 403  # no cookie
    forged = requests.get(f"{base}/api/2.0/mlflow/experiments/search", cookies={"jobforge-mlflow-session": "x"},
                          timeout=30)
    assert forged.status_code == 403 and forged.json()["error_code"] == "PERMISSION_DENIED"
    expired = sm.create_presigned_mlflow_app_url(Arn=app, ExpiresInSeconds=5)["AuthorizedUrl"]
    time.sleep(6)
    assert requests.get(expired, timeout=30).status_code == 403
    session, base = browser_session(sm, app)
    # The app is one workspace: it sees no other, names no other, and keeps its artifacts where it chooses.
    listed = session.get(f"{base}/api/3.0/mlflow/workspaces", timeout=30).json()["workspaces"]
    assert [w["name"] for w in listed] == [app.rsplit("/", 1)[1]]
    assert session.post(f"{base}/api/3.0/mlflow/workspaces", json={"name": "mine"}, timeout=30).status_code == 403
    answer = session.post(f"{base}/api/2.0/mlflow/experiments/create",
                          json={"name": "escape", "artifact_location": "/etc"}, timeout=30)
    assert answer.status_code == 400 and answer.json()["error_code"] == "INVALID_PARAMETER_VALUE"


def test_another_account_cannot_reach_the_app(server, sm, app, tracking):
    subprocess.run([sys.executable, "-m", "jobforge.cli", "--data-dir", str(server.data_dir), "accounts", "create",
                    "stranger"], check=True, capture_output=True, timeout=60)
    stranger = server.client("sagemaker", profile="stranger")
    for call in (stranger.describe_mlflow_app, stranger.create_presigned_mlflow_app_url):
        with pytest.raises(ClientError) as caught:
            call(Arn=app)
        assert caught.value.response["Error"]["Code"] == "ResourceNotFound"
    assert app not in [s["Arn"] for s in stranger.list_mlflow_apps()["Summaries"]]
    # The stranger's own app and its session reach only the stranger's runs.
    role = f"arn:aws:iam::{server.client('sts', profile='stranger').get_caller_identity()['Account']}:role/" \
           "JobforgeExecutionRole"
    theirs = stranger.create_mlflow_app(Name="theirs", ArtifactStoreUri="s3://theirs/mlflow", RoleArn=role)["Arn"]
    run_id = tracking.create_run(tracking.create_experiment("private")).info.run_id
    session, base = browser_session(stranger, theirs)
    assert session.get(f"{base}/api/2.0/mlflow/runs/get", params={"run_id": run_id}, timeout=30).status_code == 404
    # A signed request of the stranger's naming the first account's app.
    from botocore.auth import SigV4Auth
    from botocore.awsrequest import AWSRequest
    from botocore.credentials import Credentials

    keys = server.credentials("stranger")
    request = AWSRequest("GET", f"{server.endpoint}/api/2.0/mlflow/runs/get?run_id={run_id}",
                         headers={"x-sm-mlflow-app-arn": app})
    SigV4Auth(Credentials(keys["aws_access_key_id"], keys["aws_secret_access_key"]), "sagemaker",
              "us-east-1").add_auth(request)
    answer = requests.get(request.url, headers=dict(request.headers), timeout=30)
    assert answer.status_code == 404 and answer.json()["error_code"] == "RESOURCE_DOES_NOT_EXIST"
    unsigned = requests.get(request.url, headers={"x-sm-mlflow-app-arn": app}, timeout=30)
    assert unsigned.status_code == 403


# -- AgentRFT jobs log to the app ----------------------------------------------------------------------

@pytest.fixture(scope="module")
def agent_rl(server, sm, role, tmp_path_factory) -> str:
    """The tiny policy registered, the data in S3, the model package group and the Lambda agent."""
    register_model(server.data_dir, tmp_path_factory.mktemp("digits"))
    s3 = server.client("s3")
    s3.create_bucket(Bucket=BUCKET)
    rng = random.Random(11)
    s3.put_object(Bucket=BUCKET, Key="train.jsonl", Body=jsonl(
        {"prompt": f"episode {s}", "seed": s} for s in (rng.randrange(10 ** 6) for _ in range(32))))
    s3.put_object(Bucket=BUCKET, Key="evaluation.jsonl", Body=jsonl(
        {"prompt": f"episode {s}", "seed": s} for s in range(10 ** 6, 10 ** 6 + 4)))
    sm.create_model_package_group(ModelPackageGroupName="mlflow-digits")
    return lambda_agent(server, role, f"mlflow-agent-{uuid.uuid4().hex[:6]}")


def wait(sm, name: str, category: str) -> dict:
    deadline = time.time() + 900
    while (job := sm.describe_job(JobName=name, JobCategory=category))["JobStatus"] == "InProgress":
        assert time.time() < deadline, job["SecondaryStatus"]
        time.sleep(1)
    return job


def job_metrics(server, job_arn: str) -> dict[str, list[tuple[int, float]]]:
    """The job's own metrics, as the server keeps them: name → [(step, value)]."""
    from jobforge.core.store import job_metrics as table, jobs_table

    engine = sa.create_engine(f"sqlite:///{server.data_dir / 'jobforge.db'}")
    try:
        with engine.connect() as conn:
            job_id = conn.execute(sa.select(jobs_table.c.id).where(jobs_table.c.arn == job_arn)).scalar_one()
            rows = conn.execute(sa.select(table).where(table.c.job_id == job_id).order_by(table.c.id)).all()
    finally:
        engine.dispose()
    out: dict[str, list[tuple[int, float]]] = {}
    for row in rows:
        out.setdefault(row.name, []).append((row.step, row.value))
    return out


def test_an_agent_rft_job_logs_its_metrics_to_the_app(server, sm, role, app, tracking, agent_rl):
    account = role.split(":")[4]
    document = {
        "AgentConfig": {"CustomAgentLambdaConfig": {"LambdaArn": agent_rl}},
        "InputDataConfig": [{"ChannelName": "train", "DataSource": {"S3DataSource": {
            "S3DataType": "S3Prefix", "S3Uri": f"s3://{BUCKET}/train.jsonl"}}}],
        "OutputDataConfig": {"S3OutputPath": f"s3://{BUCKET}/output"},
        "ModelPackageConfig": {"OutputModelPackageGroupArn":
                               f"arn:aws:sagemaker:us-east-1:{account}:model-package-group/mlflow-digits"},
        "TrainingConfig": {"BaseModelArn": BASE_ARN, "MlflowConfig": {
            "MlflowResourceArn": app, "MlflowExperimentName": "signal", "MlflowRunName": "two-steps"},
            "HyperParameters": {"global_batch_size": "32", "group_size": "2", "max_steps": "2", "max_epochs": "2",
                                "max_concurrent_rollouts": "16"}},
    }
    sm.create_job(JobName="tracked", RoleArn=role, JobCategory="AgentRFT", JobConfigSchemaVersion="1.0.0",
                  JobConfigDocument=json.dumps(document))
    job = wait(sm, "tracked", "AgentRFT")
    assert job["JobStatus"] == "Completed", job.get("FailureReason")
    details = json.loads(job["JobConfigDocument"])["ServiceOutput"]["MlflowDetails"]
    experiment = tracking.get_experiment_by_name("signal")
    assert details["ExperimentId"] == experiment.experiment_id and details["ExperimentName"] == "signal"
    run = tracking.get_run(details["RunId"])
    assert run.info.run_name == details["RunName"] == "two-steps" and run.info.status == "FINISHED"
    assert run.data.tags["sagemaker.job_arn"] == job["JobArn"]
    own = job_metrics(server, job["JobArn"])
    for name in ("rollout/reward/mean", "rollout/turns/mean", "training/total_tokens", "training/num_trajectories",
                 "loss", "kl"):
        logged = [(m.step, m.value) for m in tracking.get_metric_history(details["RunId"], name)]
        assert len(logged) == 2 and logged == own[name], name
    # What the SDK reads through the presigned URL's session.
    session, base = browser_session(sm, app)
    answer = session.get(f"{base}/api/2.0/mlflow/metrics/get-history",
                         params={"run_id": details["RunId"], "metric_key": "training/num_trajectories"}, timeout=30)
    assert [m["value"] for m in answer.json()["metrics"]] == [64.0, 64.0]


def test_an_evaluation_job_logs_pass_at_k_to_the_app(server, sm, role, app, tracking, agent_rl):
    document = {
        "AgentConfig": {"CustomAgentLambdaConfig": {"LambdaArn": agent_rl}},
        "InputDataConfig": [{"ChannelName": "evaluation", "DataSource": {"S3DataSource": {
            "S3DataType": "S3Prefix", "S3Uri": f"s3://{BUCKET}/evaluation.jsonl"}}}],
        "OutputDataConfig": {"S3OutputPath": f"s3://{BUCKET}/evaluations", "MlflowConfig": {"MlflowResourceArn": app}},
        "EvaluationConfig": {"BaseModelArn": BASE_ARN, "HyperParameters": {
            "eval_group_size": "4", "pass_k_values": "[1, 2, 4]", "max_tokens": "1"}},
    }
    sm.create_job(JobName="tracked-eval", RoleArn=role, JobCategory="AgentRFTEvaluation",
                  JobConfigSchemaVersion="1.0.0", JobConfigDocument=json.dumps(document))
    job = wait(sm, "tracked-eval", "AgentRFTEvaluation")
    assert job["JobStatus"] == "Completed", job.get("FailureReason")
    details = json.loads(job["JobConfigDocument"])["ServiceOutput"]["MlflowDetails"]
    assert details["ExperimentName"] == details["RunName"] == "tracked-eval"  # the job's name by default
    run = tracking.get_run(details["RunId"])
    own = {name: values[0][1] for name, values in job_metrics(server, job["JobArn"]).items()}
    assert run.data.metrics == {name.replace("@", "_at_"): value for name, value in own.items()}
    assert {"eval/pass_at_1", "eval/pass_at_4", "eval/reward/mean"} <= set(run.data.metrics)


def test_jobs_name_an_app_of_their_own_account(server, sm, role, agent_rl):
    account = role.split(":")[4]
    document = {
        "AgentConfig": {"CustomAgentLambdaConfig": {"LambdaArn": agent_rl}},
        "InputDataConfig": [{"ChannelName": "evaluation", "DataSource": {"S3DataSource": {
            "S3DataType": "S3Prefix", "S3Uri": f"s3://{BUCKET}/evaluation.jsonl"}}}],
        "OutputDataConfig": {"S3OutputPath": f"s3://{BUCKET}/evaluations"},
        "EvaluationConfig": {"BaseModelArn": BASE_ARN},
    }
    for arn, code in ((f"arn:aws:sagemaker:us-east-1:{account}:mlflow-app/app-000000000000", "ResourceNotFound"),
                      (f"arn:aws:sagemaker:us-east-1:{account}:mlflow-tracking-server/old", "ValidationException")):
        document["OutputDataConfig"]["MlflowConfig"] = {"MlflowResourceArn": arn}
        with pytest.raises(ClientError) as caught:
            sm.create_job(JobName=f"no-app-{uuid.uuid4().hex[:6]}", RoleArn=role, JobCategory="AgentRFTEvaluation",
                          JobConfigSchemaVersion="1.0.0", JobConfigDocument=json.dumps(document))
        assert caught.value.response["Error"]["Code"] == code


def test_the_ui_opens_in_a_browser_through_a_presigned_url(sm, app, tracking):
    """Chromium (Debian's, driven by Playwright) follows the SDK's deep link to an experiment of the app."""
    if not os.path.exists("/usr/bin/chromium"):
        pytest.skip("/usr/bin/chromium is missing (apt-get install chromium)")
    sync_playwright = pytest.importorskip("playwright.sync_api").sync_playwright

    experiment = tracking.create_experiment("seen-in-the-browser")
    url = sm.create_presigned_mlflow_app_url(Arn=app)["AuthorizedUrl"]
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path="/usr/bin/chromium", args=["--no-sandbox"])
        try:
            page = browser.new_page()
            page.goto(f"{url}#/experiments/{experiment}")
            page.get_by_text("seen-in-the-browser").first.wait_for(timeout=120_000)
            assert page.url.split("#")[0].endswith(f"/_jobforge/mlflow/{app.rsplit('/', 1)[1]}/")
        finally:
            browser.close()
