"""Job code of one account cannot read the server's files or another account's.

A Braket hybrid job of a second account runs code that tries to read the data
dir's credentials file and database, a job directory of the first account,
the server's environment and its view of the files through /proc, and to plant a
file in the data dir; it reports what it got in its results. The server says
at start which isolation the host allows; the test skips with that reason
when the host allows none.
"""

from __future__ import annotations

import io
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tarfile
import tempfile
import time
import uuid
from pathlib import Path

import pytest

from jobforge.testing_server import ServerProcess

PROBE = r'''
import json
import os


def attempt(action):
    try:
        return "read: " + repr(action())[:300]
    except Exception as error:
        return f"refused: {type(error).__name__}: {error}"


def plant(path):
    with open(path, "w") as handle:
        handle.write("planted")
    return path


def main():
    with open(os.environ["AMZN_BRAKET_HP_FILE"]) as handle:
        targets = json.load(handle)
    data_dir, server = targets["data_dir"], targets["server_pid"]
    tried = {
        "credentials": lambda: open(os.path.join(data_dir, "credentials")).read(),
        "config": lambda: open(os.path.join(data_dir, "config")).read(),
        "database": lambda: open(os.path.join(data_dir, "jobforge.db"), "rb").read(100),
        "data dir listing": lambda: sorted(os.listdir(data_dir)),
        "jobs listing": lambda: sorted(os.listdir(os.path.join(data_dir, "jobs"))),
        "other job's directory": lambda: os.listdir(targets["other_job_dir"]),
        "other job's file": lambda: open(targets["other_job_file"]).read(),
        "server environment": lambda: open(f"/proc/{server}/environ", "rb").read(),
        "server's view of the data dir": lambda: os.listdir(f"/proc/{server}/root{data_dir}"),
        "planted file": lambda: plant(os.path.join(data_dir, "planted")),
    }
    with open(f"/proc/{os.getppid()}/cmdline", "rb") as worker:
        worker_command = worker.read().replace(b"\0", b" ").decode()
    report = {
        "tried": {name: attempt(action) for name, action in tried.items()},
        "jobforge_environment": {k: v for k, v in os.environ.items() if k.startswith("JOBFORGE_")},
        "uid": os.getuid(),
        "home": os.environ.get("HOME"),
        "user": os.environ.get("USER"),
        "own_directory": os.path.realpath(os.path.join(os.environ["AMZN_BRAKET_INPUT_DIR"], *[".."] * 4)),
        "worker": worker_command,
    }
    with open(os.path.join(os.environ["AMZN_BRAKET_JOB_RESULTS_DIR"], "results.json"), "w") as handle:
        json.dump(report, handle)
'''

VICTIM = r'''
import os


def main():
    with open("secret.txt", "w") as handle:
        handle.write("the first account's secret")
    print(f"uid {os.getuid()}", flush=True)
'''


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    srv = ServerProcess(tmp_path_factory.mktemp("isolation") / "data").start()
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def isolation(server) -> dict:
    """What the server said at start about the isolation in force."""
    log = (server.data_dir.parent / f"server-{server.port}.log").read_text()
    found = re.search(r"Job isolation: (.*)", log)
    assert found, log
    line = found.group(1)
    if "none on this host" in line:
        pytest.skip(f"the host offers no job isolation: {line}")
    return {"line": line, "users": "per-account users: yes" in line, "namespace": "mount namespace: yes" in line}


def archive(code: str) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        info = tarfile.TarInfo("algo.py")
        info.size = len(code.encode())
        tar.addfile(info, io.BytesIO(code.encode()))
    return buffer.getvalue()


