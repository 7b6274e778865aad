"""Two servers on one PostgreSQL database and one S3 object store (moto's server) serve the same accounts,
objects and jobs.

Requests land on either; the database decides names and tokens (50 creates
of one name split across the servers: exactly one wins); one server
schedules, and when it is killed the other takes over: every job, running or
queued, completes once.
"""

from __future__ import annotations

import json
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
import sqlalchemy as sa
from botocore.exceptions import ClientError

import selftest_kind
from jobforge.core import jobs
from jobforge.core.store import create_engine
from jobforge.testing_server import ServerProcess
from selftest_kind import CATEGORY, SELFTEST_ENV


@pytest.fixture
def servers(tmp_path, postgres_url, external_s3):
    args = ["--database-url", postgres_url, "--cpus", "2", "--object-store", external_s3["url"]]
    env = dict(SELFTEST_ENV, **external_s3["env"])
    for name in ("a", "b"):
        (tmp_path / name).mkdir()  # where each server's log goes
    first = ServerProcess(tmp_path / "a" / "data", extra_args=args, env=env).start()
    second = ServerProcess(tmp_path / "b" / "data", extra_args=args, env=env).start()
    yield first, second
    for server in (first, second):
        server.stop()


def role(server) -> str:
    return f"arn:aws:iam::{server.client('sts').get_caller_identity()['Account']}:role/JobforgeExecutionRole"


def create(server, name: str, **document):
    return server.client("sagemaker").create_job(
        JobName=name, RoleArn=role(server), JobCategory=CATEGORY, JobConfigSchemaVersion="1.0.0",
        JobConfigDocument=json.dumps(document))


def test_fifty_creates_of_one_name_across_two_servers_make_one_job(servers):
    first, second = servers
    assert first.credentials() == second.credentials()  # one default account, in the shared database
    clients = [server.client("sagemaker") for server in (first, second)]
    arn = role(first)

    def attempt(i: int):
        try:
            clients[i % 2].create_job(JobName="only-one", RoleArn=arn, JobCategory=CATEGORY,
                                      JobConfigSchemaVersion="1.0.0",
                                      JobConfigDocument=json.dumps({"Steps": 1, "SleepSeconds": 0}))
            return "created"
        except ClientError as err:
            return err.response["Error"]["Code"]

    with ThreadPoolExecutor(50) as pool:
        outcomes = list(pool.map(attempt, range(50)))
    assert outcomes.count("created") == 1, outcomes
    assert set(outcomes) - {"created"} == {selftest_kind.KIND.errors.conflict}
    for client in clients:  # both see the one job
        assert [j["JobName"] for j in client.list_jobs(JobCategory=CATEGORY)["JobSummaries"]] == ["only-one"]


def test_an_object_written_through_one_server_is_read_through_the_other(servers, external_s3):
    first, second = servers
    first.client("s3").create_bucket(Bucket="shared")
    first.client("s3").put_object(Bucket="shared", Key="k", Body=b"written through the first")
    assert second.client("s3").get_object(Bucket="shared", Key="k")["Body"].read() == b"written through the first"
    stored = external_s3["client"].list_objects_v2(Bucket="jobforge-shared", Prefix="jobforge/blobs/")
    assert stored["KeyCount"] == 1  # the bytes are in the external store, once


def test_the_other_server_takes_over_scheduling_and_no_job_is_lost_or_run_twice(servers, postgres_url):
    first, second = servers
    names = [f"job-{i}" for i in range(6)]
    for i, name in enumerate(names):  # through both: the first server schedules them all
        create((first, second)[i % 2], name, Steps=40, SleepSeconds=0.1)
    engine = create_engine(postgres_url)
    deadline = time.time() + 60
    while sum(_record(engine, second, n).state == "RUNNING" for n in names) < 2:  # two run, four wait
        assert time.time() < deadline
        time.sleep(0.1)
    # Long enough for their checkpoints to reach the object store (the worker syncs them every second)
    while min(_steps(engine, second, n) for n in names if _record(engine, second, n).state == "RUNNING") < 15:
        assert time.time() < deadline
        time.sleep(0.1)
    first.kill()

    sm = second.client("sagemaker")
    deadline = time.time() + 180
    while any(sm.describe_job(JobName=n, JobCategory=CATEGORY)["JobStatus"] != "Completed" for n in names):
        for name in names:
            assert sm.describe_job(JobName=name, JobCategory=CATEGORY)["JobStatus"] in ("InProgress", "Completed")
        assert time.time() < deadline, [_record(engine, second, n).state for n in names]
        time.sleep(0.5)
    records = [_record(engine, second, n) for n in names]
    for job in records:
        assert [t["state"] for t in job.transitions].count("COMPLETED") == 1
        assert job.result["steps"] == 40
    interrupted = [job for job in records if job.attempt == 2]
    assert len(interrupted) == 2  # the two the killed server ran, resumed once each by the other
    assert all(job.result["resumed_from"] >= 5 for job in interrupted)
    assert all(job.attempt == 1 for job in records if job not in interrupted)  # the queued ones ran once
    with engine.connect() as conn:  # the surviving server holds the scheduling lease
        holders = conn.execute(sa.text("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory'")).scalar()
    assert holders == 1
    engine.dispose()


def _record(engine, server, name: str) -> jobs.Job:
    account = server.client("sts").get_caller_identity()["Account"]
    return jobs.get(engine, account, selftest_kind.KIND, name, region="us-east-1")


def _steps(engine, server, name: str) -> int:
    lines = [line["message"] for line in jobs.logs(engine, _record(engine, server, name).id)]
    return max([int(m.split()[1].split("/")[0]) for m in lines if m.startswith("step ")], default=0)
