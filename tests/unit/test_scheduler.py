"""The scheduler against a fake executor: admission, first in first out, stops, runtime limits, recovery."""

from __future__ import annotations

import sys
import time
import uuid
from types import SimpleNamespace

import pytest

from jobforge.config import Settings
from jobforge.core import accounts, jobs
from jobforge.core.objects import open_object_store
from jobforge.core.store import jobs_table, open_store
from jobforge.execution.executor import AttemptLost
from jobforge.execution.resources import Capacity, used_by
from jobforge.execution.scheduler import Scheduler
from jobforge.execution.supervisor import ProcessSpec, Supervisor

RESUMABLE = ("braket-job", "braket-hybrid")  # a kind whose workload resumes from its checkpoints
NOT_RESUMABLE = ("unknown-kind", "unknown-workload")


class FakeExecutor:
    """One node of the given size; workers run until the test ends them."""

    def __init__(self, capacity: Capacity, adoptable=()):
        self.node = capacity
        self.adoptable = set(adoptable)
        self.running: dict[str, dict] = {}  # handle → request
        self.submitted: list[str] = []  # job ids, in order
        self.environments: dict[str, dict] = {}  # job id → the environment its worker was started with
        self.stops: list[tuple[str, bool]] = []
        self.adopted: list[str] = []
        self.exits: list[tuple[str, int]] = []
        self.logs: dict[str, str] = {}

    def start(self, environment):
        pass

    def shutdown(self):
        pass

    def capacity(self):
        return self.node

    def shortfall(self, request):
        return self.node.shortfall(request)

    def can_start(self, request, held):
        used = used_by([*self.running.values(), vars(held)])
        return self.node.fits(request, used)

    def submit(self, job, env, readable):
        handle = f"fake:{job.id}:{job.attempt}"
        self.running[handle] = job.resources
        self.submitted.append(job.id)
        self.environments[job.id] = env
        return handle

    def stop(self, handle, force=False):
        self.stops.append((handle, force))

    def poll(self):
        done, self.exits = self.exits, []
        for handle, _ in done:
            self.running.pop(handle, None)
        return done

    def adopt(self, job_id, handle):
        if handle in self.adoptable:
            self.adopted.append(handle)
            self.running[handle] = {}
            return True
        return False

    def read_log(self, job_id):
        return self.logs.get(job_id, "")

    def exit(self, handle, code=0):
        self.exits.append((handle, code))


@pytest.fixture
def runtime(tmp_path):
    settings = Settings(data_dir=tmp_path, stop_grace_seconds=0)
    engine = open_store(settings.db_url)
    account = accounts.create_account(engine, "default").account_id
    import jobforge.api.braket.hybrid_jobs  # noqa: F401  (declares the resumable kind)

    supervisor = Supervisor()
    yield SimpleNamespace(settings=settings, engine=engine, account=account, keys=accounts.KeyRing(engine),
                          object_store=open_object_store(settings, engine), supervisor=supervisor)
    supervisor.close()


def scheduler_with(runtime, executor) -> Scheduler:
    scheduler = Scheduler(runtime, executor)
    scheduler.recover()
    return scheduler


def add_job(runtime, name, resources, *, state="QUEUED", kind=RESUMABLE, max_runtime=None, handle=None,
            started_at=None, region="us-east-1") -> str:
    job_id = uuid.uuid4().hex
    now = time.time()
    with runtime.engine.begin() as conn:
        conn.execute(jobs_table.insert().values(
            id=job_id, account_id=runtime.account, region=region, family=kind[0], name=name, arn=f"arn:test:job/{name}",
            state=state, secondary_status=None, status_message=None, failure_reason=None, workload=kind[1],
            spec={}, result={}, resources=resources, transitions=[], role_arn=None, max_runtime=max_runtime,
            stop_reason=None, attempt=1 if handle else 0, handle=handle, worker_token_hash=None, created_at=now,
            updated_at=now, started_at=started_at, ended_at=None))
    time.sleep(0.002)  # created_at orders the queue
    return job_id


def state(runtime, job_id) -> jobs.Job:
    return jobs.load(runtime.engine, job_id)


SLEEPER = (sys.executable, "-c", "import time; time.sleep(60)")


