"""The jobforge CLI: version, accounts, jobs list/describe/logs/watch; and
recovery of a job whose workload cannot resume."""

from __future__ import annotations

import configparser
import json
import os
import subprocess
import sys
import time

from selftest_kind import CATEGORY as TEST_CATEGORY, SELFTEST_ENV
from jobforge.config import Settings
from jobforge.core import jobs, kinds
from jobforge.core.kinds import Workload


def cli(*args, data_dir=None, check=True, env=None):
    prefix = ["--data-dir", str(data_dir)] if data_dir else []
    return subprocess.run([sys.executable, "-m", "jobforge.cli", *prefix, *args], capture_output=True, text=True,
                          check=check, timeout=120, env=dict(os.environ, **env) if env else None)


def test_version():
    assert cli("version").stdout.startswith("jobforge 0.")


def test_jobs_commands_follow_a_job(server, role_arn):
    sm = server.client("sagemaker")
    sm.create_job(JobName="cli-job", RoleArn=role_arn, JobCategory=TEST_CATEGORY, JobConfigSchemaVersion="1.0.0",
                  JobConfigDocument=json.dumps({"Steps": 6, "SleepSeconds": 0.2}))
    watched = cli("jobs", "watch", "cli-job", "--interval", "0.2", data_dir=server.data_dir)
    assert "cli-job: COMPLETED" in watched.stdout
    assert "100%" in watched.stderr  # the progress bar reached the end
    listed = cli("jobs", "list", data_dir=server.data_dir).stdout
    assert "cli-job" in listed and "COMPLETED" in listed
    described = json.loads(cli("jobs", "describe", "cli-job", data_dir=server.data_dir).stdout)
    assert described["state"] == "COMPLETED" and described["result"]["steps"] == 6
    as_the_api_says = json.loads(cli("jobs", "describe", "cli-job", "--api", data_dir=server.data_dir,
                                          env=SELFTEST_ENV).stdout)
    described_by_the_api = sm.describe_job(JobName="cli-job", JobCategory=TEST_CATEGORY)
    assert as_the_api_says["JobStatus"] == described_by_the_api["JobStatus"] == "Completed"
    assert as_the_api_says["JobArn"] == described_by_the_api["JobArn"]
    assert as_the_api_says["SecondaryStatus"] == described_by_the_api["SecondaryStatus"]
    logs = cli("jobs", "logs", "cli-job", data_dir=server.data_dir).stdout
    assert "step 6/6" in logs
    assert cli("jobs", "describe", "nope", data_dir=server.data_dir, check=False).returncode != 0


def test_accounts_create_writes_a_profile(tmp_path):
    data = tmp_path / "data"
    out = cli("accounts", "create", "research", data_dir=data).stdout
    assert "research" in out
    creds = configparser.ConfigParser()
    creds.read(data / "credentials")
    assert set(creds.sections()) == {"default", "research"}
    assert creds["research"]["aws_access_key_id"].startswith("AKIA")
    assert cli("accounts", "create", "research", data_dir=data, check=False).returncode != 0


def test_store_options_work_before_and_after_the_command(tmp_path):
    data = tmp_path / "data"
    cli("accounts", "create", "after", "--data-dir", str(data))
    cli("--data-dir", str(data), "accounts", "create", "before")
    creds = configparser.ConfigParser()
    creds.read(data / "credentials")
    assert {"after", "before"} <= set(creds.sections())
    assert "NAME" in cli("jobs", "list", "--data-dir", str(data)).stdout
    assert "MODEL ID" in cli("models", "list", "--data-dir", str(data)).stdout


def test_profiles_follow_the_server_of_their_data_dir(tmp_path):
    from jobforge.testing_server import ServerProcess

    data = tmp_path / "data"
    first = ServerProcess(data).start()
    first.stop()
    cli("accounts", "create", "later", "--data-dir", str(data))  # no server running
    second = ServerProcess(data).start()  # another free port
    try:
        config = configparser.ConfigParser()
        config.read(data / "config")
        assert config["default"]["endpoint_url"] == config["profile later"]["endpoint_url"] == second.endpoint
        assert second.client("sts", profile="later").get_caller_identity()["Account"]
    finally:
        second.stop()


def test_serve_on_a_taken_port_says_so(tmp_path):
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = cli("serve", "--port", str(port), data_dir=tmp_path / "data", check=False)
    assert result.returncode != 0 and f"cannot serve on 127.0.0.1:{port}" in result.stderr
    assert "serving on" not in result.stdout


def test_serve_takes_an_ipv6_host(tmp_path):
    import socket

    from jobforge.testing_server import free_port

    if not socket.has_ipv6:
        return
    port = free_port()
    server = subprocess.Popen([sys.executable, "-m", "jobforge.cli", "--data-dir", str(tmp_path / "data"), "serve",
                               "--host", "::1", "--port", str(port)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True)
    try:
        deadline = time.time() + 60
        while time.time() < deadline and server.poll() is None:
            try:
                with socket.create_connection(("::1", port), timeout=1):
                    break
            except OSError:
                time.sleep(0.2)
        assert server.poll() is None, server.communicate()[1]
    finally:
        server.terminate()
        server.wait(timeout=30)


def test_restart_fails_running_jobs_that_cannot_resume(tmp_path, monkeypatch):
    from jobforge.api.sagemaker_jobs import job_category
    from jobforge.server.runtime import Runtime

    one_shot = job_category("OneShot", Workload("jobforge.workloads.testing", resumable=False), {}, None)
    monkeypatch.setitem(kinds.KINDS, one_shot.name, one_shot)
    runtime = Runtime(Settings(data_dir=tmp_path / "data"))
    account = runtime.default_credential.account_id
    job, _ = jobs.create(runtime.engine, account_id=account, region="us-east-1", kind=one_shot,
                         name="interrupted", spec={}, resources={"cpus": 1})
    jobs.transition(runtime.engine, job.id, "RUNNING", handle=f"local:{2 ** 22 + 7}:")  # no such process
    runtime.scheduler.recover()
    after = jobs.load(runtime.engine, job.id)
    assert after.state == "FAILED"
    assert "cannot resume" in after.failure_reason
    assert after.ended_at >= after.started_at <= time.time()
