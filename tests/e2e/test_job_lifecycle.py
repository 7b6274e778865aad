"""The one job lifecycle, end to end through boto3 (SageMaker CreateJob family,
bound to the engine's self-test workload in this server)."""

from __future__ import annotations

import json
import threading
import time

import pytest
from botocore.exceptions import ClientError

from selftest_kind import CATEGORY as TEST_CATEGORY

TERMINAL = ("Completed", "Failed", "Stopped")


def create(sm, role_arn, name, **document):
    return sm.create_job(JobName=name, RoleArn=role_arn, JobCategory=TEST_CATEGORY, JobConfigSchemaVersion="1.0.0",
                         JobConfigDocument=json.dumps(document), Tags=[{"Key": "team", "Value": "qa"}])


def wait(sm, name, statuses=TERMINAL, timeout=60):
    deadline = time.time() + timeout
    while time.time() < deadline:
        job = sm.describe_job(JobName=name, JobCategory=TEST_CATEGORY)
        if job["JobStatus"] in statuses:
            return job
        time.sleep(0.2)
    raise AssertionError(f"{name} stayed {job['JobStatus']}")


def test_job_runs_to_completion_with_metrics_and_logs(server, role_arn):
    sm = server.client("sagemaker")
    arn = create(sm, role_arn, "complete-me", Steps=4, SleepSeconds=0.05)["JobArn"]
    assert arn.endswith(f":job/{TEST_CATEGORY}/complete-me")
    first = sm.describe_job(JobName="complete-me", JobCategory=TEST_CATEGORY)
    assert first["JobStatus"] == "InProgress"
    job = wait(sm, "complete-me")
    assert job["JobStatus"] == "Completed" and job["SecondaryStatus"] == "Completed"
    assert job["CreationTime"] <= job["EndTime"]
    steps = [t["Status"] for t in job["SecondaryStatusTransitions"]]
    assert steps[0] == "Pending" and steps[-1] == "Completed"
    assert job["Tags"] == [{"Key": "team", "Value": "qa"}]
    from jobforge.core import jobs as core_jobs
    from jobforge.core.store import create_engine

    engine = create_engine(f"sqlite:///{server.data_dir / 'jobforge.db'}")
    record = next(j for j in _all(engine) if j.arn == arn)
    assert [m["value"] for m in core_jobs.metrics(engine, record.id)] == [0.25, 0.5, 0.75, 1.0]
    assert [line["message"] for line in core_jobs.logs(engine, record.id)][-1] == "step 4/4"


def _all(engine):
    import sqlalchemy as sa

    from jobforge.core.jobs import Job
    from jobforge.core.store import jobs_table

    with engine.connect() as conn:
        return [Job.from_row(r) for r in conn.execute(sa.select(jobs_table))]


def test_workload_failure_is_reported(server, role_arn):
    sm = server.client("sagemaker")
    create(sm, role_arn, "fail-me", Steps=5, SleepSeconds=0.01, FailAtStep=2)
    job = wait(sm, "fail-me")
    assert job["JobStatus"] == "Failed"
    assert job["FailureReason"] == "Failed at step 2 as requested"


def test_stop_goes_through_stopping_to_stopped(server, role_arn):
    sm = server.client("sagemaker")
    create(sm, role_arn, "stop-me", Steps=500, SleepSeconds=0.1)
    wait(sm, "stop-me", statuses=("InProgress",))
    time.sleep(1)
    with pytest.raises(ClientError) as err:
        sm.delete_job(JobName="stop-me", JobCategory=TEST_CATEGORY)
    assert err.value.response["Error"]["Code"] == "ResourceInUse"
    sm.stop_job(JobName="stop-me", JobCategory=TEST_CATEGORY)
    assert sm.describe_job(JobName="stop-me", JobCategory=TEST_CATEGORY)["JobStatus"] in ("Stopping", "Stopped")
    job = wait(sm, "stop-me")
    assert job["JobStatus"] == "Stopped"
    with pytest.raises(ClientError):  # a second stop of a stopped job is refused
        sm.stop_job(JobName="stop-me", JobCategory=TEST_CATEGORY)
    sm.delete_job(JobName="stop-me", JobCategory=TEST_CATEGORY)
    with pytest.raises(ClientError) as err:
        sm.describe_job(JobName="stop-me", JobCategory=TEST_CATEGORY)
    assert err.value.response["Error"]["Code"] == "ResourceNotFound"


def test_max_runtime_stops_the_job(server, role_arn):
    sm = server.client("sagemaker")
    create(sm, role_arn, "too-slow", Steps=500, SleepSeconds=0.1, StoppingCondition={"MaxRuntimeInSeconds": 1})
    job = wait(sm, "too-slow", timeout=30)
    assert job["JobStatus"] == "Stopped"
    assert job["SecondaryStatus"] == "MaxRuntimeExceeded"
    assert "MaxRuntimeInSeconds" in job["FailureReason"]


def test_unsatisfiable_resources_fail_honestly(server, role_arn):
    sm = server.client("sagemaker")
    create(sm, role_arn, "needs-gpus", Steps=1, Gpus=64)
    job = wait(sm, "needs-gpus")
    assert job["JobStatus"] == "Failed"
    assert "64 GPUs" in job["FailureReason"]


