"""Braket on jobforge, measured end to end against a real server.

(a) Hybrid-job start latency: from the CreateJob call to the first line of the
    user's entry function, p50 over 10 jobs (target: under 1 s; the Braket
    SDK's local mode starts a Docker container instead). The entry module
    imports only ``time``, so this is the platform's own overhead; the code's
    imports come on top, as they would anywhere.
(b) A 10-qubit, 1000-shot circuit (H on every qubit, 3 layers of RY and a CNOT
    ladder, fresh angles each time, as in a variational loop) run as a quantum
    task through jobforge, versus ``LocalSimulator().run(...).result()`` called
    directly in the same process, alternated; medians and their ratio (target:
    at most 1.5). Two clients: plain boto3 (CreateQuantumTask, GetQuantumTask
    every 5 ms, results.json from S3), which is the service's own latency, and
    the Braket SDK's ``AwsDevice(SV1).run(...).result()`` (polling every 5 ms),
    which adds the SDK's client-side work.

Measured on a 2-core machine: (a) p50 0.09-0.13 s (the first jobs after a
start, while the fork server warms up, take up to ~1.4 s), down from ~6 s when
every worker was a cold interpreter importing the Braket SDK. (b) directly
39-41 ms; through jobforge with boto3 44-53 ms, ratio 1.13-1.29; with the
Braket SDK 85-98 ms, ratio 2.2-2.4. The ANTLR parse of the OpenQASM text is ~25 of the
~30 ms a direct run takes; jobforge parses each program shape once
(``jobforge.workloads.braket.parse_cache``), so its simulation takes ~15 ms
and the requests, polling and result hops make up the rest. The SDK's own
client work is ~45 ms (``to_ir`` and signing on create, then in ``result()`` a
GetQuantumTask, a new boto3 S3 resource and a pydantic validation of the
1000 x 10 measurements), more than half the direct time by itself.
"""

from __future__ import annotations

import io
import json
import os
import statistics
import sys
import tarfile
import tempfile
import time
import uuid
from pathlib import Path

import boto3
import numpy as np

# This file is named like the Braket SDK's package: keep its folder off the import path.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from jobforge.testing_server import ServerProcess  # noqa: E402

SV1 = "arn:aws:braket:::device/quantum-simulator/amazon/sv1"
QUBITS, LAYERS, SHOTS = 10, 3, 1000
ENTRY = 'import time\n\n\ndef main():\n    print(f"function-start {time.time():.6f}", flush=True)\n'


def job_start_latency(server: ServerProcess, account: str, jobs: int = 10) -> list[float]:
    braket, s3, logs = server.client("braket"), server.client("s3"), server.client("logs")
    bucket = f"amazon-braket-us-east-1-{account}"
    archive = io.BytesIO()
    with tarfile.open(fileobj=archive, mode="w:gz") as tar:
        info = tarfile.TarInfo("entry.py")
        info.size = len(ENTRY)
        tar.addfile(info, io.BytesIO(ENTRY.encode()))
    s3.put_object(Bucket=bucket, Key="bench/source.tar.gz", Body=archive.getvalue())
    latencies = []
    for i in range(jobs):
        name = f"bench-start-{i}-{uuid.uuid4().hex[:6]}"
        created = time.time()
        arn = braket.create_job(
            clientToken=str(uuid.uuid4()), jobName=name,
            roleArn=f"arn:aws:iam::{account}:role/service-role/AmazonBraketJobsExecutionRole",
            algorithmSpecification={"scriptModeConfig": {"entryPoint": "entry:main", "compressionType": "GZIP",
                                                         "s3Uri": f"s3://{bucket}/bench/source.tar.gz"}},
            outputDataConfig={"s3Path": f"s3://{bucket}/bench/{name}"},
            instanceConfig={"instanceType": "ml.m5.large", "volumeSizeInGb": 30},
            deviceConfig={"device": "local:braket/braket_sv"})["jobArn"]
        while (status := braket.get_job(jobArn=arn)["status"]) not in ("COMPLETED", "FAILED", "CANCELLED"):
            time.sleep(0.05)
        if status != "COMPLETED":
            raise RuntimeError(f"{name} ended {status}: {braket.get_job(jobArn=arn).get('failureReason')}")
        events = logs.filter_log_events(logGroupName="/aws/braket/jobs", logStreamNamePrefix=f"{name}/",
                                        filterPattern="function-start")["events"]
        latencies.append(float(events[0]["message"].split()[1]) - created)
    return latencies


