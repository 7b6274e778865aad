"""Jobs on a Ray cluster of two nodes started here, through the real clients.

The head node has 2 CPUs and a ``head`` resource; the worker node 1 CPU and a
``special`` resource, which only the instance type ``ml.c5.large`` asks for
(an instance catalog given to the server says so). A job of that type runs on
the worker node; one asking for a resource no node has fails at once; Stop
and MaxRuntime end the actor; a Braket hybrid job (the Braket SDK) and a
Bedrock fine-tune (boto3) run end to end; the server killed while a job runs
re-adopts it; the worker node lost mid-job makes the job resume from its
checkpoint on a new node. Each attempt holds its resources in a placement
group (its slot) on the node whose agent runs its worker.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

ray = pytest.importorskip("ray")

import selftest_kind  # noqa: E402
from botocore.exceptions import ClientError  # noqa: E402
from ray.util.placement_group import placement_group_table  # noqa: E402
from jobforge.core import jobs  # noqa: E402
from jobforge.core.store import create_engine  # noqa: E402
from jobforge.testing_server import ServerProcess  # noqa: E402
from selftest_kind import CATEGORY, SELFTEST_ENV  # noqa: E402

pytestmark = pytest.mark.ray
CATALOG = {"instance_types": {
    "ml.m5.large": {"vcpus": 1, "memory_gib": 0.5},  # the Braket job's: fits either node
    "ml.c5.large": {"vcpus": 1, "memory_gib": 0.25, "resources": {"special": 1}},
    "ml.c5.xlarge": {"vcpus": 1, "memory_gib": 0.25, "resources": {"gold": 1}},
}}
# A node lost is noticed within seconds, not the default half minute.
FAST_HEALTH_CHECKS = {"health_check_initial_delay_ms": 0, "health_check_period_ms": 500,
                      "health_check_failure_threshold": 3}


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    from ray.cluster_utils import Cluster

    cluster = Cluster(initialize_head=True, head_node_args={
        "num_cpus": 2, "resources": {"head": 1}, "_system_config": FAST_HEALTH_CHECKS})
    cluster.special = cluster.add_node(num_cpus=1, resources={"special": 1})
    cluster.connect(namespace="jobforge")  # this test process is a driver too, to look at the actors
    yield cluster
    ray.shutdown()
    cluster.shutdown()


@pytest.fixture(scope="module")
def catalog(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("catalog") / "catalog.json"
    path.write_text(json.dumps(CATALOG))
    return path


def start_server(data_dir: Path, cluster, catalog: Path, port: int | None = None) -> ServerProcess:
    return ServerProcess(data_dir, port=port, extra_args=["--executor", "ray", "--ray-address", cluster.address],
                         env=dict(SELFTEST_ENV, JOBFORGE_INSTANCE_CATALOG=str(catalog))).start(timeout=120)


@pytest.fixture(scope="module")
def server(tmp_path_factory, cluster, catalog):
    srv = start_server(tmp_path_factory.mktemp("ray-server") / "data", cluster, catalog)
    yield srv
    srv.stop()


def role(server) -> str:
    account = server.client("sts").get_caller_identity()["Account"]
    return f"arn:aws:iam::{account}:role/JobforgeExecutionRole"


def create(server, name: str, **document) -> None:
    server.client("sagemaker").create_job(JobName=name, RoleArn=role(server), JobCategory=CATEGORY,
                                          JobConfigSchemaVersion="1.0.0", JobConfigDocument=json.dumps(document))


def describe(server, name: str) -> dict:
    return server.client("sagemaker").describe_job(JobName=name, JobCategory=CATEGORY)


def wait_for(predicate, timeout: float = 120, interval: float = 0.2):
    deadline = time.time() + timeout
    while time.time() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError("timed out")


def ended(server, name: str, timeout: float = 120) -> dict:
    return wait_for(lambda: (job := describe(server, name))["JobStatus"] in ("Completed", "Failed", "Stopped") and job,
                    timeout)


def record(server, name: str) -> jobs.Job:
    engine = create_engine(f"sqlite:///{server.data_dir / 'jobforge.db'}")
    account = server.client("sts").get_caller_identity()["Account"]
    return jobs.get(engine, account, selftest_kind.KIND, name, region="us-east-1")


def log_lines(server, name: str) -> list[str]:
    engine = create_engine(f"sqlite:///{server.data_dir / 'jobforge.db'}")
    return [line["message"] for line in jobs.logs(engine, record(server, name).id)]


def attempt_name(server, name: str) -> str:
    job = record(server, name)
    return f"jobforge-{job.id}-{job.attempt}"


def slot_of(server, name: str) -> str:
    """The placement group holding the resources of the job's current attempt (its handle names it)."""
    return record(server, name).handle.partition("@")[2]


def group(slot: str) -> dict | None:
    """A placement group as Ray's table shows it, while it is not removed."""
    return next((g for g in placement_group_table().values() if g["name"] == slot and g["state"] != "REMOVED"), None)