def run_job(server, profile: str, code: str, hyperparameters: dict | None = None) -> tuple[dict, str, str]:
    """Run a hybrid job of the profile's account; (GetJob, its bucket, its output prefix)."""
    account = server.client("sts", profile=profile).get_caller_identity()["Account"]
    s3 = server.client("s3", profile=profile)
    bucket = f"isolation-{account}"
    if bucket not in [b["Name"] for b in s3.list_buckets()["Buckets"]]:
        s3.create_bucket(Bucket=bucket)
    name = f"job-{uuid.uuid4().hex[:8]}"
    s3.put_object(Bucket=bucket, Key=f"{name}/source.tar.gz", Body=archive(code))
    braket = server.client("braket", profile=profile)
    request = dict(
        clientToken=str(uuid.uuid4()), jobName=name, roleArn=f"arn:aws:iam::{account}:role/JobforgeExecutionRole",
        algorithmSpecification={"scriptModeConfig": {"entryPoint": "algo:main", "compressionType": "GZIP",
                                                     "s3Uri": f"s3://{bucket}/{name}/source.tar.gz"}},
        inputDataConfig=[{"channelName": "unused", "dataSource": {"s3DataSource": {
            "s3Uri": f"s3://{bucket}/{name}/source.tar.gz"}}}],
        outputDataConfig={"s3Path": f"s3://{bucket}/{name}/out"},
        instanceConfig={"instanceType": "ml.m5.large", "volumeSizeInGb": 1},
        deviceConfig={"device": "local:braket/braket_sv"})
    if hyperparameters:
        request["hyperParameters"] = hyperparameters
    arn = braket.create_job(**request)["jobArn"]
    deadline = time.time() + 120
    while (job := braket.get_job(jobArn=arn))["status"] not in ("COMPLETED", "FAILED", "CANCELLED"):
        assert time.time() < deadline, job["status"]
        time.sleep(0.2)
    assert job["status"] == "COMPLETED", job.get("failureReason")
    return job, bucket, f"{name}/out"


def results(server, profile: str, bucket: str, prefix: str) -> dict:
    body = server.client("s3", profile=profile).get_object(Bucket=bucket, Key=f"{prefix}/output/model.tar.gz")
    with tarfile.open(fileobj=io.BytesIO(body["Body"].read())) as bundle:
        return json.load(bundle.extractfile("results.json"))


