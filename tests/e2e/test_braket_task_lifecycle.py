"""Quantum tasks through the Braket SDK: result types refused up front, QUEUED before RUNNING, cancel of a running
simulation."""

from __future__ import annotations

import os
import time

import pytest
from botocore.exceptions import ClientError

from jobforge.testing_server import ServerProcess

from braket_client import sdk_session

SV1 = "arn:aws:braket:::device/quantum-simulator/amazon/sv1"


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    srv = ServerProcess(tmp_path_factory.mktemp("braket-tasks") / "data").start()
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def session(server):
    with sdk_session(server) as session:
        session.boto_session.client("s3").create_bucket(Bucket="tasks")
        yield session


def test_adjoint_gradient_is_refused_at_create(session):
    from braket.aws import AwsDevice
    from braket.circuits import Circuit, FreeParameter, Observable

    theta = FreeParameter("theta")
    circuit = Circuit().rx(0, theta).adjoint_gradient(observable=Observable.Z(), target=[0], parameters=[theta])
    device = AwsDevice(SV1, aws_session=session)
    with pytest.raises(ClientError) as refused:
        device.run(circuit, shots=0, inputs={"theta": 0.3}, s3_destination_folder=("tasks", "out"))
    error = refused.value.response["Error"]
    assert error["Code"] == "ValidationException" and "adjoint_gradient" in error["Message"]
    assert session.braket_client.search_quantum_tasks(filters=[])["quantumTasks"] == []  # nothing was accepted


def simulator_pids(server_pid: int) -> set[int]:
    """The server's simulator processes (children started by multiprocessing's spawn)."""
    pids = set()
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as stat:
                parent = int(stat.read().rsplit(")", 1)[1].split()[1])
            with open(f"/proc/{entry}/cmdline", "rb") as cmdline:
                command = cmdline.read()
        except OSError:
            continue
        if parent == server_pid and b"spawn_main" in command:
            pids.add(int(entry))
    return pids


def wait_for(predicate, timeout=120):
    deadline = time.time() + timeout
    while not predicate():
        assert time.time() < deadline, "timed out"
        time.sleep(0.1)


def test_tasks_queue_for_a_free_simulator_and_cancel_stops_the_simulation(server, session):
    from braket.aws import AwsDevice
    from braket.circuits import Circuit

    long = Circuit()
    for _ in range(150):  # minutes of simulation: only cancelling ends it
        for qubit in range(22):
            long.h(qubit)
        for qubit in range(21):
            long.cnot(qubit, qubit + 1)
    long.probability()
    device = AwsDevice(SV1, aws_session=session)
    run = lambda: device.run(long, shots=0, s3_destination_folder=("tasks", "long"))  # noqa: E731
    tasks = [run()]
    wait_for(lambda: tasks[0].state() == "RUNNING")
    while tasks[-1].state() != "QUEUED":  # every simulator busy: the next task waits for one
        assert len(tasks) < 8, [task.state() for task in tasks]
        tasks.append(run())
    waiting, busy = tasks[-1], simulator_pids(server.process.pid)
    assert busy
    for task in tasks[:-1]:
        task.cancel()
    wait_for(lambda: waiting.state() == "RUNNING")  # a simulator freed by a cancel took it
    waiting.cancel()
    wait_for(lambda: all(task.state() == "CANCELLED" for task in tasks))
    assert not busy & simulator_pids(server.process.pid)  # the processes that ran them are gone
    assert all(session.get_quantum_task(task.id)["status"] == "CANCELLED" for task in tasks)
