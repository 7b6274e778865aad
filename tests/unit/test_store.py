"""The durable store and the job lifecycle core, on SQLite and on PostgreSQL."""

from __future__ import annotations

import threading

import pytest

from jobforge.core import accounts, jobs, kinds, tags
from jobforge.core.errors import ServiceError
from jobforge.core.idempotency import ClientToken
from jobforge.core.kinds import JobErrors, JobKind, Workload
from jobforge.core.store import open_store

KIND = kinds.register(JobKind(
    name="store-test", label="Job", statuses={s: s for s in jobs.STATES},
    errors=JobErrors(not_found="ResourceNotFoundException", conflict="ConflictException",
                     not_stoppable="ConflictException", in_use="ConflictException"),
    workload=Workload("jobforge.workloads.testing", resumable=True), describe=lambda engine, job: {"name": job.name},
    arn=lambda r, a, n, i: f"arn:aws:braket:{r}:{a}:job/{n}"))


@pytest.fixture(params=["sqlite", "postgresql"])
def engine(request, tmp_path):
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'store.db'}"
    else:
        url = request.getfixturevalue("postgres_url")
    engine = open_store(url)
    yield engine
    engine.dispose()


def _create(engine, name, **kw):
    args = dict(account_id="111111111111", region="us-east-1", kind=KIND, name=name,
                spec={"n": 1}, resources={"cpus": 1})
    args.update(kw)
    return jobs.create(engine, **args)


def test_migrations_are_idempotent(engine):
    from jobforge.core.store import migrate

    migrate(engine)  # a second run at head changes nothing
    assert accounts.account_credentials(engine, "nobody") is None


def test_names_are_unique_per_account_and_family(engine):
    job, created = _create(engine, "a")
    assert created and job.state == "QUEUED" and job.arn.endswith(":job/a")
    with pytest.raises(ServiceError) as err:
        _create(engine, "a")
    assert err.value.code == "ConflictException"
    other, created = _create(engine, "a", account_id="222222222222")
    assert created and other.id != job.id


def test_concurrent_creates_leave_one_job(engine):
    results = []

    def attempt():
        try:
            _create(engine, "race")
            results.append("ok")
        except ServiceError as err:
            results.append(err.code)

    threads = [threading.Thread(target=attempt) for _ in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results.count("ok") == 1 and results.count("ConflictException") == 19


def test_idempotency_tokens(engine):
    def token(digest):
        return ClientToken("111111111111", KIND.token_scope, "t1", digest)

    first, created = _create(engine, "tok", token=token("h1"))
    again, created_again = _create(engine, "tok", token=token("h1"))
    assert created and not created_again and again.arn == first.arn
    with pytest.raises(ServiceError) as err:
        _create(engine, "tok-2", token=token("h2"))
    assert err.value.code == "ConflictException"


def test_transitions_and_terminal_states(engine):
    job, _ = _create(engine, "life")
    assert jobs.transition(engine, job.id, "RUNNING", only_from=("STARTING",)) is None
    jobs.transition(engine, job.id, "STARTING")
    running = jobs.transition(engine, job.id, "RUNNING", secondary="Training", message="go")
    assert running.started_at and running.secondary_status == "Training"
    done = jobs.transition(engine, job.id, "COMPLETED")
    assert done.ended_at and done.terminal
    assert jobs.transition(engine, job.id, "RUNNING") is None  # terminal is final
    assert [t["state"] for t in jobs.load(engine, job.id).transitions] == ["QUEUED", "STARTING", "RUNNING",
                                                                         "COMPLETED"]
    with pytest.raises(ServiceError):
        jobs.request_stop(engine, jobs.load(engine, job.id))
    jobs.delete(engine, jobs.load(engine, job.id))
    assert jobs.load(engine, job.id) is None


def test_stop_and_delete_rules(engine):
    queued, _ = _create(engine, "q")
    assert jobs.request_stop(engine, queued).state == "STOPPED"
    started, _ = _create(engine, "s")
    jobs.transition(engine, started.id, "RUNNING")
    with pytest.raises(ServiceError) as err:
        jobs.delete(engine, jobs.load(engine, started.id))
    assert err.value.code == "ConflictException"
    assert jobs.request_stop(engine, jobs.load(engine, started.id)).state == "STOPPING"


def test_paging_is_stable_and_bound_to_filters(engine):
    for i in range(5):
        _create(engine, f"p{i}")
    bad = lambda m: ServiceError("ValidationException", m)  # noqa: E731
    seen, token = [], None
    while True:
        page = jobs.list_jobs(engine, "111111111111", KIND, region="us-east-1", name_contains="p", sort_by="Name",
                              ascending=True, limit=2, token=token, bad_token=bad)
        seen += [j.name for j in page.rows]
        if not page.next_token:
            break
        assert page.next_token != token
        token = page.next_token
        _create(engine, f"p-late-{len(seen)}")  # rows created meanwhile do not shift pages
    # rows created meanwhile sort before the cursor ("-" < "0"): no page repeats or shifts
    assert seen == ["p0", "p1", "p2", "p3", "p4"]
    with pytest.raises(ServiceError):
        jobs.list_jobs(engine, "111111111111", KIND, region="us-east-1", name_contains="zzz", limit=2, token=token, bad_token=bad)


def test_metrics_logs_and_tags(engine):
    job, _ = _create(engine, "m", tags_={"a": "1"})
    jobs.add_metrics(engine, job.id, [{"name": "loss", "value": 2.5, "step": 1}, {"name": "loss", "value": 1.5}])
    jobs.add_logs(engine, job.id, "m/stream", [(1.0, "hello"), (2.0, "world")])
    assert [m["value"] for m in jobs.metrics(engine, job.id)] == [2.5, 1.5]
    assert [line["message"] for line in jobs.logs(engine, job.id)] == ["hello", "world"]
    tags.put(engine, job.account_id, job.arn, {"b": "2", "a": "3"})
    assert tags.of(engine, job.arn) == {"a": "3", "b": "2"}
    tags.remove(engine, job.arn, ["a"])
    assert tags.of(engine, job.arn) == {"b": "2"}


def test_accounts_keys_and_job_credentials(engine):
    credential = accounts.create_account(engine, "acme")
    assert len(credential.account_id) == 12 and credential.access_key_id.startswith("AKIA")
    role = f"arn:aws:iam::{credential.account_id}:role/JobforgeExecutionRole"
    assert accounts.find_role(engine, credential.account_id, role) is not None
    ring = accounts.KeyRing(engine)
    temp = accounts.issue_job_credentials(engine, credential.account_id, role, "job-1")
    assert ring.get(temp.access_key_id).session_token == temp.session_token
    assert ring.get(temp.access_key_id).principal_arn.startswith(
        f"arn:aws:sts::{credential.account_id}:assumed-role/JobforgeExecutionRole/")
    ring.revoke_job("job-1")
    assert ring.get(temp.access_key_id) is None
    with pytest.raises(ValueError):
        accounts.create_account(engine, "acme")
