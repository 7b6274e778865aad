"""Scaling out, side by side in one run: the local executor against the Ray executor on this machine, and one
server against two servers on one PostgreSQL database.

1. Executors: N short jobs (the engine's self-test kind, one step) created at once, with the same two CPU
   slots for jobs either way (``--cpus 2`` for the local executor; a one-node Ray cluster of 2 CPUs started
   here). For each: the create → running latency of every job (p50, p99; queueing behind earlier jobs
   included, as a user sees it) and jobs started per second. Target: Ray's p50 under 1 s.
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


def run_jobs(server: ServerProcess, count: int) -> dict:
    """Create count one-step jobs from 8 threads at once; the latency of each from its create to RUNNING."""
    sm = server.client("sagemaker", max_pool_connections=8)
    account = server.client("sts").get_caller_identity()["Account"]
    role = f"arn:aws:iam::{account}:role/JobforgeExecutionRole"
    prefix = uuid.uuid4().hex[:6]
    created: dict[str, float] = {}

    def create(indexes):
        for i in indexes:
            created[f"{prefix}-{i}"] = time.time()
            sm.create_job(JobName=f"{prefix}-{i}", RoleArn=role, JobCategory=selftest_kind.CATEGORY,
                          JobConfigSchemaVersion="1.0.0", JobConfigDocument=json.dumps({"Steps": 1, "SleepSeconds": 0}))

    threads = [threading.Thread(target=create, args=(range(t, count, 8),)) for t in range(8)]
    began = time.time()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    engine = create_engine(f"sqlite:///{server.data_dir / 'jobforge.db'}")
    deadline = time.time() + 60 + 5 * count
    while True:
        records = [jobs.get(engine, account, selftest_kind.KIND, name, region="us-east-1") for name in created]
        if all(r.terminal for r in records):
            break
        if time.time() > deadline:
            raise RuntimeError(f"{sum(not r.terminal for r in records)} jobs did not end in time")
        time.sleep(0.5)
    engine.dispose()
    failed = [r.failure_reason for r in records if r.state != "COMPLETED"]
    running = {r.name: next(t["at"] for t in r.transitions if t["state"] == "RUNNING") for r in records
               if any(t["state"] == "RUNNING" for t in r.transitions)}
    latencies = [running[name] - created[name] for name in running]
    return {"p50": percentile(latencies, 0.5), "p99": percentile(latencies, 0.99),
            "per_second": len(running) / (max(running.values()) - began), "failed": failed}


def executors(count: int, tmp: Path) -> dict:
    from ray.cluster_utils import Cluster

    results = {}
    local = ServerProcess(tmp / "local", extra_args=["--cpus", "2"], env=selftest_kind.SELFTEST_ENV).start()
    try:
        run_jobs(local, 4)  # the fork server warm, the account's checkpoint bucket made
        results["local"] = run_jobs(local, count)
    finally:
        local.stop()
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 2})
    try:
        on_ray = ServerProcess(tmp / "ray", extra_args=["--executor", "ray", "--ray-address", cluster.address],
                               env=selftest_kind.SELFTEST_ENV).start(timeout=120)
        try:
            run_jobs(on_ray, 4)
            results["ray"] = run_jobs(on_ray, count)
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
    parser.add_argument("--jobs", type=int, default=200)
    parser.add_argument("--seconds", type=float, default=3.0, help="length of each control-plane run")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        by_executor = executors(args.jobs, Path(tmp))
        plane = control_plane(Path(tmp), args.seconds)
    print(f"\n{args.jobs} one-step jobs created at once, 2 CPU slots for jobs, {os.cpu_count()} cores\n")
    print(f"{'executor':10} {'p50 s':>7} {'p99 s':>7} {'started/s':>10} {'failed':>7}")
    for name, r in by_executor.items():
        print(f"{name:10} {r['p50']:>7.2f} {r['p99']:>7.2f} {r['per_second']:>10.1f} {len(r['failed']):>7}")
    local, ray = by_executor["local"], by_executor["ray"]
    print(f"\nray/local: p50 {ray['p50'] / local['p50']:.2f}x, p99 {ray['p99'] / local['p99']:.2f}x, "
          f"started/s {ray['per_second'] / local['per_second']:.2f}x; "
          f"Ray create -> running p50 {ray['p50']:.2f} s (target < 1 s)")
    print(f"\nIAM GetRole on PostgreSQL, 4 client threads: one server {plane['one']:.0f} req/s, two servers "
          f"{plane['two']:.0f} req/s ({plane['two'] / plane['one']:.2f}x), {plane['errors']} errors")


if __name__ == "__main__":
    main()
