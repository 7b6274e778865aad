"""The console's read layer over the job store: every query bounded to one account; families' actions."""

from __future__ import annotations

import pytest

from jobforge.console import families, job_records
from jobforge.console.job_records import Filters
from jobforge.core import accounts, jobs, kinds
from jobforge.core.store import open_store
from jobforge.server.app import load_api_modules


@pytest.fixture(scope="module", autouse=True)
def declared_kinds():
    load_api_modules()


@pytest.fixture
def engine(tmp_path):
    return open_store(f"sqlite:///{tmp_path / 'jobforge.db'}")


def _job(engine, account_id, family, name, spec):
    job, _ = jobs.create(engine, account_id=account_id, region="us-east-1", kind=kinds.get(family), name=name,
                         spec=spec, resources={}, arn=f"arn:aws:test:us-east-1:{account_id}:job/{family}/{name}")
    return job


@pytest.fixture
def two_accounts(engine):
    ours = accounts.create_account(engine, "ours").account_id
    theirs = accounts.create_account(engine, "theirs").account_id
    made = {
        "braket": _job(engine, ours, "braket-job", "bell", {"outputDataConfig": {"s3Path": "s3://b/jobs/bell/data"}}),
        "bedrock": _job(engine, ours, "bedrock-customization", "tune",
                        {"outputModelUri": "s3://b/out/model-customization-job-abc/custom-model/"}),
        "foreign": _job(engine, theirs, "braket-job", "bell-theirs", {"outputDataConfig": {"s3Path": "s3://c/x"}}),
    }
    return ours, theirs, made


def test_lists_and_finds_only_the_account_s_jobs(engine, two_accounts):
    ours, theirs, made = two_accounts
    names = [row.name for row in job_records.list_jobs(engine, ours, Filters())]
    assert sorted(names) == ["bell", "tune"]
    assert job_records.find(engine, ours, made["foreign"].id) is None
    assert job_records.find(engine, theirs, made["foreign"].id).name == "bell-theirs"
    assert job_records.families_of(engine, ours) == ["bedrock-customization", "braket-job"]


def test_filters_by_family_status_and_search(engine, two_accounts):
    ours, _, made = two_accounts
    jobs.transition(engine, made["bedrock"].id, "RUNNING")
    names = lambda **f: [r.name for r in job_records.list_jobs(engine, ours, Filters(**f))]  # noqa: E731
    assert names(family="braket-job") == ["bell"]
    assert names(status="RUNNING") == ["tune"]
    assert names(status="active") == ["tune", "bell"]
    assert names(status="terminal") == []
    assert names(search="tun") == names(search="TUN") == ["tune"]
    assert names(search="%") == []  # a LIKE wildcard is searched for, not used


def test_a_poll_reads_only_the_account_s_jobs_changed_since_its_version(engine, two_accounts):
    ours, theirs, made = two_accounts
    version = job_records.last_change(engine, ours)
    assert job_records.changed_since(engine, ours, version) == []
    jobs.transition(engine, made["foreign"].id, "RUNNING")
    assert job_records.last_change(engine, ours) == version
    jobs.transition(engine, made["braket"].id, "RUNNING")
    changed = job_records.changed_since(engine, ours, version)
    assert [row.name for row in changed] == ["bell"]
    assert job_records.last_change(engine, ours) == changed[0].updated_at > version
    assert Filters(status="active").matches(changed[0]) and not Filters(status="terminal").matches(changed[0])
    assert Filters(family="braket-job", search="BEL").matches(changed[0])
    assert not Filters(family="bedrock-customization").matches(changed[0])


def test_metrics_logs_and_timeline_read_after_an_id(engine, two_accounts):
    _, _, made = two_accounts
    job = made["braket"]
    jobs.add_metrics(engine, job.id, [{"name": "loss", "value": 1.5, "step": 1}, {"name": "loss", "value": 1.0,
                                                                                   "step": 2}])
    jobs.add_logs(engine, job.id, "s", [(1.0, "one"), (2.0, "two")])
    first = job_records.metrics(engine, job.id)
    assert [(m["value"], m["step"]) for m in first] == [(1.5, 1), (1.0, 2)]
    assert job_records.metrics(engine, job.id, first[0]["id"])[0]["value"] == 1.0
    lines = job_records.logs(engine, job.id)
    assert [line["message"] for line in job_records.logs(engine, job.id, lines[0]["id"])] == ["two"]
    jobs.transition(engine, job.id, "RUNNING", secondary="RUNNING", message="on its way")
    assert job_records.timeline(jobs.load(engine, job.id))[-1]["status"] == "RUNNING"
    assert job_records.timeline(jobs.load(engine, job.id))[-1]["message"] == "on its way"


def test_output_prefixes(engine, two_accounts):
    _, _, made = two_accounts
    assert job_records.output_prefix(made["braket"]) == "s3://b/jobs/bell/data/"
    assert job_records.output_prefix(made["bedrock"]) == "s3://b/out/model-customization-job-abc/"


def test_each_family_stops_and_deletes_with_its_own_operations(engine, two_accounts):
    _, _, made = two_accounts
    service, operation, params = families.family("braket-job").stop
    assert (service, operation, params(made["braket"])) == ("braket", "CancelJob", {"jobArn": made["braket"].arn})
    assert families.family("braket-job").delete is None  # Braket has no DeleteJob
    assert families.family("bedrock-customization").stop[1] == "StopModelCustomizationJob"
    rft = families.family("sagemaker-job/AgentRFT")
    assert rft.label == "AgentRFT" and rft.delete[1] == "DeleteJob"
    assert families.family("sagemaker-compilation").delete[1] == "DeleteCompilationJob"
