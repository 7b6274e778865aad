"""The whole server on PostgreSQL: a job runs, and its record survives a restart."""

from __future__ import annotations

import json
import time

from selftest_kind import CATEGORY as TEST_CATEGORY, SELFTEST_ENV
from jobforge.testing_server import ServerProcess


def test_server_on_postgresql(tmp_path, postgres_url):
    args = ["--database-url", postgres_url]
    server = ServerProcess(tmp_path / "data", extra_args=args, env=SELFTEST_ENV).start()
    try:
        sm = server.client("sagemaker")
        account = server.client("sts").get_caller_identity()["Account"]
        sm.create_job(JobName="pg-job", RoleArn=f"arn:aws:iam::{account}:role/JobforgeExecutionRole",
                      JobCategory=TEST_CATEGORY, JobConfigSchemaVersion="1.0.0",
                      JobConfigDocument=json.dumps({"Steps": 3, "SleepSeconds": 0.05}))
        deadline = time.time() + 60
        while sm.describe_job(JobName="pg-job", JobCategory=TEST_CATEGORY)["JobStatus"] == "InProgress":
            assert time.time() < deadline
            time.sleep(0.2)
    finally:
        server.stop()
    assert not (tmp_path / "data" / "jobforge.db").exists()  # nothing went to SQLite
    restarted = ServerProcess(tmp_path / "data", extra_args=args, env=SELFTEST_ENV).start()
    try:
        job = restarted.client("sagemaker").describe_job(JobName="pg-job", JobCategory=TEST_CATEGORY)
        assert job["JobStatus"] == "Completed"
    finally:
        restarted.stop()
