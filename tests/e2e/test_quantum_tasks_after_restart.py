"""A quantum task accepted before a server died runs after the restart, though the client only polls it.

The Braket SDK's ``AwsQuantumTask.result()`` calls nothing but GetQuantumTask
until the task ends, so the server must resume its queued tasks at start, not
on the first call that happens to need the simulators.
"""

from __future__ import annotations

import os
import uuid

import boto3
import sqlalchemy as sa

from jobforge.core.quantum_tasks import quantum_tasks
from jobforge.core.store import create_engine
from jobforge.testing_server import ServerProcess

SV1 = "arn:aws:braket:::device/quantum-simulator/amazon/sv1"
BELL = 'OPENQASM 3.0;\nqubit[2] q;\nbit[2] b;\nh q[0];\ncnot q[0], q[1];\nb = measure q;'


def _status(data_dir, arn: str) -> str:
    engine = create_engine(f"sqlite:///{data_dir / 'jobforge.db'}")
    try:
        with engine.connect() as conn:
            return conn.execute(sa.select(quantum_tasks.c.status).where(quantum_tasks.c.arn == arn)).scalar_one()
    finally:
        engine.dispose()


def test_task_queued_when_the_server_died_completes_when_only_polled(tmp_path, monkeypatch):
    from braket.aws import AwsQuantumTask, AwsSession  # here, so that collecting the suite stays fast
    from braket.ir.openqasm import Program

    first = ServerProcess(tmp_path / "data").start()
    try:
        first.client("s3").create_bucket(Bucket="results")
        arn = first.client("braket").create_quantum_task(
            clientToken=str(uuid.uuid4()), deviceArn=SV1, shots=100, outputS3Bucket="results",
            outputS3KeyPrefix="tasks", action=Program(source=BELL).json())["quantumTaskArn"]
    finally:
        first.kill()  # long before a simulator process has imported the simulator
    assert _status(first.data_dir, arn) in ("QUEUED", "RUNNING")

    restarted = ServerProcess(first.data_dir, port=first.port).start()
    try:
        credentials = restarted.credentials()
        for name, value in dict(AWS_ENDPOINT_URL=restarted.endpoint, AWS_DEFAULT_REGION="us-east-1",
                                AWS_ACCESS_KEY_ID=credentials["aws_access_key_id"],
                                AWS_SECRET_ACCESS_KEY=credentials["aws_secret_access_key"],
                                AWS_CONFIG_FILE=os.devnull, AWS_SHARED_CREDENTIALS_FILE=os.devnull).items():
            monkeypatch.setenv(name, value)
        session = AwsSession(boto_session=boto3.Session(region_name="us-east-1"))
        task = AwsQuantumTask(arn, aws_session=session, poll_timeout_seconds=60, poll_interval_seconds=0.1)
        result = task.result()
        assert result is not None, f"the task is still {task.state()}"
        counts = result.measurement_counts
        assert sum(counts.values()) == 100
        assert set(counts) <= {"00", "11"}
    finally:
        restarted.stop()
