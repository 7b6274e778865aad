"""Braket hybrid jobs end to end through the Braket SDK against a real server.

Jobs are created with ``AwsQuantumJob.create`` and ``@hybrid_job``; inside
them ``AwsDevice(os.environ["AMZN_BRAKET_DEVICE_ARN"])`` submits quantum tasks
that this server runs. Covers logs streamed by ``wait_until_complete=True``,
results and metrics read by the SDK, tasks tied to their job, cancel,
failures, the runtime limit and a server killed mid-job.
"""

from __future__ import annotations

import json
import time
from typing import TYPE_CHECKING

import boto3
import pytest
import sqlalchemy as sa

from jobforge.core.store import create_engine, job_metrics
from jobforge.testing_server import ServerProcess

from braket_client import sdk_environment, sdk_session

if TYPE_CHECKING:  # the Braket SDK is imported by the tests that use it, so that collecting them stays fast
    from braket.aws import AwsQuantumJob

SV1 = "arn:aws:braket:::device/quantum-simulator/amazon/sv1"

ALGORITHM = '''
import os
import time

from braket.aws import AwsDevice
from braket.circuits import Circuit
from braket.jobs import load_job_checkpoint, save_job_checkpoint, save_job_result
from braket.jobs.metrics import log_metric


def bell(shots: int = 100, rounds: int = 3):
    device = AwsDevice(os.environ["AMZN_BRAKET_DEVICE_ARN"])
    print(f"running on {device.name}")
    counts = {}
    for i in range(rounds):
        counts = device.run(Circuit().h(0).cnot(0, 1), shots=shots).result().measurement_counts
        log_metric("p00", counts.get("00", 0) / shots, iteration_number=i)
    save_job_result({"counts": dict(counts), "tasks": rounds})


def slow(steps: int = 60, pause: float = 0.5):
    try:
        start = load_job_checkpoint(checkpoint_file_suffix="loop")["next"]
    except FileNotFoundError:
        start = 0
    print(f"starting at {start}", flush=True)
    for i in range(start, steps):
        log_metric("step", i, iteration_number=i)
        save_job_checkpoint({"next": i + 1}, checkpoint_file_suffix="loop")
        time.sleep(pause)
    save_job_result({"start": start})


def broken():
    raise ValueError("the ansatz has no parameters")
'''


@pytest.fixture(autouse=True)
def in_tmp_dir(tmp_path, monkeypatch):
    """AwsQuantumJob.result() downloads model.tar.gz into the working directory."""
    monkeypatch.chdir(tmp_path)


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    srv = ServerProcess(tmp_path_factory.mktemp("braket-sdk") / "data").start()
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def sdk_env(server):
    """Point the SDK (and every boto3 client it makes) at the server."""
    with sdk_environment(server):
        yield


@pytest.fixture(scope="module")
def session(sdk_env):
    from braket.aws import AwsSession

    return AwsSession(boto_session=boto3.Session(region_name="us-east-1"))


@pytest.fixture(scope="module")
def source(tmp_path_factory) -> str:
    path = tmp_path_factory.mktemp("code") / "algo.py"
    path.write_text(ALGORITHM)
    return str(path)


@pytest.fixture(scope="module")
def role(session) -> str:
    return f"arn:aws:iam::{session.account_id}:role/service-role/AmazonBraketJobsExecutionRole"


def create(session, role, source, entry, **kwargs) -> AwsQuantumJob:
    """role=None leaves the SDK to find its default role (AmazonBraketJobsExecutionRole under /service-role/)."""
    from braket.aws import AwsQuantumJob

    return AwsQuantumJob.create(device=SV1, source_module=source, entry_point=f"algo:{entry}", role_arn=role,
                                aws_session=session, **kwargs)


def wait_for(predicate, timeout=60, interval=0.2):
    deadline = time.time() + timeout
    while time.time() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError("timed out")