def test_jobs_wait_for_the_memory_and_gpus_a_service_holds_but_share_its_cpus(runtime):
    executor = FakeExecutor(Capacity(cpus=4, memory_mb=8192, gpus=1))
    scheduler = scheduler_with(runtime, executor)
    runtime.supervisor.add(ProcessSpec("model-server", SLEEPER, reserves={"cpus": 4, "memory_mb": 6144, "gpus": 1}))
    runtime.supervisor.ensure("model-server")
    big = add_job(runtime, "big", {"cpus": 4, "memory_mb": 4096, "gpus": 0})
    scheduler.tick()
    assert state(runtime, big).state == "QUEUED"  # 6144 MiB of 8192 are the service's
    runtime.supervisor.stop("model-server")
    scheduler.tick()
    assert executor.submitted == [big]  # all four CPUs: the service's threads never kept it waiting
    assert state(runtime, big).state == "STARTING"


def test_a_worker_calls_the_region_its_job_belongs_to(runtime):
    executor = FakeExecutor(Capacity(cpus=4, memory_mb=8192, gpus=0))
    scheduler = scheduler_with(runtime, executor)
    west = add_job(runtime, "west", {"cpus": 1, "memory_mb": 256, "gpus": 0}, region="us-west-2")
    scheduler.tick()
    env = executor.environments[west]
    assert env["AWS_REGION"] == env["AWS_DEFAULT_REGION"] == "us-west-2"


def test_a_job_no_node_can_fit_fails_at_once(runtime):
    executor = FakeExecutor(Capacity(cpus=4, memory_mb=8192, gpus=0))
    scheduler = scheduler_with(runtime, executor)
    too_big = add_job(runtime, "gpu", {"cpus": 4, "memory_mb": 16384, "gpus": 1})
    fits = add_job(runtime, "cpu", {"cpus": 2, "memory_mb": 1024, "gpus": 0})
    scheduler.tick()
    failed = state(runtime, too_big)
    assert failed.state == "FAILED"
    assert "1 GPUs (a node offers at most 0)" in failed.failure_reason
    assert "16384 MiB of memory" in failed.failure_reason
    assert executor.submitted == [fits]
    assert state(runtime, fits).state == "STARTING" and state(runtime, fits).handle == f"fake:{fits}:1"


def test_more_instances_than_nodes_fail_at_once(runtime):
    scheduler = scheduler_with(runtime, FakeExecutor(Capacity(cpus=8, memory_mb=8192, gpus=0)))
    job = add_job(runtime, "two", {"cpus": 2, "memory_mb": 1024, "gpus": 0, "instances": 2})
    scheduler.tick()
    assert "2 instances" in state(runtime, job).failure_reason


def test_jobs_start_first_in_first_out(runtime):
    executor = FakeExecutor(Capacity(cpus=3, memory_mb=8192, gpus=0))
    scheduler = scheduler_with(runtime, executor)
    first = add_job(runtime, "first", {"cpus": 2})
    second = add_job(runtime, "second", {"cpus": 2})
    third = add_job(runtime, "third", {"cpus": 1})  # would fit now, but waits behind the second
    scheduler.tick()
    assert executor.submitted == [first]
    scheduler.worker_reported_end(state(runtime, first), "completed", None)
    executor.exit(f"fake:{first}:1")
    scheduler.tick()
    assert state(runtime, first).state == "COMPLETED"
    assert executor.submitted == [first, second, third]


def test_a_stopped_job_is_asked_then_forced_to_stop(runtime):
    executor = FakeExecutor(Capacity(cpus=2, memory_mb=8192, gpus=0))
    scheduler = scheduler_with(runtime, executor)
    job = add_job(runtime, "stop-me", {"cpus": 1})
    scheduler.tick()
    handle = state(runtime, job).handle
    jobs.transition(runtime.engine, job, "STOPPING")
    scheduler.tick()
    assert executor.stops == [(handle, False)]
    scheduler.tick()  # past the grace period (0 s here)
    assert executor.stops == [(handle, False), (handle, True)]
    executor.exit(handle, -9)
    scheduler.tick()
    assert state(runtime, job).state == "STOPPED"


