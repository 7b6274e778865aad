"""Lambda: warm Invoke round trips through boto3 (per second, p50 and p99 latency) and cold starts (create →
first answer, p50), on jobforge, on moto's Lambda and as a direct in-process call (the floor), side by side in
one run.

moto runs each invocation in a Docker container; where no Docker daemon answers, its figures are skipped and
the run says so. The function is the same everywhere: it echoes its event. Targets: warm p50 under 5 ms, cold
start under 1 s.
"""

from __future__ import annotations

import argparse
import io
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
import zipfile
from pathlib import Path

import boto3

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from jobforge.testing_server import ServerProcess, free_port  # noqa: E402

SOURCE = "def handler(event, context):\n    return {'echo': event}\n"
EVENT = {"question": "ping", "n": 1}
RUNTIME = f"python3.{sys.version_info[1]}"


def archive() -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as zipped:
        zipped.writestr("app.py", SOURCE)
    return buffer.getvalue()


def percentiles(samples: list[float]) -> dict:
    ordered = sorted(samples)
    return {"n": len(ordered), "p50_ms": 1000 * ordered[len(ordered) // 2],
            "p99_ms": 1000 * ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))],
            "per_s": len(ordered) / sum(ordered)}


def create(client, role: str, name: str) -> None:
    client.create_function(FunctionName=name, Runtime=RUNTIME, Role=role, Handler="app.handler",
                           Code={"ZipFile": archive()}, Timeout=30)
    while client.get_function_configuration(FunctionName=name)["State"] != "Active":
        time.sleep(0.01)


def warm(client, name: str, seconds: float) -> dict:
    payload = json.dumps(EVENT).encode()
    client.invoke(FunctionName=name, Payload=payload)["Payload"].read()
    samples, stop = [], time.perf_counter() + seconds
    while (began := time.perf_counter()) < stop:
        answer = client.invoke(FunctionName=name, Payload=payload)
        answer["Payload"].read()
        samples.append(time.perf_counter() - began)
    return percentiles(samples)


def cold(client, role: str, starts: int) -> dict:
    samples = []
    for _ in range(starts):
        name = f"cold-{uuid.uuid4().hex[:8]}"
        began = time.perf_counter()
        create(client, role, name)
        client.invoke(FunctionName=name, Payload=json.dumps(EVENT).encode())["Payload"].read()
        samples.append(time.perf_counter() - began)
        client.delete_function(FunctionName=name)
    return {"p50_s": statistics.median(samples), "n": len(samples)}


def in_process(seconds: float) -> dict:
    """The floor: the handler called in this process, its event and result through JSON as on the wire."""
    namespace: dict = {}
    exec(SOURCE, namespace)
    handler, payload = namespace["handler"], json.dumps(EVENT).encode()
    samples, stop = [], time.perf_counter() + seconds
    while (began := time.perf_counter()) < stop:
        json.dumps(handler(json.loads(payload), None)).encode()
        samples.append(time.perf_counter() - began)
    return percentiles(samples)


def jobforge_figures(tmp: Path, seconds: float, starts: int) -> dict:
    server = ServerProcess(tmp / "jobforge").start()
    try:
        account = server.client("sts").get_caller_identity()["Account"]
        role = f"arn:aws:iam::{account}:role/JobforgeExecutionRole"
        client = server.client("lambda")
        create(client, role, "bench")
        return {"warm": warm(client, "bench", seconds), "cold": cold(client, role, starts)}
    finally:
        server.stop()


def docker_answers() -> str | None:
    """None when a Docker daemon answers; else why not."""
    if shutil.which("docker") is None:
        return "no docker command on this host"
    done = subprocess.run(["docker", "info"], capture_output=True, text=True, timeout=30)
    return None if done.returncode == 0 else (done.stderr.strip().splitlines() or ["docker info failed"])[-1]


def moto_figures(seconds: float, starts: int) -> dict:
    port = free_port()
    process = subprocess.Popen([sys.executable, "-m", "moto.server", "-p", str(port)], stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
    try:
        endpoint = f"http://127.0.0.1:{port}"
        session = dict(endpoint_url=endpoint, region_name="us-east-1", aws_access_key_id="AKIAMOTO",
                       aws_secret_access_key="moto")
        deadline = time.time() + 30
        while True:
            try:
                iam = boto3.client("iam", **session)
                role = iam.create_role(RoleName="BenchRole", AssumeRolePolicyDocument="{}")["Role"]["Arn"]
                break
            except Exception:
                if time.time() > deadline:
                    raise
                time.sleep(0.2)
        client = boto3.client("lambda", **session)
        create(client, role, "bench")
        return {"warm": warm(client, "bench", seconds), "cold": cold(client, role, starts)}
    finally:
        process.kill()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=5.0, help="of warm invocations per server")
    parser.add_argument("--starts", type=int, default=5, help="cold starts per server")
    args = parser.parse_args()
    floor = in_process(args.seconds)
    with tempfile.TemporaryDirectory() as tmp:
        ours = jobforge_figures(Path(tmp), args.seconds, args.starts)
    why_no_moto = docker_answers()
    theirs = None if why_no_moto else moto_figures(args.seconds, args.starts)

    print(f"{'':22}{'invokes/s':>12}{'p50 ms':>10}{'p99 ms':>10}{'cold p50 s':>12}")
    print(f"{'in-process call':22}{floor['per_s']:>12.0f}{floor['p50_ms']:>10.3f}{floor['p99_ms']:>10.3f}{'':>12}")
    for name, figures in (("jobforge", ours), ("moto (Docker)", theirs)):
        if figures is None:
            print(f"{name:22}skipped: moto's Lambda runs functions in Docker, and no Docker daemon answers here "
                  f"({why_no_moto})")
            continue
        warm_, cold_ = figures["warm"], figures["cold"]
        print(f"{name:22}{warm_['per_s']:>12.0f}{warm_['p50_ms']:>10.2f}{warm_['p99_ms']:>10.2f}"
              f"{cold_['p50_s']:>12.3f}")
    warm_, cold_ = ours["warm"], ours["cold"]
    print(f"\njobforge warm p50 is {warm_['p50_ms'] / floor['p50_ms']:.0f}x the in-process call "
          f"(target: p50 under 5 ms: {'met' if warm_['p50_ms'] < 5 else 'missed'}); cold start p50 "
          f"{cold_['p50_s']:.3f} s (target under 1 s: {'met' if cold_['p50_s'] < 1 else 'missed'})")
    if theirs is not None:
        print(f"jobforge answers {warm_['per_s'] / theirs['warm']['per_s']:.1f}x moto's warm invocations per second; "
              f"its cold start is {theirs['cold']['p50_s'] / cold_['p50_s']:.1f}x faster")


if __name__ == "__main__":
    main()
