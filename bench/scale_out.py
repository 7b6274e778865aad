"""Scaling out, side by side in one run: the local executor against the Ray executor on this machine, and one
server against two servers on one PostgreSQL database.

1. Executors, with the same two CPU slots for jobs either way (``--cpus 2`` for the local executor; a one-node
   Ray cluster of 2 CPUs started here), short jobs of the engine's self-test kind (one step, no sleep):
   a. Start latency with free capacity (what the target means): ``--single`` jobs created one at a time, each
      once the one before has ended, so every job finds a free slot. For each, the time from just before its
      CreateJob call to its RUNNING transition (recorded by the server when the worker reports it runs); p50
      and p99. Target: Ray's p50 under 1 s.
   b. Burst: ``--jobs`` jobs created at once from 8 threads. Jobs started per second (from the first create to
      the last RUNNING), and each job's create -> running time (p50, p99), which here is mostly queueing
      behind earlier jobs on the two slots, as a user of a full cluster sees it.
   Before each, 4 jobs warm the server up (the fork servers, the account's checkpoint bucket). The ratios
   printed are Ray's figure over the local executor's.
2. Control plane: IAM GetRole replayed pre-signed over kept-alive connections (as bench/control_plane.py does)
   by 4 client threads against one server on PostgreSQL, then split 2 + 2 across two servers sharing it.

Needs PostgreSQL ($JOBFORGE_TEST_POSTGRES_URL, default postgresql://postgres@127.0.0.1:5432/postgres, where it
makes a database of its own) and Ray (pip install 'jobforge[ray]').
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

import sqlalchemy as sa

ROOT = Path(__file__).resolve().parent.parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))  # the engine's self-test job kind
sys.path.insert(0, str(ROOT / "bench"))
from control_plane import POLICY, replay, signed_request  # noqa: E402

import selftest_kind  # noqa: E402
from jobforge.core import jobs  # noqa: E402
from jobforge.core.store import create_engine  # noqa: E402
from jobforge.testing_server import ServerProcess  # noqa: E402

POSTGRES_URL = os.environ.get("JOBFORGE_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres")


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * fraction))]


class JobClient:
    """Creates self-test jobs on a server and reads their records from its database."""

    def __init__(self, server: ServerProcess):
        self.sm = server.client("sagemaker", max_pool_connections=8)
        self.account = server.client("sts").get_caller_identity()["Account"]
        self.role = f"arn:aws:iam::{self.account}:role/JobforgeExecutionRole"
        self.engine = create_engine(f"sqlite:///{server.data_dir / 'jobforge.db'}")

    def create(self, name: str) -> float:
        """Create a one-step job; when the call was made."""
        at = time.time()
        self.sm.create_job(JobName=name, RoleArn=self.role, JobCategory=selftest_kind.CATEGORY,
                           JobConfigSchemaVersion="1.0.0",
                           JobConfigDocument=json.dumps({"Steps": 1, "SleepSeconds": 0}))
        return at

    def wait_ended(self, names, timeout: float) -> list[jobs.Job]:
        deadline = time.time() + timeout
        while True:
            records = [jobs.get(self.engine, self.account, selftest_kind.KIND, name, region="us-east-1")
                       for name in names]
            if all(r.terminal for r in records):
                return records
            if time.time() > deadline:
                raise RuntimeError(f"{sum(not r.terminal for r in records)} jobs did not end in time")
            time.sleep(0.1)

    def close(self) -> None:
        self.engine.dispose()


def running_at(record: jobs.Job) -> float | None:
    return next((t["at"] for t in record.transitions if t["state"] == "RUNNING"), None)


def one_at_a_time(client: JobClient, count: int) -> dict:
    """count jobs, each created once the one before has ended: each one's create -> running time."""
    prefix = uuid.uuid4().hex[:6]
    latencies, failed = [], []
    for i in range(count):
        created = client.create(f"{prefix}-{i}")
        record, = client.wait_ended([f"{prefix}-{i}"], timeout=120)
        if record.state != "COMPLETED":
            failed.append(record.failure_reason)
        if running_at(record) is not None:
            latencies.append(running_at(record) - created)
    return {"p50": percentile(latencies, 0.5), "p99": percentile(latencies, 0.99), "failed": failed}


def burst(client: JobClient, count: int) -> dict:
    """count jobs created at once from 8 threads: jobs started per second, each one's create -> running time."""
    prefix = uuid.uuid4().hex[:6]
    created: dict[str, float] = {}

    def create(indexes):
        for i in indexes:
            created[f"{prefix}-{i}"] = client.create(f"{prefix}-{i}")

    threads = [threading.Thread(target=create, args=(range(t, count, 8),)) for t in range(8)]
    began = time.time()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    records = client.wait_ended(list(created), timeout=60 + 5 * count)
    failed = [r.failure_reason for r in records if r.state != "COMPLETED"]
    running = {r.name: running_at(r) for r in records if running_at(r) is not None}
    latencies = [running[name] - created[name] for name in running]
    return {"p50": percentile(latencies, 0.5), "p99": percentile(latencies, 0.99),
            "per_second": len(running) / (max(running.values()) - began), "failed": failed}


