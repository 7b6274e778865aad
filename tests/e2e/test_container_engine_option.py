"""Container images need a container engine: without a working one, ``jobforge serve --container-engine``
refuses to start, and a container-image Lambda function or a containerConfiguration AgentCore runtime is
refused at create with what to install and how to configure it."""

from __future__ import annotations

import subprocess
import sys

import pytest
from botocore.exceptions import ClientError

from jobforge.testing_server import ServerProcess, free_port


@pytest.mark.parametrize("engine", ["docker", "podman"])
def test_serve_refuses_an_engine_it_cannot_use(tmp_path, engine):
    started = subprocess.run([sys.executable, "-m", "jobforge.cli", "--data-dir", str(tmp_path / "data"), "serve",
                              "--port", str(free_port()), "--container-engine", engine],
                             capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL)
    assert started.returncode != 0
    assert f"--container-engine {engine}: " in started.stderr
    assert engine in started.stderr.split(": ", 2)[-1]


def test_container_images_are_refused_at_create(tmp_path):
    server = ServerProcess(tmp_path / "data").start()
    try:
        account = server.client("sts").get_caller_identity()["Account"]
        role = f"arn:aws:iam::{account}:role/JobforgeExecutionRole"
        with pytest.raises(ClientError) as function:
            server.client("lambda").create_function(
                FunctionName="image-fn", Role=role, PackageType="Image",
                Code={"ImageUri": "123456789012.dkr.ecr.us-east-1.amazonaws.com/repo:latest"})
        with pytest.raises(ClientError) as runtime:
            server.client("bedrock-agentcore-control").create_agent_runtime(
                agentRuntimeName="image_agent", roleArn=role, networkConfiguration={"networkMode": "PUBLIC"},
                agentRuntimeArtifact={"containerConfiguration": {
                    "containerUri": "123456789012.dkr.ecr.us-east-1.amazonaws.com/agent:latest"}})
    finally:
        server.stop()
    assert function.value.response["Error"]["Code"] == "InvalidParameterValueException"
    assert runtime.value.response["Error"]["Code"] == "ValidationException"
    for refused in (function, runtime):
        message = refused.value.response["Error"]["Message"]
        assert "install Docker or Podman" in message and "--container-engine docker" in message