def test_a_job_past_its_max_runtime_times_out(runtime):
    executor = FakeExecutor(Capacity(cpus=2, memory_mb=8192, gpus=0))
    scheduler = scheduler_with(runtime, executor)
    job = add_job(runtime, "slow", {"cpus": 1}, max_runtime=0.01)
    scheduler.tick()
    jobs.transition(runtime.engine, job, "RUNNING")
    time.sleep(0.02)
    scheduler.tick()
    timed_out = state(runtime, job)
    assert timed_out.state == "STOPPING" and timed_out.stop_reason == "timeout"
    assert "MaxRuntimeInSeconds" in timed_out.status_message
    assert executor.stops == [(timed_out.handle, False)]
    executor.exit(timed_out.handle, 0)
    scheduler.tick()
    assert state(runtime, job).state == "TIMED_OUT"


def test_a_worker_that_exits_without_an_outcome_fails_its_job_with_its_last_output(runtime):
    executor = FakeExecutor(Capacity(cpus=2, memory_mb=8192, gpus=0))
    scheduler = scheduler_with(runtime, executor)
    job = add_job(runtime, "crash", {"cpus": 1})
    scheduler.tick()
    executor.logs[job] = "starting\nSegmentation fault\n"
    executor.exit(state(runtime, job).handle, -11)
    scheduler.tick()
    failed = state(runtime, job)
    assert failed.state == "FAILED"
    assert "killed by signal 11" in failed.failure_reason and "Segmentation fault" in failed.failure_reason


def test_recovery_adopts_resumes_or_fails_what_a_previous_server_left(runtime):
    running = {"cpus": 1}
    adopted = add_job(runtime, "adopted", running, state="RUNNING", handle="fake:alive", started_at=time.time())
    resumed = add_job(runtime, "resumed", running, state="RUNNING", handle="fake:gone", started_at=time.time())
    lost = add_job(runtime, "lost", running, state="RUNNING", handle="fake:gone-too", kind=NOT_RESUMABLE,
                   started_at=time.time())
    stopping = add_job(runtime, "stopping", running, state="STOPPING", handle="fake:gone-as-well")
    executor = FakeExecutor(Capacity(cpus=1, memory_mb=8192, gpus=0), adoptable={"fake:alive"})
    scheduler = scheduler_with(runtime, executor)

    assert executor.adopted == ["fake:alive"]
    assert state(runtime, adopted).state == "RUNNING"
    assert state(runtime, resumed).state == "QUEUED" and state(runtime, resumed).secondary_status == "Restarting"
    assert state(runtime, lost).state == "FAILED" and "cannot resume" in state(runtime, lost).failure_reason
    assert state(runtime, stopping).state == "STOPPED"

    scheduler.tick()  # the adopted attempt holds the only CPU
    assert executor.submitted == []
    scheduler.worker_reported_end(state(runtime, adopted), "completed", None)
    executor.exit("fake:alive", 0)
    scheduler.tick()
    assert state(runtime, adopted).state == "COMPLETED"
    assert executor.submitted == [resumed]
    assert state(runtime, resumed).attempt == 2


def test_an_attempt_lost_with_its_node_resumes_where_the_workload_can_else_fails_saying_why(runtime):
    executor = FakeExecutor(Capacity(cpus=4, memory_mb=8192, gpus=0))
    scheduler = scheduler_with(runtime, executor)
    resumable = add_job(runtime, "resumable", {"cpus": 1})
    not_resumable = add_job(runtime, "not-resumable", {"cpus": 1}, kind=NOT_RESUMABLE)
    scheduler.tick()
    assert executor.submitted == [resumable, not_resumable]
    why = "The Ray node 10.0.0.7 (abc) running the job was lost"
    for job_id in (resumable, not_resumable):
        executor.exit(f"fake:{job_id}:1", AttemptLost(why))
    scheduler.tick()
    failed = state(runtime, not_resumable)
    assert failed.state == "FAILED"
    assert failed.failure_reason == f"{why}, and workload 'unknown-workload' cannot resume from a checkpoint."
    resumed = state(runtime, resumable)
    assert resumed.attempt == 2 and executor.submitted == [resumable, not_resumable, resumable]
    assert any(t["secondary"] == "Restarting" and why in t["message"] for t in resumed.transitions)
