"""A hybrid job's requirements.txt is installed once per account into a cached environment: a later job of the
account with the same requirements runs in it with nothing installed, a bad requirement fails the job with
AlgorithmError, and another account's job never sees the first account's environment. Jobs are created with the
Braket SDK (AwsQuantumJob.create) and with boto3.

The package installed comes from the package index pip is configured with here; without one the tests that
need it are skipped, saying so.
"""

from __future__ import annotations

import contextlib
import importlib.util
import io
import json
import re
import subprocess
import sys
import tarfile
import time
import uuid

import pytest

from jobforge.testing_server import ServerProcess

from braket_client import sdk_session

PACKAGE = "tabulate==0.10.0"  # small, pure Python, and not among the server's own packages
DEVICE = "local:braket/braket_sv"

USES_THE_PACKAGE = '''
import os
import sys

import tabulate
from braket.jobs import save_job_result


def main(other_environment: str = ""):
    seen = None
    if other_environment:
        try:
            seen = sorted(os.listdir(other_environment))
        except OSError as error:
            seen = type(error).__name__
    save_job_result({"module": tabulate.__file__, "prefix": sys.prefix, "table": tabulate.tabulate([[1, 2]]),
                     "other_environment": seen})
'''


@pytest.fixture(scope="module")
def index_has_the_package(tmp_path_factory):
    try:
        done = subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--disable-pip-version-check",
                               "--dest", str(tmp_path_factory.mktemp("download")), PACKAGE],
                              capture_output=True, text=True, timeout=120)
    except subprocess.TimeoutExpired:
        pytest.skip(f"no package index answered pip within 120 s for {PACKAGE}")
    if done.returncode != 0:
        pytest.skip(f"pip cannot download {PACKAGE} from the package index configured here: "
                    f"{(done.stderr.strip().splitlines() or ['no output'])[-1]}")


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    srv = ServerProcess(tmp_path_factory.mktemp("braket-environments") / "data").start()
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def session(server):
    with sdk_session(server) as session:
        yield session


