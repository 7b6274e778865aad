"""Job kinds: the declaration, what is derived from it, and how the server discovers kinds and plugins."""

from __future__ import annotations

import pytest

from jobforge.api import bedrock, logs, sagemaker_jobs
from jobforge.api.base import HANDLERS
from jobforge.api.braket import hybrid_jobs
from jobforge.core import jobs, kinds
from jobforge.core.errors import ServiceError
from jobforge.core.kinds import JobErrors, JobKind, Workload
from jobforge.core.store import open_store
from jobforge.server.app import load_api_modules

WORKLOAD = Workload("jobforge.workloads.testing", resumable=True)
ERRORS = JobErrors(not_found="NotFound", conflict="Conflict", not_stoppable="NotStoppable", in_use="InUse")


def _arn(region: str, account: str, job_name: str, _id: str) -> str:
    return f"arn:aws:unit:{region}:{account}:job/{job_name}"


def _kind(name: str, label: str = "Unit job") -> JobKind:
    return JobKind(name=name, label=label, statuses={s: s.title() for s in jobs.STATES}, errors=ERRORS,
                   workload=WORKLOAD, describe=lambda engine, job: {"JobName": job.name}, arn=_arn)


@pytest.fixture(scope="module")
def engine(tmp_path_factory):
    found = open_store(f"sqlite:///{tmp_path_factory.mktemp('kinds') / 'store.db'}")
    yield found
    found.dispose()


def test_a_list_filter_is_derived_from_the_statuses():
    assert bedrock.KIND.states("Failed") == ("FAILED", "TIMED_OUT")
    assert bedrock.KIND.states("InProgress") == ("QUEUED", "STARTING", "RUNNING")
    category = sagemaker_jobs.job_category("UnitCategory", WORKLOAD, {}, None)
    assert category.states("Stopped") == ("STOPPED", "TIMED_OUT")
    assert category.states("Deleting") == ()  # a status of the API that no engine state has


def test_a_name_is_declared_once(monkeypatch):
    monkeypatch.setattr(kinds, "KINDS", {})
    first = kinds.register(_kind("unit-once"))
    assert kinds.register(first) is first  # a module imported again declares the same kind
    with pytest.raises(ValueError, match="declared twice"):
        kinds.register(_kind("unit-once", label="Another"))
    assert kinds.get("unit-once") is first and kinds.get("unit-unknown") is None


def test_a_sagemaker_category_is_a_kind_named_by_its_category():
    category = sagemaker_jobs.job_category("UnitCategory", WORKLOAD, {"1.0.0": {}}, None)
    assert category.name == "sagemaker-job/UnitCategory" and category.category == "UnitCategory"
    assert category.label == "UnitCategory job" and category.errors.not_found == "ResourceNotFound"
    assert category.arn("us-east-1", "111111111111", "j", "id") == \
        "arn:aws:sagemaker:us-east-1:111111111111:job/UnitCategory/j"


def test_the_server_discovers_api_modules_kinds_and_plugins(tmp_path, monkeypatch):
    plugin = tmp_path / "unit_kind_plugin.py"
    plugin.write_text("from jobforge.api import sagemaker_jobs\n"
                      "from jobforge.core import kinds\n"
                      "from jobforge.core.kinds import Workload\n"
                      "KIND = kinds.register(sagemaker_jobs.job_category(\n"
                      "    'UnitPlugin', Workload('jobforge.workloads.testing', resumable=False), {}, None))\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(kinds, "KINDS", dict(kinds.KINDS))
    load_api_modules(("unit_kind_plugin",))
    assert {"bedrock-customization", "braket-job", "sagemaker-job/UnitPlugin"} <= set(kinds.KINDS)
    assert sagemaker_jobs.served("UnitPlugin").workload.resumable is False
    assert ("iam", "CreateRole") in HANDLERS and ("sagemaker", "CreateJob") in HANDLERS
    assert ("s3", "PutObject") in HANDLERS and ("braket", "CreateJob") in HANDLERS


def test_log_groups_come_from_the_kinds_that_declare_one():
    group = logs.groups()["/aws/braket/jobs"]
    assert group.kind_names == (hybrid_jobs.KIND.name,)
    job = jobs.Job(id="abc", account_id="1", region="us-east-1", family=hybrid_jobs.KIND.name, name="n", arn="a", state="RUNNING",
                   secondary_status=None, status_message=None, failure_reason=None, workload="w", spec={},
                   result={}, resources={}, transitions=[], role_arn=None, max_runtime=None, stop_reason=None,
                   attempt=1, handle=None, created_at=12.5, updated_at=12.5, started_at=None, ended_at=None)
    assert group.stream(job) == "n/abc/algo-1-12"


def test_the_store_raises_each_kinds_own_error_codes(engine, monkeypatch):
    kind = _kind("unit-errors")
    monkeypatch.setitem(kinds.KINDS, kind.name, kind)
    args = dict(account_id="111111111111", region="us-east-1", kind=kind, spec={}, resources={"cpus": 1})
    job, _ = jobs.create(engine, name="e", **args)
    assert job.workload == WORKLOAD.module and job.status == "Queued"
    with pytest.raises(ServiceError) as taken:
        jobs.create(engine, name="e", **args)
    assert taken.value.code == "Conflict" and str(taken.value) == \
        "Unit job with name e already exists. Choose a different name."
    with pytest.raises(ServiceError) as running:
        jobs.delete(engine, job)
    assert running.value.code == "InUse"
    stopped = jobs.request_stop(engine, job)
    assert stopped.state == "STOPPED"
    with pytest.raises(ServiceError) as ended:
        jobs.request_stop(engine, stopped)
    assert ended.value.code == "NotStoppable"
    with pytest.raises(ServiceError) as missing:
        jobs.get(engine, "111111111111", kind, "nope", region="us-east-1")
    assert missing.value.code == "NotFound" and str(missing.value) == "Unit job nope not found."
    assert jobs.get(engine, "111111111111", kind, job.arn, region="us-east-1").id == job.id == \
        jobs.get(engine, "111111111111", kind, "e", region="us-east-1").id


def test_a_kind_describes_its_jobs_as_its_api_does(engine):
    job = jobs.Job(id="abc", account_id="1", region="us-east-1", family=hybrid_jobs.KIND.name, name="n", arn="arn:braket:job/abc",
                   state="FAILED", secondary_status=None, status_message=None, failure_reason="boom", workload="w",
                   spec={"jobName": "n", "roleArn": "r", "instanceConfig": {"instanceType": "ml.m5.large",
                                                                     "volumeSizeInGb": 1}},
                   result={}, resources={}, transitions=[], role_arn="r",
                   max_runtime=None, stop_reason=None, attempt=1, handle=None, created_at=12.5, updated_at=13.0,
                   started_at=12.75, ended_at=13.0)
    described = kinds.of(job).describe(engine, job)
    assert described["status"] == "FAILED" and described["failureReason"] == "boom"
    assert described["jobArn"] == job.arn and described["billableDuration"] == 250
