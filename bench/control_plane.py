"""Control-plane throughput and latency: IAM GetRole on jobforge, on moto's
server and on a bare ASGI app (the ceiling), side by side in one run.

Each client thread replays one pre-signed request over a kept-alive
connection, so the client's own signing and parsing cost is not measured.
Targets: ≥10× moto, ≥0.5× the bare app, p99 < 20 ms. The servers are
measured in alternating rounds and each figure is the median round.

Measured on a 2-core machine (runs vary by about 20 %): with 4 client
threads jobforge answers ~3,000 req/s, 10.1-10.4x moto and 0.51-0.63x the
bare app, p99 ~4 ms: the targets hold. With 1 thread it is ~2,000 req/s,
6-7x moto and ~0.3x the bare app, p99 1 ms: a single client waits for each
answer, so the figure is latency, and jobforge's ~0.2 ms of Python per
request (SigV4 check, a database read, validation, XML) against the bare
app's nothing is what separates them.
"""

from __future__ import annotations

import argparse
import http.client
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from urllib.parse import urlsplit

import boto3
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from jobforge.testing_server import ServerProcess, free_port  # noqa: E402

BODY = b"Action=GetRole&Version=2010-05-08&RoleName=BenchRole"
POLICY = '{"Version":"2012-10-17","Statement":[]}'


def signed_request(endpoint: str, key: str, secret: str) -> tuple[str, dict, bytes]:
    request = AWSRequest("POST", endpoint + "/", data=BODY,
                         headers={"Content-Type": "application/x-www-form-urlencoded; charset=utf-8"})
    SigV4Auth(Credentials(key, secret), "iam", "us-east-1").add_auth(request)
    prepared = request.prepare()
    return "/", dict(prepared.headers), BODY


def replay(endpoint: str, request, threads: int, seconds: float) -> dict:
    path, headers, body = request
    host = urlsplit(endpoint)
    latencies: list[list[float]] = [[] for _ in range(threads)]
    errors = [0] * threads
    start = threading.Barrier(threads + 1)
    stop_at = [0.0]

    def client(i):
        conn = http.client.HTTPConnection(host.hostname, host.port)
        conn.request("POST", path, body=body, headers=headers)  # warm-up
        conn.getresponse().read()
        start.wait()
        own = latencies[i]
        while True:
            t0 = time.perf_counter()
            if t0 >= stop_at[0]:
                break
            conn.request("POST", path, body=body, headers=headers)
            response = conn.getresponse()
            response.read()
            own.append(time.perf_counter() - t0)
            if response.status != 200:
                errors[i] += 1
        conn.close()

    workers = [threading.Thread(target=client, args=(i,)) for i in range(threads)]
    for w in workers:
        w.start()
    stop_at[0] = time.perf_counter() + 1e9
    start.wait()
    began = time.perf_counter()
    stop_at[0] = began + seconds
    for w in workers:
        w.join()
    elapsed = time.perf_counter() - began
    flat = sorted(x for own in latencies for x in own)
    return {"rps": len(flat) / elapsed, "p50_ms": 1000 * flat[len(flat) // 2],
            "p99_ms": 1000 * flat[int(len(flat) * 0.99)], "errors": sum(errors), "n": len(flat),
            "mean_ms": 1000 * statistics.fmean(flat)}


def wait_http(endpoint: str, process: subprocess.Popen, timeout=30) -> None:
    host = urlsplit(endpoint)
    deadline = time.time() + timeout
    while time.time() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{endpoint} exited")
        try:
            conn = http.client.HTTPConnection(host.hostname, host.port, timeout=1)
            conn.request("GET", "/")
            conn.getresponse().read()
            return
        except OSError:
            time.sleep(0.2)
    raise RuntimeError(f"{endpoint} did not start")


def start_jobforge(tmp: Path):
    server = ServerProcess(tmp / "jobforge").start()
    server.client("iam").create_role(RoleName="BenchRole", AssumeRolePolicyDocument=POLICY)
    creds = server.credentials()
    return server.stop, server.endpoint, signed_request(server.endpoint, creds["aws_access_key_id"],
                                                       creds["aws_secret_access_key"])


def start_moto():
    port = free_port()
    process = subprocess.Popen([sys.executable, "-m", "moto.server", "-p", str(port)], stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
    endpoint = f"http://127.0.0.1:{port}"
    wait_http(endpoint, process)
    boto3.client("iam", endpoint_url=endpoint, region_name="us-east-1", aws_access_key_id="AKIAMOTO",
                 aws_secret_access_key="moto").create_role(RoleName="BenchRole", AssumeRolePolicyDocument=POLICY)
    return process.kill, endpoint, signed_request(endpoint, "AKIAMOTO", "moto")


def start_bare():
    port = free_port()
    process = subprocess.Popen([sys.executable, "-m", "uvicorn", "--app-dir", str(Path(__file__).parent),
                                "bare_app:app", "--port", str(port), "--log-level", "warning", "--no-access-log"],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    endpoint = f"http://127.0.0.1:{port}"
    wait_http(endpoint, process)
    return process.kill, endpoint, signed_request(endpoint, "AKIABARE", "bare")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    runs: dict[str, dict[int, list[dict]]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        servers = {}
        try:
            for name, starter in (("jobforge", lambda: start_jobforge(Path(tmp))), ("moto", start_moto),
                                  ("bare-asgi", start_bare)):
                servers[name] = starter()
            # Rounds alternate the servers, so that drifts in the machine's load hit all of them alike.
            for _ in range(args.rounds):
                for name, (_, endpoint, request) in servers.items():
                    for threads in (1, 4):
                        runs.setdefault(name, {}).setdefault(threads, []).append(
                            replay(endpoint, request, threads, args.seconds))
        finally:
            for stop, _, _ in servers.values():
                stop()
    # Each figure is the round with the median throughput.
    results = {name: {threads: sorted(rounds, key=lambda r: r["rps"])[len(rounds) // 2]
                      for threads, rounds in by_threads.items()} for name, by_threads in runs.items()}
    print(f"\nIAM GetRole, median of {args.rounds} rounds of {args.seconds:g} s, {os.cpu_count()} cores\n")
    print(f"{'server':10} {'threads':>7} {'req/s':>9} {'p50 ms':>8} {'p99 ms':>8} {'errors':>7}")
    for name, by_threads in results.items():
        for threads, r in by_threads.items():
            print(f"{name:10} {threads:>7} {r['rps']:>9.0f} {r['p50_ms']:>8.2f} {r['p99_ms']:>8.2f} {r['errors']:>7}")
    for threads in (1, 4):
        jf = results["jobforge"][threads]["rps"]
        print(f"\n{threads} thread(s): jobforge/moto = {jf / results['moto'][threads]['rps']:.1f}x (target >= 10x), "
              f"jobforge/bare = {jf / results['bare-asgi'][threads]['rps']:.2f} (target >= 0.5), "
              f"jobforge p99 = {results['jobforge'][threads]['p99_ms']:.2f} ms (target < 20 ms)")


if __name__ == "__main__":
    main()