@pytest.fixture(scope="module")
def other_account(server):
    done = subprocess.run([sys.executable, "-m", "jobforge.cli", "--data-dir", str(server.data_dir), "accounts",
                           "create", "other"], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return "other"


@pytest.fixture(scope="module")
def isolated(server) -> bool:
    """Whether the server confines jobs (per-account users or a mount namespace), as it said at start."""
    log = (server.data_dir.parent / f"server-{server.port}.log").read_text()
    found = re.search(r"Job isolation: (.*)", log)
    assert found, log
    return "none on this host" not in found.group(1)


@pytest.fixture(autouse=True)
def in_tmp_dir(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # AwsQuantumJob.result() downloads model.tar.gz here


def sdk_job(session, tmp_path, requirements: str):
    """A job of the default account made by AwsQuantumJob.create from a source folder with a requirements.txt,
    run to its end."""
    from braket.aws import AwsQuantumJob

    source = tmp_path / f"source_{uuid.uuid4().hex[:6]}"
    source.mkdir()
    (source / "algo.py").write_text(USES_THE_PACKAGE)
    (source / "requirements.txt").write_text(requirements)
    job = AwsQuantumJob.create(device=DEVICE, source_module=str(source), entry_point=f"{source.name}.algo:main",
                               aws_session=session, wait_until_complete=False)
    deadline = time.time() + 300
    while job.state() not in AwsQuantumJob.TERMINAL_STATES:
        assert time.time() < deadline, job.state()
        time.sleep(0.5)
    return job


def log_of(logs, job_name: str, job_arn: str) -> str:
    prefix = f"{job_name}/{job_arn.rsplit('/', 1)[1]}/"
    streams = logs.describe_log_streams(logGroupName="/aws/braket/jobs", logStreamNamePrefix=prefix)["logStreams"]
    assert streams, prefix
    events = logs.get_log_events(logGroupName="/aws/braket/jobs", logStreamName=streams[0]["logStreamName"],
                                 startFromHead=True)["events"]
    return "\n".join(e["message"] for e in events)


def boto3_job(server, profile: str, requirements: str, hyperparameters: dict) -> tuple[dict, dict, str]:
    """A job of the profile's account made with boto3; (GetJob, its results, its log)."""
    account = server.client("sts", profile=profile).get_caller_identity()["Account"]
    s3 = server.client("s3", profile=profile)
    bucket = f"environments-{account}"
    if bucket not in [b["Name"] for b in s3.list_buckets()["Buckets"]]:
        s3.create_bucket(Bucket=bucket)
    name = f"job-{uuid.uuid4().hex[:8]}"
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for file, text in (("algo.py", USES_THE_PACKAGE), ("requirements.txt", requirements)):
            info = tarfile.TarInfo(file)
            info.size = len(text.encode())
            tar.addfile(info, io.BytesIO(text.encode()))
    s3.put_object(Bucket=bucket, Key=f"{name}/source.tar.gz", Body=buffer.getvalue())
    braket = server.client("braket", profile=profile)
    arn = braket.create_job(
        clientToken=str(uuid.uuid4()), jobName=name, roleArn=f"arn:aws:iam::{account}:role/JobforgeExecutionRole",
        algorithmSpecification={"scriptModeConfig": {"entryPoint": "algo:main", "compressionType": "GZIP",
                                                     "s3Uri": f"s3://{bucket}/{name}/source.tar.gz"}},
        hyperParameters=hyperparameters, outputDataConfig={"s3Path": f"s3://{bucket}/{name}/out"},
        instanceConfig={"instanceType": "ml.m5.large", "volumeSizeInGb": 1},
        deviceConfig={"device": DEVICE})["jobArn"]
    deadline = time.time() + 300
    while (job := braket.get_job(jobArn=arn))["status"] not in ("COMPLETED", "FAILED", "CANCELLED"):
        assert time.time() < deadline, job["status"]
        time.sleep(0.5)
    log = log_of(server.client("logs", profile=profile), name, arn)
    assert job["status"] == "COMPLETED", (job.get("failureReason"), log)
    body = s3.get_object(Bucket=bucket, Key=f"{name}/out/output/model.tar.gz")["Body"].read()
    with tarfile.open(fileobj=io.BytesIO(body)) as bundle:
        results = json.load(bundle.extractfile("results.json"))
    return job, results["dataDictionary"], log


@pytest.fixture(scope="module")
def first_environment(index_has_the_package, session, tmp_path_factory) -> dict:
    """The default account's first job with the requirements: it builds their environment."""
    folder = tmp_path_factory.mktemp("first")
    job = sdk_job(session, folder, PACKAGE + "\n")
    log = log_of(session.logs_client, job.name, job.arn)
    assert job.state() == "COMPLETED", (job.metadata().get("failureReason"), log)
    with contextlib.chdir(folder):  # result() downloads model.tar.gz into the working directory
        return {"result": job.result(), "log": log}


def test_requirements_are_installed_once_and_reused_by_the_accounts_next_job(first_environment, session,
                                                                             tmp_path):
    first = first_environment
    assert "building an environment for this and later jobs" in first["log"]
    assert "Successfully installed tabulate-0.10.0" in first["log"]  # pip's own output, in the job's log
    assert first["result"]["table"].split() == ["-", "-", "1", "2", "-", "-"]
    assert first["result"]["module"].startswith(first["result"]["prefix"])  # installed in the job's environment

    job = sdk_job(session, tmp_path, PACKAGE + "\n")
    log = log_of(session.logs_client, job.name, job.arn)
    assert job.state() == "COMPLETED", (job.metadata().get("failureReason"), log)
    assert "using the environment an earlier job built" in log
    assert "Successfully installed" not in log and "Collecting" not in log and "Processing" not in log
    assert job.result()["prefix"] == first["result"]["prefix"]


def test_another_accounts_job_never_sees_the_first_accounts_environment(first_environment, server, other_account,
                                                                        isolated):
    job, result, log = boto3_job(server, other_account, PACKAGE + "\n",
                                 {"other_environment": first_environment["result"]["prefix"]})
    assert "building an environment for this and later jobs" in log  # its own, not the first account's
    assert "Successfully installed tabulate-0.10.0" in log
    assert result["prefix"] != first_environment["result"]["prefix"]
    if isolated:
        assert result["other_environment"] in ("FileNotFoundError", "PermissionError"), result


def test_a_bad_requirement_fails_the_job_with_algorithm_error(session, tmp_path):
    # Not a requirement pip can parse: it fails without asking any package index.
    job = sdk_job(session, tmp_path, "tabulate===>not a version\n")
    reason = job.metadata()["failureReason"]
    assert job.state() == "FAILED"
    assert reason.startswith("AlgorithmError: Installing the requirements in ") and "requirements.txt" in reason
    assert "Invalid requirement" in reason and reason.endswith(", exit code: 1"), reason
    # Nothing half-built is kept for a later job: the same requirements fail the same way again.
    again = sdk_job(session, tmp_path, "tabulate===>not a version\n")
    assert again.state() == "FAILED"
    assert "building an environment" in log_of(session.logs_client, again.name, again.arn)


USES_THE_PYTORCH_IMAGE = '''
import h5py
import openfermion
import pennylane as qml
import torch
from braket.jobs import save_job_result


def main():
    device = qml.device("lightning.qubit", wires=1)

    @qml.qnode(device, interface="torch")
    def circuit(angle):
        qml.RX(angle, wires=0)
        return qml.expval(qml.PauliZ(0))

    angle = torch.tensor(0.0, requires_grad=True)
    save_job_result({"expectation": float(circuit(angle)), "torch": torch.__file__, "h5py": h5py.__file__,
                     "openfermion": openfermion.__file__})
'''


@pytest.mark.skipif(importlib.util.find_spec("torch") is None, reason="PyTorch (the train extra) is not installed")
def test_a_pytorch_image_job_finds_the_images_packages(index_has_the_package, session, tmp_path):
    from braket.aws import AwsQuantumJob
    from braket.jobs.image_uris import Framework, retrieve_image

    (tmp_path / "algo.py").write_text(USES_THE_PYTORCH_IMAGE)
    job = AwsQuantumJob.create(device=DEVICE, source_module=str(tmp_path / "algo.py"), entry_point="algo:main",
                               image_uri=retrieve_image(Framework.PL_PYTORCH, "us-east-1"), aws_session=session,
                               wait_until_complete=False)
    deadline = time.time() + 600
    while job.state() not in AwsQuantumJob.TERMINAL_STATES:
        assert time.time() < deadline, job.state()
        time.sleep(0.5)
    log = log_of(session.logs_client, job.name, job.arn)
    assert job.state() == "COMPLETED", (job.metadata().get("failureReason"), log)
    assert "the pytorch image's packages: building an environment" in log
    result = job.result()
    assert result["expectation"] == pytest.approx(1.0)
    assert result["torch"].startswith(sys.prefix)  # the server's own PyTorch, not installed again
    assert not result["h5py"].startswith(sys.prefix) and not result["openfermion"].startswith(sys.prefix)