def test_role_must_exist_in_callers_account(server, role_arn):
    sm = server.client("sagemaker")
    other = role_arn.replace("JobforgeExecutionRole", "NoSuchRole")
    with pytest.raises(ClientError) as err:
        create(sm, other, "no-role")
    assert err.value.response["Error"]["Code"] == "ResourceNotFound"
    foreign = role_arn.replace(role_arn.split(":")[4], "123456789012")
    with pytest.raises(ClientError) as err:
        create(sm, foreign, "foreign-role")
    assert err.value.response["Error"]["Code"] == "ResourceNotFound"


def test_fifty_concurrent_creates_with_one_name(server, role_arn):
    outcomes = []
    lock = threading.Lock()
    barrier = threading.Barrier(50)

    def attempt():
        sm = server.client("sagemaker")
        barrier.wait()
        try:
            create(sm, role_arn, "contended", Steps=1, SleepSeconds=0)
            result = "created"
        except ClientError as err:
            result = err.response["Error"]["Code"]
        with lock:
            outcomes.append(result)

    threads = [threading.Thread(target=attempt) for _ in range(50)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert outcomes.count("created") == 1
    assert outcomes.count("ResourceInUse") == 49


def test_list_filters_sorting_and_paging(server, role_arn):
    sm = server.client("sagemaker")
    for i in range(7):
        create(sm, role_arn, f"listme-{i}", Steps=1, SleepSeconds=0)
    for i in range(7):
        wait(sm, f"listme-{i}")
    names = [s["JobName"] for s in sm.list_jobs(JobCategory=TEST_CATEGORY, NameContains="listme",
                                                 SortBy="Name", SortOrder="Ascending")["JobSummaries"]]
    assert names == [f"listme-{i}" for i in range(7)]
    paginator = sm.get_paginator("list_jobs")
    pages = list(paginator.paginate(JobCategory=TEST_CATEGORY, NameContains="listme", SortBy="CreationTime",
                                    SortOrder="Descending", PaginationConfig={"PageSize": 3}))
    paged = [s["JobName"] for p in pages for s in p["JobSummaries"]]
    assert paged == [f"listme-{i}" for i in reversed(range(7))]
    assert len(pages) == 3 and "NextToken" not in pages[-1]
    completed = sm.list_jobs(JobCategory=TEST_CATEGORY, NameContains="listme", StatusEquals="Completed")
    assert len(completed["JobSummaries"]) == 7
    assert sm.list_jobs(JobCategory=TEST_CATEGORY, NameContains="listme", StatusEquals="Failed")["JobSummaries"] == []
    token = sm.list_jobs(JobCategory=TEST_CATEGORY, NameContains="listme", MaxResults=2)["NextToken"]
    with pytest.raises(ClientError) as err:  # a token is bound to its filters
        sm.list_jobs(JobCategory=TEST_CATEGORY, NameContains="other", NextToken=token)
    assert err.value.response["Error"]["Code"] == "ValidationException"


def test_jobs_run_with_revocable_temporary_credentials(server, role_arn):
    import boto3
    import sqlalchemy as sa

    from jobforge.core.store import access_keys, create_engine

    sm = server.client("sagemaker")
    arn = create(sm, role_arn, "creds-job", Steps=300, SleepSeconds=0.1)["JobArn"]
    wait(sm, "creds-job", statuses=("InProgress",))
    engine = create_engine(f"sqlite:///{server.data_dir / 'jobforge.db'}")
    record = next(j for j in _all(engine) if j.arn == arn)
    deadline = time.time() + 20
    row = None
    while row is None and time.time() < deadline:
        with engine.connect() as conn:
            row = conn.execute(sa.select(access_keys).where(access_keys.c.job_id == record.id)).first()
        time.sleep(0.1)
    assert row.access_key_id.startswith("ASIA") and row.session_token

    def sts(token):
        return boto3.client("sts", endpoint_url=server.endpoint, region_name="us-east-1",
                            aws_access_key_id=row.access_key_id, aws_secret_access_key=row.secret_key,
                            aws_session_token=token)

    who = sts(row.session_token).get_caller_identity()
    assert who["Arn"].startswith(f"arn:aws:sts::{who['Account']}:assumed-role/JobforgeExecutionRole/")
    role_id = server.client("iam").get_role(RoleName="JobforgeExecutionRole")["Role"]["RoleId"]
    assert who["UserId"] == f"{role_id}:{who['Arn'].rsplit('/', 1)[1]}"
    with pytest.raises(ClientError) as err:  # the session token is part of the credential
        sts("forged-token").get_caller_identity()
    assert err.value.response["Error"]["Code"] == "InvalidClientTokenId"
    sm.stop_job(JobName="creds-job", JobCategory=TEST_CATEGORY)
    wait(sm, "creds-job")
    with pytest.raises(ClientError) as err:  # revoked when the job ended
        sts(row.session_token).get_caller_identity()
    assert err.value.response["Error"]["Code"] == "InvalidClientTokenId"