@pytest.fixture(scope="module")
def intruder(server):
    done = subprocess.run([sys.executable, "-m", "jobforge.cli", "--data-dir", str(server.data_dir), "accounts",
                           "create", "intruder"], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return "intruder"


@pytest.fixture(scope="module")
def victim_file(server) -> Path:
    run_job(server, "default", VICTIM)
    found = list((server.data_dir / "jobs").glob("*/attempt-1/braket/code/customer_code/extracted/secret.txt"))
    assert len(found) == 1
    return found[0]


def attack(server, intruder, victim_file) -> dict:
    targets = {"data_dir": str(server.data_dir), "server_pid": str(server.process.pid),
               "other_job_dir": str(victim_file.parent), "other_job_file": str(victim_file)}
    _, bucket, prefix = run_job(server, intruder, PROBE, targets)
    return results(server, intruder, bucket, prefix)


def assert_nothing_leaked(server, report: dict, profile: str) -> None:
    own = Path(report["own_directory"])
    # All it may see: its own directory and the folder its account's hybrid jobs share (their environments).
    account_folder = f"account-{server.client('sts', profile=profile).get_caller_identity()['Account']}"
    allowed = {"data dir listing": "read: ['jobs']", "jobs listing": f"read: {sorted([account_folder, own.name])!r}"}
    leaked = {name: outcome for name, outcome in report["tried"].items()
              if not outcome.startswith("refused") and allowed.get(name) != outcome}
    assert leaked == {}, report
    assert report["jobforge_environment"] == {}
    assert not (server.data_dir / "planted").exists()


def test_a_second_accounts_job_reads_nothing_of_the_server_or_the_first_account(server, isolation, intruder,
                                                                                victim_file):
    report = attack(server, intruder, victim_file)
    assert_nothing_leaked(server, report, intruder)
    assert Path(report["own_directory"]).parent == server.data_dir / "jobs"
    victim_uid = victim_file.stat().st_uid
    if isolation["users"]:
        assert report["uid"] not in (0, victim_uid, os.getuid())
        assert victim_uid not in (0, os.getuid())
        assert report["user"].startswith("jobforge-") and "/jobs/" in report["home"]
    if isolation["namespace"]:
        assert "FileNotFoundError" in report["tried"]["other job's directory"]  # not even there


def test_a_cold_started_worker_is_confined_the_same_way(server, isolation, intruder, victim_file):
    """Without the warm fork server (killed here; a new one is still importing), the worker starts cold."""
    zygotes = [int(pid) for pid in os.listdir("/proc") if pid.isdigit() and _is_zygote_of(int(pid), server)]
    assert zygotes
    for pid in zygotes:
        os.kill(pid, signal.SIGKILL)
    time.sleep(0.5)
    report = attack(server, intruder, victim_file)
    assert "jobforge.execution.worker" in report["worker"], report["worker"]
    assert " -P " in report["worker"]  # the job's directory, its working directory, is not on its import path
    assert_nothing_leaked(server, report, intruder)


def test_both_mechanisms_are_in_force_for_a_root_server(isolation):
    if os.geteuid() != 0:
        pytest.skip("per-account users need a server running as root")
    assert isolation["users"], isolation["line"]
    if "no mount namespace" in isolation["line"]:
        pytest.skip(f"this host allows no mount namespace: {isolation['line']}")
    assert isolation["namespace"], isolation["line"]


def _is_zygote_of(pid: int, server) -> bool:
    try:
        command = Path(f"/proc/{pid}/cmdline").read_bytes()
        parent = int(Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[1])
    except (OSError, ValueError):
        return False
    return b"jobforge.execution.zygote" in command and parent == server.process.pid


ENTER_AND_READ = r'''
import json, os, sys
from jobforge.execution import isolation

confinement, data_dir = json.loads(sys.argv[1]), sys.argv[2]
isolation.enter(confinement)
outcomes = {}
for name in ("credentials", "config", "jobforge.db", "job-users.json", "objects", "jobs", "."):
    path = os.path.join(data_dir, name)
    try:
        outcomes[name] = "read: " + repr(os.listdir(path) if os.path.isdir(path) else open(path, "rb").read(20))
    except OSError as error:
        outcomes[name] = f"refused: {error.strerror}"
with open("mine.txt", "w") as handle:
    handle.write("the job's own file")
print(json.dumps({"outcomes": outcomes, "uid": os.getuid(), "cwd": os.getcwd()}))
'''


@pytest.fixture
def open_folder():
    """A folder other users can pass through (pytest's own are closed to them)."""
    folder = Path(tempfile.mkdtemp(prefix="jobforge-modes-"))
    folder.chmod(0o711)
    closed = [p for p in folder.parents if not p.stat().st_mode & 0o001]
    if closed:
        shutil.rmtree(folder)
        pytest.skip(f"{closed[0]} is closed to other users")
    yield folder
    shutil.rmtree(folder)


def test_without_namespaces_file_modes_keep_a_job_user_out(open_folder):
    """Per-account users alone (a root server on a host without namespaces): the data dir's modes do the work."""
    if os.geteuid() != 0:
        pytest.skip("per-account users need a server running as root")
    from jobforge.config import Settings
    from jobforge.execution.isolation import prepare_job_dir
    from jobforge.execution.job_users import JobUsers
    from jobforge.server.runtime import Runtime

    base = open_folder
    umask = os.umask(0o077)
    try:
        Runtime(Settings(data_dir=base / "data")).engine.dispose()  # the data dir a server makes, modes fixed
    finally:
        os.umask(umask)
    user = JobUsers(base / "data" / "job-users.json").for_account("123456789012")
    confinement = {"job_dir": str(base / "data" / "jobs" / "job-1"), "hide": [], "readable": [], "namespaces": False,
                   "pid_namespace": False, "user": user.as_dict()}
    job_dir = prepare_job_dir(confinement)
    done = subprocess.run([sys.executable, "-c", ENTER_AND_READ, json.dumps(confinement), str(base / "data")],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["uid"] == user.uid and report["cwd"] == str(job_dir)
    assert {name: outcome for name, outcome in report["outcomes"].items()
            if not outcome.startswith("refused: Permission denied")} == {}, report
    assert (job_dir / "mine.txt").stat().st_uid == user.uid
