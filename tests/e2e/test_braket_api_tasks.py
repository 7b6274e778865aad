"""Quantum tasks through the Braket SDK's AwsDevice against a real server, compared with LocalSimulator.

Exact results (shots = 0) are deterministic and must equal a direct
LocalSimulator run; sampled results must agree with the exact probabilities
within sampling error. Also: JAQCD programs, the status path, cancel while
queued and while running.
"""

from __future__ import annotations

import datetime as dt
import math
import time
import uuid

import numpy as np
import pytest

from jobforge.testing_server import ServerProcess

from braket_client import sdk_session

# The Braket SDK is imported by the tests that use it, so that collecting them stays fast.
SV1 = "arn:aws:braket:::device/quantum-simulator/amazon/sv1"
DM1 = "arn:aws:braket:::device/quantum-simulator/amazon/dm1"


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    # Two CPU slots: one simulator process, so a long task really keeps the next one queued.
    srv = ServerProcess(tmp_path_factory.mktemp("braket-tasks") / "data", extra_args=["--cpus", "2"]).start()
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def session(server):
    with sdk_session(server) as session:
        yield session


def ansatz(n: int, seed: int):
    from braket.circuits import Circuit

    rng = np.random.default_rng(seed)
    circuit = Circuit()
    for q in range(n):
        circuit.h(q)
    for _ in range(2):
        for q in range(n):
            circuit.ry(q, rng.uniform(0, 2 * math.pi))
        for q in range(n - 1):
            circuit.cnot(q, q + 1)
    return circuit


def run(device, circuit, shots):
    return device.run(circuit, shots=shots, poll_interval_seconds=0.05).result()


def test_exact_results_equal_local_simulator(session):
    from braket.aws import AwsDevice
    from braket.circuits import Circuit, Observable, noises
    from braket.devices import LocalSimulator

    circuit = ansatz(5, seed=7)
    exact = (circuit.copy().state_vector().probability(target=[0, 1])
             .expectation(Observable.Z() @ Observable.Z(), target=[2, 3]))
    remote = run(AwsDevice(SV1, aws_session=session), exact, 0)
    local = LocalSimulator("braket_sv").run(exact, shots=0).result()
    assert np.array_equal(remote.values[0], local.values[0])  # state vector
    assert np.allclose(remote.values[1], local.values[1], rtol=0, atol=1e-12)
    assert remote.values[2] == pytest.approx(local.values[2], abs=1e-12)
    noisy = Circuit().h(0).cnot(0, 1).apply_gate_noise(noises.Depolarizing(0.1)).probability()
    assert np.allclose(run(AwsDevice(DM1, aws_session=session), noisy, 0).values[0],
                       LocalSimulator("braket_dm").run(noisy, shots=0).result().values[0], atol=1e-12)


def test_one_shape_with_new_angles_equals_local_simulator(session):
    """The server parses a program shape once; every later program of that shape still simulates as itself."""
    from braket.aws import AwsDevice
    from braket.devices import LocalSimulator

    device, local = AwsDevice(SV1, aws_session=session), LocalSimulator("braket_sv")
    for seed in (11, 12, 13):
        circuit = ansatz(4, seed).state_vector()
        remote = run(device, circuit, 0)
        assert np.array_equal(remote.values[0], local.run(circuit, shots=0).result().values[0])
    task = remote.task_metadata.id
    directory = session.braket_client.get_quantum_task(quantumTaskArn=task)["outputS3Directory"]
    bucket = session.braket_client.get_quantum_task(quantumTaskArn=task)["outputS3Bucket"]
    head = session.boto_session.client("s3").head_object(Bucket=bucket, Key=f"{directory}/results.json")
    assert head["ContentType"] == "application/json"