def measure(server: ServerProcess, single: int, count: int) -> dict:
    client = JobClient(server)
    try:
        burst(client, 4)  # warm-up
        return {"single": one_at_a_time(client, single), "burst": burst(client, count)}
    finally:
        client.close()


def executors(single: int, count: int, tmp: Path) -> dict:
    from ray.cluster_utils import Cluster

    results = {}
    local = ServerProcess(tmp / "local", extra_args=["--cpus", "2"], env=selftest_kind.SELFTEST_ENV).start()
    try:
        results["local"] = measure(local, single, count)
    finally:
        local.stop()
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 2})
    try:
        on_ray = ServerProcess(tmp / "ray", extra_args=["--executor", "ray", "--ray-address", cluster.address],
                               env=selftest_kind.SELFTEST_ENV).start(timeout=120)
        try:
            results["ray"] = measure(on_ray, single, count)
        finally:
            on_ray.stop()
    finally:
        cluster.shutdown()
    return results


def control_plane(tmp: Path, seconds: float) -> dict:
    admin = sa.create_engine(POSTGRES_URL.replace("postgresql://", "postgresql+psycopg://", 1),
                             isolation_level="AUTOCOMMIT")
    name = f"jobforge_bench_{uuid.uuid4().hex[:12]}"
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    url = POSTGRES_URL.rsplit("/", 1)[0] + "/" + name
    servers = []
    try:
        for label in ("a", "b"):
            servers.append(ServerProcess(tmp / f"pg-{label}", extra_args=["--database-url", url]).start())
        servers[0].client("iam").create_role(RoleName="BenchRole", AssumeRolePolicyDocument=POLICY)
        creds = servers[0].credentials()
        requests = [signed_request(s.endpoint, creds["aws_access_key_id"], creds["aws_secret_access_key"])
                    for s in servers]
        one = replay(servers[0].endpoint, requests[0], 4, seconds)
        halves: list[dict] = [{}, {}]

        def half(i):
            halves[i] = replay(servers[i].endpoint, requests[i], 2, seconds)

        threads = [threading.Thread(target=half, args=(i,)) for i in range(2)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        return {"one": one["rps"], "two": sum(h["rps"] for h in halves),
                "errors": one["errors"] + sum(h["errors"] for h in halves)}
    finally:
        for server in servers:
            server.stop()
        with admin.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--jobs", type=int, default=200, help="jobs in the burst")
    parser.add_argument("--single", type=int, default=30, help="jobs created one at a time (at least 20)")
    parser.add_argument("--seconds", type=float, default=3.0, help="length of each control-plane run")
    parser.add_argument("--no-control-plane", action="store_true", help="measure the executors only")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        by_executor = executors(args.single, args.jobs, Path(tmp))
        plane = None if args.no_control_plane else control_plane(Path(tmp), args.seconds)
    load = os.getloadavg()
    print(f"\n2 CPU slots for jobs, {os.cpu_count()} cores, load average {load[0]:.1f} {load[1]:.1f} {load[2]:.1f}")
    print(f"free capacity: {args.single} jobs one at a time; burst: {args.jobs} jobs created at once\n")
    print(f"{'':10} {'free capacity':>17}   {'burst (queueing)':>17} {'burst':>10}")
    print(f"{'executor':10} {'p50 s':>8} {'p99 s':>8}   {'p50 s':>8} {'p99 s':>8} {'started/s':>10} {'failed':>7}")
    for name, r in by_executor.items():
        one, many = r["single"], r["burst"]
        print(f"{name:10} {one['p50']:>8.2f} {one['p99']:>8.2f}   {many['p50']:>8.2f} {many['p99']:>8.2f} "
              f"{many['per_second']:>10.2f} {len(one['failed']) + len(many['failed']):>7}")
    local, ray = by_executor["local"], by_executor["ray"]
    print(f"\nray/local: free-capacity p50 {ray['single']['p50'] / local['single']['p50']:.2f}x, "
          f"p99 {ray['single']['p99'] / local['single']['p99']:.2f}x; burst started/s "
          f"{ray['burst']['per_second'] / local['burst']['per_second']:.2f}x, burst p50 "
          f"{ray['burst']['p50'] / local['burst']['p50']:.2f}x")
    verdict = "met" if ray["single"]["p50"] < 1 else "not met"
    print(f"Ray create -> running p50 with free capacity {ray['single']['p50']:.2f} s (target < 1 s: {verdict})")
    if plane is not None:
        print(f"\nIAM GetRole on PostgreSQL, 4 client threads: one server {plane['one']:.0f} req/s, two servers "
              f"{plane['two']:.0f} req/s ({plane['two'] / plane['one']:.2f}x), {plane['errors']} errors")


if __name__ == "__main__":
    main()
