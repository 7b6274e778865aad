"""A resumed attempt whose checkpoint directory is gone (as on another node) starts from the checkpoints
the worker kept in the object store, not from the beginning."""

from __future__ import annotations

import json
import os
import shutil
import signal
import time

import sqlalchemy as sa

from jobforge.core.store import create_engine, job_logs, jobs_table
from jobforge.execution.local import local_pid
from jobforge.testing_server import ServerProcess

from selftest_kind import CATEGORY as TEST_CATEGORY, SELFTEST_ENV


def _record(data_dir, name: str):
    with create_engine(f"sqlite:///{data_dir / 'jobforge.db'}").connect() as conn:
        return conn.execute(sa.select(jobs_table).where(jobs_table.c.name == name)).one()


def _stored_position(s3, bucket: str, key: str) -> int:
    try:
        return json.loads(s3.get_object(Bucket=bucket, Key=key)["Body"].read())["next"]
    except s3.exceptions.NoSuchKey:
        return 0


def test_a_resumed_attempt_restores_its_checkpoints_from_the_object_store(tmp_path):
    server = ServerProcess(tmp_path / "data", env=SELFTEST_ENV).start()
    try:
        account = server.client("sts").get_caller_identity()["Account"]
        server.client("sagemaker").create_job(
            JobName="wanderer", RoleArn=f"arn:aws:iam::{account}:role/JobforgeExecutionRole",
            JobCategory=TEST_CATEGORY, JobConfigSchemaVersion="1.0.0",
            JobConfigDocument=json.dumps({"Steps": 40, "SleepSeconds": 0.1}))
        job_id = _record(server.data_dir, "wanderer").id
        s3, bucket, key = server.client("s3"), f"jobforge-checkpoints-{account}", f"{job_id}/position.json"
        deadline = time.time() + 30
        while (stored := _stored_position(s3, bucket, key)) < 5:
            assert time.time() < deadline, "no checkpoint reached the object store"
            time.sleep(0.2)
        server.kill()
        os.killpg(local_pid(_record(server.data_dir, "wanderer").handle), signal.SIGKILL)
    finally:
        server.kill()
    shutil.rmtree(server.data_dir / "jobs" / job_id / "checkpoints")  # the next attempt runs "elsewhere"

    restarted = ServerProcess(tmp_path / "data", port=server.port, env=SELFTEST_ENV).start()
    try:
        deadline = time.time() + 60
        while (record := _record(restarted.data_dir, "wanderer")).state not in ("COMPLETED", "FAILED"):
            assert time.time() < deadline, record.state
            time.sleep(0.2)
        assert record.state == "COMPLETED", record.failure_reason
        assert record.attempt == 2
        assert record.result["resumed_from"] >= stored >= 5  # from the object store's copy, not from step 0
        with create_engine(f"sqlite:///{restarted.data_dir / 'jobforge.db'}").connect() as conn:
            messages = conn.execute(sa.select(job_logs.c.message).where(job_logs.c.job_id == job_id)).scalars().all()
        assert any("restored the checkpoints from the object store" in m for m in messages)
        s3 = restarted.client("s3")  # a job that ended resumes no more: its copy is gone
        assert s3.list_objects_v2(Bucket=bucket, Prefix=f"{job_id}/")["KeyCount"] == 0
    finally:
        restarted.stop()