def test_sampled_results_are_consistent(session):
    from braket.aws import AwsDevice
    from braket.devices import LocalSimulator

    circuit = ansatz(3, seed=11)
    shots = 4000
    probabilities = LocalSimulator("braket_sv").run(circuit.copy().probability(), shots=0).result().values[0]
    result = run(AwsDevice(SV1, aws_session=session), circuit, shots)
    assert len(result.measurements) == shots and result.measurements.shape[1] == 3
    counts = result.measurement_counts
    for index, p in enumerate(probabilities):
        observed = counts.get(format(index, "03b"), 0) / shots
        assert abs(observed - p) <= 5 * math.sqrt(p * (1 - p) / shots) + 1e-9, (index, observed, p)
    task = result.task_metadata
    assert task.shots == shots and task.deviceId == SV1


def test_jaqcd_program_and_task_record(session):
    from braket.aws import AwsQuantumTask
    from braket.ir.jaqcd import CNot, H, Program

    program = Program(instructions=[H(target=0), CNot(control=0, target=1)])
    bucket = session.default_bucket()
    braket = session.braket_client
    arn = braket.create_quantum_task(clientToken=str(uuid.uuid4()), deviceArn=SV1, shots=50, action=program.json(),
                                     outputS3Bucket=bucket, outputS3KeyPrefix="jaqcd",
                                     tags={"kind": "jaqcd"})["quantumTaskArn"]
    task = AwsQuantumTask(arn, aws_session=session, poll_interval_seconds=0.05)
    result = task.result()
    assert set(result.measurement_counts) <= {"00", "11"} and sum(result.measurement_counts.values()) == 50
    record = braket.get_quantum_task(quantumTaskArn=arn)
    assert record["status"] == "COMPLETED" and record["numSuccessfulShots"] == 50
    assert record["outputS3Directory"] == f"jaqcd/{arn.rsplit('/', 1)[1]}"
    assert record["actionMetadata"]["actionType"] == "braket.ir.jaqcd.program" and record["tags"] == {"kind": "jaqcd"}
    found = braket.search_quantum_tasks(filters=[{"name": "quantumTaskArn", "operator": "EQUAL", "values": [arn]},
                                                 {"name": "status", "operator": "EQUAL", "values": ["COMPLETED"]}])
    assert [t["quantumTaskArn"] for t in found["quantumTasks"]] == [arn]
    created = record["createdAt"].astimezone(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"
    for operator, hit in (("EQUAL", True), ("GTE", True), ("LTE", True), ("GT", False), ("LT", False)):
        found = braket.search_quantum_tasks(filters=[{"name": "createdAt", "operator": operator, "values": [created]},
                                                     {"name": "quantumTaskArn", "operator": "EQUAL", "values": [arn]}])
        assert bool(found["quantumTasks"]) is hit, operator  # as GetQuantumTask wrote it, to the millisecond
    with pytest.raises(braket.exceptions.ValidationException):
        braket.search_quantum_tasks(filters=[{"name": "createdAt", "operator": "EQUAL", "values": ["yesterday"]}])
    with pytest.raises(braket.exceptions.ConflictException):
        braket.cancel_quantum_task(quantumTaskArn=arn, clientToken=str(uuid.uuid4()))


def test_cancel_queued_and_running_tasks(session):
    from braket.aws import AwsDevice
    from braket.circuits import Circuit

    device = AwsDevice(SV1, aws_session=session)
    slow = device.run(ansatz(22, seed=1), shots=10)  # seconds of simulation: holds the simulator process
    deadline = time.time() + 60
    while slow.state() != "RUNNING":
        assert time.time() < deadline, slow.state()
        time.sleep(0.05)
    waiting = device.run(Circuit().h(0), shots=10)
    assert waiting.state() == "QUEUED"
    assert waiting.queue_position().queue_position == "1"
    braket = session.braket_client
    assert braket.cancel_quantum_task(quantumTaskArn=waiting.id, clientToken="c1")["cancellationStatus"] == "CANCELLED"
    assert braket.cancel_quantum_task(quantumTaskArn=slow.id, clientToken="c2")["cancellationStatus"] == "CANCELLING"
    while slow.state() == "CANCELLING":
        assert time.time() < deadline
        time.sleep(0.1)
    assert slow.state() == "CANCELLED" and waiting.state() == "CANCELLED"
    assert braket.get_quantum_task(quantumTaskArn=slow.id).get("endedAt") is not None
