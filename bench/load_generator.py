"""The load generator's throughput against Locust's FastHttpUser, both driving the same trivial server.

The server (jobforge's reference server: one uvloop event loop answering 200 at once) runs on one core; each
generator runs in a process of its own on another core, with the same number of closed-loop users, zero wait,
keep-alive connections and the same 35-byte JSON POST to /invocations. Locust runs as a library (an
Environment with a local runner), so that it pays no web UI. Rounds alternate the two; the medians are
compared. Target: jobforge's generator drives at least 2x Locust's requests a second.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from jobforge.workloads.recommend.generator_process import GeneratorProcess  # noqa: E402
from jobforge.workloads.recommend.load_test import Plan, Target  # noqa: E402
from jobforge.workloads.recommend.reference_server import ServerProcess  # noqa: E402
from jobforge.workloads.recommend.traffic import Segment  # noqa: E402

BODY = b'{"instances": [[0.0, 1.0, 2.0, 3.0]]}'
WARM_UP = 1.0
TARGET = 2.0


def cores() -> tuple[list[int] | None, list[int] | None]:
    """(the generators' core, the server's core); None where this host has one core only."""
    available = sorted(os.sched_getaffinity(0))
    return (available[:1], available[-1:]) if len(available) > 1 else (None, None)


def jobforge_rate(port: int, users: int, seconds: float, core: list[int] | None, folder: Path) -> dict:
    payload = folder / "payload.json"
    payload.write_bytes(BODY)
    plan = Plan([Segment(WARM_UP, users, 0), Segment(seconds, users, 1)])
    with GeneratorProcess(Target("127.0.0.1", port), [(payload, "application/json")], plan, core) as generator:
        window = list(generator.windows())[-1]
    return {"per_second": window.per_second, "failures": window.errors, "p99_ms": window.latency_ms.get("p99")}


def locust_rate(port: int, users: int, seconds: float, core: list[int] | None) -> dict:
    argv = [sys.executable, __file__, "--locust-child", str(port), str(users), str(seconds)]
    out = subprocess.run(argv, capture_output=True, text=True, check=True,
                         preexec_fn=(lambda: os.sched_setaffinity(0, core)) if core else None).stdout
    return json.loads(out.strip().splitlines()[-1])


def locust_child(port: int, users: int, seconds: float) -> None:
    """Locust's FastHttpUser as a library (gevent patches this process only)."""
    import gevent
    from locust import FastHttpUser, constant, task
    from locust.env import Environment

    class Invoker(FastHttpUser):
        host = f"http://127.0.0.1:{port}"
        wait_time = constant(0)

        @task
        def invoke(self):
            self.client.post("/invocations", data=BODY, headers={"Content-Type": "application/json"})

    environment = Environment(user_classes=[Invoker])
    runner = environment.create_local_runner()
    runner.start(users, spawn_rate=users)
    gevent.sleep(WARM_UP)
    environment.stats.reset_all()
    started = time.perf_counter()
    gevent.sleep(seconds)
    total = environment.stats.total
    requests, failures = total.num_requests, total.num_failures
    elapsed = time.perf_counter() - started
    p99 = total.get_response_time_percentile(0.99)
    runner.quit()
    print(json.dumps({"per_second": requests / elapsed, "failures": failures, "p99_ms": p99}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--users", type=int, nargs="+", default=[10, 50])
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--locust-child", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.locust_child:
        port, users, seconds = args.locust_child
        locust_child(int(port), int(users), float(seconds))
        return
    generator_core, server_core = cores()
    print(f"trivial server on core {server_core or 'shared'}, generators on core {generator_core or 'shared'}; "
          f"{args.rounds} rounds of {args.seconds:g} s after {WARM_UP:g} s of warm-up")
    ratios = []
    with tempfile.TemporaryDirectory() as folder, ServerProcess(cores=server_core) as server:
        for users in args.users:
            ours, locust = [], []
            for _ in range(args.rounds):
                ours.append(jobforge_rate(server.port, users, args.seconds, generator_core, Path(folder)))
                locust.append(locust_rate(server.port, users, args.seconds, generator_core))
            mine = statistics.median(r["per_second"] for r in ours)
            theirs = statistics.median(r["per_second"] for r in locust)
            ratios.append(mine / theirs)
            print(f"{users:>3} users  jobforge {mine:>8.0f} req/s (failures {sum(r['failures'] for r in ours)})   "
                  f"locust FastHttpUser {theirs:>8.0f} req/s (failures {sum(r['failures'] for r in locust)})   "
                  f"ratio {mine / theirs:.2f}x")
    worst = min(ratios)
    print(f"load generator vs Locust FastHttpUser: {worst:.2f}x at worst "
          f"(target >= {TARGET:g}x: {'met' if worst >= TARGET else 'NOT met'})")


if __name__ == "__main__":
    main()