def test_job_through_the_sdk(session, role, source, capsys):
    job = create(session, None, source, "bell", hyperparameters={"shots": "200"}, wait_until_complete=True)
    assert job.metadata()["roleArn"] == role
    streamed = capsys.readouterr().out
    assert "running on SV1" in streamed and "Metrics - " in streamed  # the job's log, streamed by the SDK
    assert job.state() == "COMPLETED"
    result = job.result()
    assert result["tasks"] == 3 and sum(result["counts"].values()) == 200
    assert set(result["counts"]) <= {"00", "11"}
    metrics = job.metrics()
    assert metrics["iteration_number"] == [0, 1, 2] and all(0 < p < 1 for p in metrics["p00"])
    events = [e["eventType"] for e in job.metadata()["events"]]
    assert events == ["QUEUED_FOR_EXECUTION", "STARTING_INSTANCE", "DOWNLOADING_DATA", "RUNNING",
                      "UPLOADING_RESULTS", "COMPLETED"]
    tasks = job.get_tasks()  # SearchQuantumTasks filtered by jobArn
    assert len(tasks) == 3
    assert {session.get_quantum_task(t.id)["jobArn"] for t in tasks} == {job.arn}
    assert all(t.state() == "COMPLETED" for t in tasks)
    queue = session.braket_client.get_quantum_task(quantumTaskArn=tasks[0].id,
                                                   additionalAttributeNames=["QueueInfo"])["queueInfo"]
    assert queue["queuePriority"] == "Priority"  # tasks of a job are queued at priority


def test_hybrid_job_decorator(session, role):
    from braket.aws import AwsQuantumJob
    from braket.jobs import hybrid_job

    @hybrid_job(device=SV1, aws_session=session, role_arn=role, wait_until_complete=False)
    def expectation(theta: float = 0.3):
        import math

        from braket.aws import AwsDevice
        from braket.circuits import Circuit, Observable
        from braket.jobs import get_job_device_arn

        device = AwsDevice(get_job_device_arn())
        circuit = Circuit().ry(0, theta).expectation(Observable.Z(), target=[0])
        value = device.run(circuit, shots=0).result().values[0]
        return {"expectation": value, "exact": math.cos(theta)}

    job = expectation(0.7)
    wait_for(lambda: job.state() in AwsQuantumJob.TERMINAL_STATES, timeout=120)
    assert job.state() == "COMPLETED", job.metadata().get("failureReason")
    result = job.result()
    assert result["expectation"] == pytest.approx(result["exact"], abs=1e-12)


def test_cancel_mid_run(session, role, source):
    job = create(session, role, source, "slow", hyperparameters={"steps": "600"})
    wait_for(lambda: job.state() == "RUNNING" and "Metrics - " in _log(session, job), timeout=90)
    assert session.cancel_job(job.arn)["cancellationStatus"] == "CANCELLING"
    wait_for(lambda: job.state() == "CANCELLED", timeout=30)
    events = [e["eventType"] for e in job.metadata()["events"]]
    assert events[-1] == "CANCELLED" and "RUNNING" in events


def test_user_exception_fails_the_job(session, role, source):
    from braket.aws import AwsQuantumJob

    job = create(session, role, source, "broken")
    wait_for(lambda: job.state() in AwsQuantumJob.TERMINAL_STATES, timeout=90)
    metadata = job.metadata()
    assert metadata["status"] == "FAILED"
    assert metadata["failureReason"] == "AlgorithmError: ValueError: the ansatz has no parameters, exit code: 1"
    assert metadata["events"][-1]["eventType"] == "FAILED"
    assert "Traceback" in _log(session, job)


def test_max_runtime_is_enforced(session, role, source):
    from braket.aws import AwsQuantumJob
    from braket.jobs.config import StoppingCondition

    job = create(session, role, source, "slow", hyperparameters={"steps": "600"},
                 stopping_condition=StoppingCondition(maxRuntimeInSeconds=8))
    wait_for(lambda: job.state() in AwsQuantumJob.TERMINAL_STATES, timeout=90)
    metadata = job.metadata()
    assert metadata["status"] == "FAILED" and "MaxRuntimeInSeconds" in metadata["failureReason"]
    assert "MAX_RUNTIME_EXCEEDED" in [e["eventType"] for e in metadata["events"]]