def where(server, name: str) -> dict:
    """Where the job's current attempt runs, as the agent of its slot's node says."""
    node_id = group(slot_of(server, name))["bundles_to_node_id"][0]
    return ray.get(ray.get_actor(f"jobforge-node-{node_id}").where.remote(attempt_name(server, name)))


def attempt_gone(attempt: str) -> bool:
    """No node agent runs the attempt or keeps its outcome."""
    agents = [ray.get_actor(name) for name in ray.util.list_named_actors() if name.startswith("jobforge-node-")]
    return not any(attempt in ray.get(a.names.remote()) for a in agents)


def steps_done(server, name: str) -> int:
    return max([int(m.split()[1].split("/")[0]) for m in log_lines(server, name) if m.startswith("step ")],
               default=0)


def checkpointed_step(server, name: str) -> int:
    """The step the job's checkpoint in the object store has reached (0 before the first one is synced)."""
    job = record(server, name)
    try:
        body = server.client("s3").get_object(Bucket=f"jobforge-checkpoints-{job.account_id}",
                                              Key=f"{job.id}/position.json")["Body"].read()
    except ClientError:
        return 0
    return json.loads(body)["next"]


def test_a_job_runs_on_the_node_with_its_resource_and_one_no_node_has_fails_at_once(server, cluster):
    create(server, "on-special", InstanceType="ml.c5.large", Steps=15, SleepSeconds=0.2)
    wait_for(lambda: describe(server, "on-special")["SecondaryStatus"] == "Executing")
    attempt, slot = attempt_name(server, "on-special"), slot_of(server, "on-special")
    held = group(slot)  # the job's resources, held in Ray on the node while it runs
    assert held["bundles"][0] == {"CPU": 1.0, "special": 1.0, "memory": 0.25 * 2**30}
    assert held["bundles_to_node_id"][0] == cluster.special.node_id  # the only node with 'special'
    running = where(server, "on-special")
    assert running["node_id"] == cluster.special.node_id and running["running"]
    assert ended(server, "on-special")["JobStatus"] == "Completed"
    assert wait_for(lambda: attempt_gone(attempt), 30)
    assert wait_for(lambda: group(slot) is None, 30)  # no job of its shape came to reuse it: it goes

    create(server, "needs-gold", InstanceType="ml.c5.xlarge")
    job = ended(server, "needs-gold", timeout=10)
    assert job["JobStatus"] == "Failed"
    assert "1 gold (a node offers at most 0)" in job["FailureReason"]


def test_the_next_job_of_the_same_resources_runs_in_the_slot_of_one_that_ended(server):
    create(server, "first-in-slot", InstanceType="ml.c5.large", Steps=1, SleepSeconds=0)
    assert ended(server, "first-in-slot")["JobStatus"] == "Completed"
    slot = slot_of(server, "first-in-slot")
    assert group(slot) is not None  # kept a few seconds for a job of its shape
    create(server, "second-in-slot", InstanceType="ml.c5.large", Steps=1, SleepSeconds=0)
    assert ended(server, "second-in-slot")["JobStatus"] == "Completed"
    assert slot_of(server, "second-in-slot") == slot


def test_stop_and_max_runtime_end_the_worker(server):
    create(server, "stopped", Steps=600, SleepSeconds=0.1)
    create(server, "timed-out", Steps=600, SleepSeconds=0.1, StoppingCondition={"MaxRuntimeInSeconds": 3})
    wait_for(lambda: describe(server, "stopped")["SecondaryStatus"] == "Executing")
    name = attempt_name(server, "stopped")
    server.client("sagemaker").stop_job(JobName="stopped", JobCategory=CATEGORY)
    assert ended(server, "stopped", timeout=60)["JobStatus"] == "Stopped"
    assert wait_for(lambda: attempt_gone(name), 30)
    timed_out = ended(server, "timed-out", timeout=60)
    assert timed_out["JobStatus"] == "Stopped" and timed_out["SecondaryStatus"] == "MaxRuntimeExceeded"
    assert "MaxRuntimeInSeconds" in timed_out["FailureReason"]
    assert wait_for(lambda: attempt_gone(attempt_name(server, "timed-out")), 30)


ALGORITHM = """
import os

from braket.aws import AwsDevice
from braket.circuits import Circuit
from braket.jobs import save_job_result


def bell():
    device = AwsDevice(os.environ["AMZN_BRAKET_DEVICE_ARN"])
    counts = device.run(Circuit().h(0).cnot(0, 1), shots=100).result().measurement_counts
    print("counted", dict(counts))
    save_job_result({"counts": dict(counts)})
"""


