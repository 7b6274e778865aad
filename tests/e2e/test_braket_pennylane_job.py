"""A hybrid job in the style of AWS's "first hybrid job" notebook (PennyLane with the Braket plugin), created with
AwsQuantumJob.create against a real server, unmodified: the Braket base image's packages are there, and the job
starts with nothing to install."""

from __future__ import annotations


import pytest
from botocore.exceptions import ClientError

from jobforge.testing_server import ServerProcess

from braket_client import sdk_session

SV1 = "arn:aws:braket:::device/quantum-simulator/amazon/sv1"

QUBIT_ROTATION = '''
import os

import pennylane as qml
from pennylane import numpy as np
from braket.jobs import save_job_result
from braket.jobs.metrics import log_metric


def main():
    device = qml.device("braket.aws.qubit", device_arn=os.environ["AMZN_BRAKET_DEVICE_ARN"], wires=1, shots=100)

    @qml.qnode(device)
    def circuit(params):
        qml.RX(params[0], wires=0)
        qml.RY(params[1], wires=0)
        return qml.expval(qml.PauliZ(0))

    optimizer = qml.GradientDescentOptimizer(stepsize=0.5)
    params = np.array([0.5, 0.75], requires_grad=True)
    for step in range(3):
        params, cost = optimizer.step_and_cost(circuit, params)
        log_metric("cost", float(cost), iteration_number=step)
    train = os.path.join(os.environ["AMZN_BRAKET_INPUT_DIR"], "train")
    save_job_result({"params": [float(p) for p in params], "pennylane": qml.__version__,
                     "train": sorted(os.listdir(train))})
'''


@pytest.fixture(scope="module")
def session(tmp_path_factory):
    server = ServerProcess(tmp_path_factory.mktemp("braket-pennylane") / "data").start()
    with sdk_session(server) as session:
        yield session
    server.stop()


@pytest.fixture(autouse=True)
def in_tmp_dir(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # AwsQuantumJob.result() downloads model.tar.gz here


def test_pennylane_job_with_a_key_prefix_channel(session, tmp_path):
    from braket.aws import AwsQuantumJob
    from braket.jobs.image_uris import Framework, retrieve_image

    s3 = session.boto_session.client("s3")
    bucket = session.default_bucket()
    for key in ("datasets/train-0.csv", "datasets/train-1.csv", "datasets/test.csv"):
        s3.put_object(Bucket=bucket, Key=key, Body=b"x,y\n1,2\n")
    (tmp_path / "qubit_rotation.py").write_text(QUBIT_ROTATION)
    job = AwsQuantumJob.create(
        device=SV1, source_module=str(tmp_path / "qubit_rotation.py"), entry_point="qubit_rotation:main",
        image_uri=retrieve_image(Framework.BASE, "us-east-1"), input_data={"train": f"s3://{bucket}/datasets/train"},
        aws_session=session, wait_until_complete=True)
    assert job.state() == "COMPLETED", job.metadata().get("failureReason")
    result = job.result()
    assert result["train"] == ["train-0.csv", "train-1.csv"]  # the channel's s3Uri is a key prefix
    assert result["pennylane"] and len(result["params"]) == 2
    assert job.metrics()["iteration_number"] == [0, 1, 2]
    assert len(job.get_tasks()) >= 3  # the plugin's tasks ran on the server's SV1
    logs = session.logs_client
    stream = logs.describe_log_streams(logGroupName="/aws/braket/jobs",
                                       logStreamNamePrefix=f"{job.name}/")["logStreams"][0]["logStreamName"]
    log = " ".join(e["message"] for e in logs.get_log_events(logGroupName="/aws/braket/jobs", logStreamName=stream,
                                                             startFromHead=True)["events"])
    assert "environment" not in log  # the base image's packages are the server's own: no environment is built


def test_the_cuda_q_image_is_refused(session, tmp_path):
    from braket.aws import AwsQuantumJob
    from braket.jobs.image_uris import Framework, retrieve_image

    (tmp_path / "qubit_rotation.py").write_text(QUBIT_ROTATION)
    with pytest.raises(ClientError) as refused:
        AwsQuantumJob.create(device=SV1, source_module=str(tmp_path / "qubit_rotation.py"),
                             entry_point="qubit_rotation:main", aws_session=session,
                             image_uri=retrieve_image(Framework.CUDAQ, "us-east-1"))
    error = refused.value.response["Error"]
    assert error["Code"] == "ValidationException" and "CUDA-Q" in error["Message"], error