def layered_circuit(angles):
    from braket.circuits import Circuit

    circuit = Circuit().h(range(QUBITS))
    for layer in angles:
        for qubit, angle in enumerate(layer):
            circuit.ry(qubit, float(angle))
        for qubit in range(QUBITS - 1):
            circuit.cnot(qubit, qubit + 1)
    return circuit


def task_latency(server: ServerProcess, account: str, repeats: int = 15, seed: int = 7) -> dict[str, float]:
    """Median seconds per task: through the Braket SDK, through boto3, and LocalSimulator directly."""
    from braket.aws import AwsDevice, AwsSession
    from braket.devices import LocalSimulator
    from braket.circuits.serialization import IRType
    from braket.ir.openqasm import Program

    device = AwsDevice(SV1, aws_session=AwsSession(boto_session=boto3.Session(region_name="us-east-1")))
    simulator = LocalSimulator()
    braket, s3 = server.client("braket"), server.client("s3")
    bucket = f"amazon-braket-us-east-1-{account}"
    rng = np.random.default_rng(seed)

    def sdk(circuit):
        result = device.run(circuit, shots=SHOTS, poll_interval_seconds=0.005).result()
        return sum(result.measurement_counts.values())

    def plain_boto3(circuit):
        # The service's own latency: the program as the SDK would send it, polled every 5 ms like above.
        action = Program(source=circuit.to_ir(IRType.OPENQASM).source).json()
        arn = braket.create_quantum_task(clientToken=str(uuid.uuid4()), deviceArn=SV1, shots=SHOTS, action=action,
                                         outputS3Bucket=bucket, outputS3KeyPrefix="bench/tasks")["quantumTaskArn"]
        while (task := braket.get_quantum_task(quantumTaskArn=arn))["status"] not in ("COMPLETED", "FAILED"):
            time.sleep(0.005)
        body = s3.get_object(Bucket=bucket, Key=f"{task['outputS3Directory']}/results.json")["Body"].read()
        return len(json.loads(body)["measurements"])

    def direct(circuit):
        return sum(simulator.run(circuit, shots=SHOTS).result().measurement_counts.values())

    paths = {"sdk": sdk, "boto3": plain_boto3, "direct": direct}
    for _ in range(3):  # imports, JIT compilation, connections
        warm = layered_circuit(rng.uniform(0, np.pi, (LAYERS, QUBITS)))
        for run in paths.values():
            run(warm)
    times: dict[str, list[float]] = {name: [] for name in paths}
    for _ in range(repeats):  # alternated, so that drifts in machine load hit every path alike
        circuit = layered_circuit(rng.uniform(0, np.pi, (LAYERS, QUBITS)))
        for name, run in paths.items():
            started = time.perf_counter()
            shots = run(circuit)
            times[name].append(time.perf_counter() - started)
            assert shots == SHOTS, (name, shots)
    return {name: statistics.median(values) for name, values in times.items()}


def main() -> int:
    with tempfile.TemporaryDirectory(prefix="jobforge-bench-braket-") as tmp:
        server = ServerProcess(Path(tmp) / "data").start()
        saved = dict(os.environ)
        try:
            creds = server.credentials()
            os.environ.update(AWS_ENDPOINT_URL=server.endpoint, AWS_ACCESS_KEY_ID=creds["aws_access_key_id"],
                              AWS_SECRET_ACCESS_KEY=creds["aws_secret_access_key"], AWS_DEFAULT_REGION="us-east-1",
                              AWS_CONFIG_FILE=os.devnull, AWS_SHARED_CREDENTIALS_FILE=os.devnull)
            account = server.client("sts").get_caller_identity()["Account"]
            server.client("s3").create_bucket(Bucket=f"amazon-braket-us-east-1-{account}")
            latencies = job_start_latency(server, account)
            p50 = statistics.median(latencies)
            print(f"braket hybrid job, CreateJob to user function start: p50 {p50:.2f} s, "
                  f"min {min(latencies):.2f} s, max {max(latencies):.2f} s over {len(latencies)} jobs "
                  f"(target < 1 s)", flush=True)
            medians = task_latency(server, account)
            direct = medians["direct"]
            print(f"braket quantum task, {QUBITS} qubits, {SHOTS} shots: LocalSimulator directly "
                  f"{direct * 1000:.1f} ms; through jobforge with boto3 {medians['boto3'] * 1000:.1f} ms, "
                  f"ratio {medians['boto3'] / direct:.2f} (target <= 1.5); through jobforge with the Braket SDK "
                  f"{medians['sdk'] * 1000:.1f} ms, ratio {medians['sdk'] / direct:.2f}")
        finally:
            os.environ.clear()
            os.environ.update(saved)
            server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