def test_a_braket_hybrid_job_runs_on_the_cluster(server, tmp_path, monkeypatch):
    import boto3
    from braket.aws import AwsQuantumJob, AwsSession

    creds = server.credentials()
    for name, value in dict(AWS_ENDPOINT_URL=server.endpoint, AWS_ACCESS_KEY_ID=creds["aws_access_key_id"],
                            AWS_SECRET_ACCESS_KEY=creds["aws_secret_access_key"], AWS_DEFAULT_REGION="us-east-1",
                            AWS_CONFIG_FILE=os.devnull, AWS_SHARED_CREDENTIALS_FILE=os.devnull).items():
        monkeypatch.setenv(name, value)
    monkeypatch.chdir(tmp_path)
    (tmp_path / "algo.py").write_text(ALGORITHM)
    session = AwsSession(boto_session=boto3.Session(region_name="us-east-1"))
    job = AwsQuantumJob.create(device="arn:aws:braket:::device/quantum-simulator/amazon/sv1",
                               source_module=str(tmp_path / "algo.py"), entry_point="algo:bell",
                               aws_session=session, wait_until_complete=False)
    assert wait_for(lambda: job.state() in ("COMPLETED", "FAILED", "CANCELLED") and job.state(), 180) == \
        "COMPLETED", job.metadata().get("failureReason")
    assert sum(job.result()["counts"].values()) == 100


def test_a_bedrock_fine_tune_runs_on_the_cluster(server, tmp_path):
    from jobforge import tinylm

    words = "red green blue north south east west river ocean forest".split()
    records = [{"prompt": f"{a} {b} {c} ->", "completion": f" {a} {b}"}
               for a in words[:4] for b in words[4:8] for c in words[8:]]
    model = tinylm.build(tmp_path / "tiny", [r["prompt"] + r["completion"] for r in records])
    added = subprocess.run([sys.executable, "-m", "jobforge.cli", "models", "add",
                            "meta.llama3-1-8b-instruct-v1:0:128k", str(model), "--data-dir", str(server.data_dir)],
                           capture_output=True, text=True, timeout=60)
    assert added.returncode == 0, added.stderr
    s3 = server.client("s3")
    s3.create_bucket(Bucket="ray-bedrock")
    s3.put_object(Bucket="ray-bedrock", Key="train.jsonl",
                  Body="".join(json.dumps(r) + "\n" for r in records).encode())
    bedrock = server.client("bedrock")
    arn = bedrock.create_model_customization_job(
        jobName="ray-ft", customModelName="ray-ft-model", roleArn=role(server),
        baseModelIdentifier="meta.llama3-1-8b-instruct-v1:0:128k",
        trainingDataConfig={"s3Uri": "s3://ray-bedrock/train.jsonl"}, outputDataConfig={"s3Uri": "s3://ray-bedrock/out"},
        hyperParameters={"epochCount": "1", "batchSize": "1", "learningRate": "0.003"})["jobArn"]
    job = wait_for(lambda: (found := bedrock.get_model_customization_job(jobIdentifier=arn))["status"] in (
        "Completed", "Failed", "Stopped") and found, 300, 0.5)
    assert job["status"] == "Completed", job.get("failureMessage")
    assert bedrock.get_custom_model(modelIdentifier="ray-ft-model")["modelArn"] == job["outputModelArn"]


def test_server_killed_while_a_job_runs_re_adopts_it(tmp_path, cluster, catalog):
    first = start_server(tmp_path / "data", cluster, catalog)
    try:
        create(first, "survives", Steps=40, SleepSeconds=0.2)
        wait_for(lambda: steps_done(first, "survives") >= 3)
    finally:
        first.kill()
    restarted = start_server(tmp_path / "data", cluster, catalog, port=first.port)
    try:
        job = ended(restarted, "survives")
        assert job["JobStatus"] == "Completed", job
        assert not any(t["Status"] == "Restarting" for t in job["SecondaryStatusTransitions"])
        kept = record(restarted, "survives")
        assert kept.attempt == 1 and kept.result["resumed_from"] == 0  # one attempt ran throughout
    finally:
        restarted.stop()


def test_a_node_lost_mid_job_resumes_the_job_from_its_checkpoint_on_another_node(server, cluster):
    create(server, "node-lost", InstanceType="ml.c5.large", Steps=40, SleepSeconds=0.2)
    wait_for(lambda: checkpointed_step(server, "node-lost") >= 5)  # in the object store, not only on the node
    lost = cluster.special
    # The machine goes, all at once: the node's agent, its fork server and the job's worker (its process group)
    # stop, then Ray's processes and they are killed.
    running = where(server, "node-lost")
    frozen = [running["agent_pid"], running["zygote_pid"]]
    for pid in frozen:
        os.kill(pid, signal.SIGSTOP)
    os.killpg(running["pid"], signal.SIGSTOP)
    cluster.remove_node(lost, allow_graceful=False)
    for pid in frozen:
        os.kill(pid, signal.SIGKILL)
    os.killpg(running["pid"], signal.SIGKILL)
    cluster.special = cluster.add_node(num_cpus=1, resources={"special": 1})
    job = ended(server, "node-lost")
    assert job["JobStatus"] == "Completed", (job.get("FailureReason"), log_lines(server, "node-lost")[-5:])
    kept = record(server, "node-lost")
    assert kept.attempt == 2 and kept.result["resumed_from"] >= 5
    lines = log_lines(server, "node-lost")
    assert any(f"the Ray node {lost.node_ip_address} ({lost.node_id[:12]}) running the job was lost; resuming" in m
               for m in lines), lines
    assert "jobforge: restored the checkpoints from the object store" in lines  # a new node: from S3