def test_job_created_without_optional_settings_reads_back_their_defaults(session, role, source, capsys):
    """GetJob fills in the modelled defaults, so the SDK can stream the logs of a job boto3 created."""
    from braket.aws import AwsQuantumJob

    bucket = session.default_bucket()
    session.s3_client.upload_file(source, bucket, "plain/algo.py")
    arn = session.braket_client.create_job(
        clientToken=str(time.time_ns()), jobName=f"bare-{time.time_ns() % 10**9}", roleArn=role,
        algorithmSpecification={"scriptModeConfig": {"entryPoint": "algo:broken",
                                                     "s3Uri": f"s3://{bucket}/plain/algo.py"}},
        outputDataConfig={"s3Path": f"s3://{bucket}/plain/out"}, deviceConfig={"device": SV1},
        instanceConfig={"instanceType": "ml.m5.large", "volumeSizeInGb": 30}, stoppingCondition={})["jobArn"]
    job = AwsQuantumJob(arn, aws_session=session)
    metadata = job.metadata()
    assert metadata["instanceConfig"] == {"instanceType": "ml.m5.large", "volumeSizeInGb": 30, "instanceCount": 1}
    assert metadata["stoppingCondition"] == {"maxRuntimeInSeconds": 432000}
    assert "compressionType" not in metadata["algorithmSpecification"]["scriptModeConfig"]  # no modelled default
    capsys.readouterr()
    job.logs(wait=True, poll_interval_seconds=0.2)  # KeyError 'instanceCount' before the default was returned
    assert "ValueError: the ansatz has no parameters" in capsys.readouterr().out
    assert job.state() == "FAILED"


def _log(session, job) -> str:
    prefix = f"{job.name}/{job.arn.rsplit('/', 1)[1]}/"
    logs = session.logs_client
    streams = logs.describe_log_streams(logGroupName="/aws/braket/jobs", logStreamNamePrefix=prefix)["logStreams"]
    if not streams:
        return ""
    events = logs.get_log_events(logGroupName="/aws/braket/jobs", logStreamName=streams[0]["logStreamName"],
                                 startFromHead=True)["events"]
    return "\n".join(e["message"] for e in events)


def test_server_killed_mid_job_resumes_from_checkpoint(tmp_path, source):
    from braket.aws import AwsQuantumJob

    data = tmp_path / "data"
    first = ServerProcess(data).start()
    second = None
    try:
        with sdk_session(first) as session:
            role = f"arn:aws:iam::{session.account_id}:role/service-role/AmazonBraketJobsExecutionRole"
            job = AwsQuantumJob.create(device="local:braket/braket_sv", source_module=source, entry_point="algo:slow",
                                       hyperparameters={"steps": "8", "pause": "0.5"}, role_arn=role,
                                       aws_session=session)
            engine = create_engine(f"sqlite:///{data / 'jobforge.db'}")
            wait_for(lambda: _steps(engine) >= 3 and _checkpointed(session.account_id) >= 3, timeout=90)
            first.kill()
            second = ServerProcess(data, port=first.port).start()
            wait_for(lambda: job.state() in AwsQuantumJob.TERMINAL_STATES, timeout=120)
            assert job.state() == "COMPLETED", job.metadata().get("failureReason")
            assert job.result()["start"] >= 3  # continued from its checkpoint, not from the beginning
            assert "QUEUED_FOR_EXECUTION" in [e["eventType"] for e in job.metadata()["events"][2:]]
    finally:
        for srv in (second, first):
            if srv is not None:
                srv.stop()


def _checkpointed(account: str) -> int:
    """The step of the job's checkpoint that has reached the object store (what a restarted attempt reads)."""
    s3 = boto3.client("s3", region_name="us-east-1")
    bucket = f"jobforge-checkpoints-{account}"
    try:
        keys = [o["Key"] for o in s3.list_objects_v2(Bucket=bucket).get("Contents", [])]
    except s3.exceptions.NoSuchBucket:
        return 0
    steps = []
    for key in (k for k in keys if k.endswith("_loop.json")):
        try:  # the sync may replace the object between the listing and the read
            steps.append(json.loads(s3.get_object(Bucket=bucket, Key=key)["Body"].read())["dataDictionary"]["next"])
        except s3.exceptions.NoSuchKey:
            pass
    return max(steps, default=0)


def _steps(engine) -> int:
    with engine.connect() as conn:
        return conn.execute(sa.select(sa.func.count()).select_from(job_metrics)).scalar_one()
