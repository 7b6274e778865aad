"""kill -9 of the server while jobs run: after a restart every job reaches a
terminal state or resumes from its checkpoint; nothing stays InProgress."""

from __future__ import annotations

import json
import os
import time

from jobforge.core import jobs
from jobforge.core.store import create_engine
from jobforge.execution.local import local_pid

import selftest_kind
from selftest_kind import CATEGORY as TEST_CATEGORY, SELFTEST_ENV
from jobforge.testing_server import ServerProcess


def _describe(sm, name):
    return sm.describe_job(JobName=name, JobCategory=TEST_CATEGORY)


def test_server_killed_mid_job_resumes_from_checkpoint(tmp_path):
    server = ServerProcess(tmp_path / "data", env=SELFTEST_ENV).start()
    try:
        sm = server.client("sagemaker")
        account = server.client("sts").get_caller_identity()["Account"]
        role = f"arn:aws:iam::{account}:role/JobforgeExecutionRole"
        sm.create_job(JobName="survivor", RoleArn=role, JobCategory=TEST_CATEGORY, JobConfigSchemaVersion="1.0.0",
                      JobConfigDocument=json.dumps({"Steps": 30, "SleepSeconds": 0.1}))
        deadline = time.time() + 30
        while time.time() < deadline:  # wait for a few checkpointed steps
            checkpoints = list((server.data_dir / "jobs").glob("*/checkpoints/position.json"))
            if checkpoints and json.loads(checkpoints[0].read_text())["next"] >= 5:
                break
            time.sleep(0.1)
        server.kill()
        orphan = local_pid(_job(server.data_dir, account).handle)
        assert _alive(orphan)  # the worker outlives the server in its own process group
    finally:
        server.kill()

    restarted = ServerProcess(tmp_path / "data", port=server.port, env=SELFTEST_ENV).start()
    try:
        sm = restarted.client("sagemaker")
        deadline = time.time() + 60
        while time.time() < deadline:
            job = _describe(sm, "survivor")
            if job["JobStatus"] != "InProgress":
                break
            time.sleep(0.2)
        assert job["JobStatus"] == "Completed", job
        assert any(t["Status"] == "Restarting" for t in job["SecondaryStatusTransitions"])
        assert not _alive(orphan)  # the old attempt's worker was killed
        record = _job(restarted.data_dir, account)
        assert record.attempt == 2
        assert record.result["resumed_from"] >= 5  # it did not start over
        messages = [line["message"] for line in jobs.logs(_engine(restarted.data_dir), record.id)]
        assert any("resuming from the last checkpoint" in m for m in messages)
        assert any(m.startswith("Resuming at step") for m in messages)
    finally:
        restarted.stop()


def _engine(data_dir):
    return create_engine(f"sqlite:///{data_dir / 'jobforge.db'}")


def _job(data_dir, account):
    return jobs.get(_engine(data_dir), account, selftest_kind.KIND, "survivor", region="us-east-1")


def _alive(pid) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return not open(f"/proc/{pid}/stat").read().split()[2] == "Z"
