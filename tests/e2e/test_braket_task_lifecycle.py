"""Quantum tasks through the Braket SDK: result types refused up front, QUEUED before RUNNING, cancel of a running
simulation."""

from __future__ import annotations

import os
import time

import boto3
import pytest
from botocore.exceptions import ClientError

from jobforge.testing_server import ServerProcess

SV1 = "arn:aws:braket:::device/quantum-simulator/amazon/sv1"


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    srv = ServerProcess(tmp_path_factory.mktemp("braket-tasks") / "data").start()
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def session(server):
    saved = dict(os.environ)
    creds = server.credentials()
    os.environ.update(AWS_ENDPOINT_URL=server.endpoint, AWS_ACCESS_KEY_ID=creds["aws_access_key_id"],
                      AWS_SECRET_ACCESS_KEY=creds["aws_secret_access_key"], AWS_DEFAULT_REGION="us-east-1",
                      AWS_CONFIG_FILE=os.devnull, AWS_SHARED_CREDENTIALS_FILE=os.devnull)
    from braket.aws import AwsSession

    session = AwsSession(boto_session=boto3.Session(region_name="us-east-1"))
    session.boto_session.client("s3").create_bucket(Bucket="tasks")
    yield session
    os.environ.clear()
    os.environ.update(saved)


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
