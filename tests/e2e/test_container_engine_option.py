"""Container images need a container engine: ``jobforge serve --container-engine`` refuses to start with one
that is missing or does not work, and a server started without one refuses a container-image Lambda function
or a containerConfiguration AgentCore runtime at create with what to install and how to configure it."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from botocore.exceptions import ClientError

from jobforge.testing_server import ServerProcess, free_port


def _serve(tmp_path, engine: str, path: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "jobforge.cli", "--data-dir", str(tmp_path / "data"), "serve",
                           "--port", str(free_port()), "--container-engine", engine],
                          capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL,
                          env=dict(os.environ, PATH=path))


@pytest.mark.parametrize("engine", ["docker", "podman"])
def test_serve_refuses_an_engine_that_is_not_installed(tmp_path, engine):
    (tmp_path / "bin").mkdir()
    started = _serve(tmp_path, engine, str(tmp_path / "bin"))
    assert started.returncode != 0
    assert f"--container-engine {engine}: {engine} is not installed on this host" in started.stderr


@pytest.mark.parametrize("engine", ["docker", "podman"])
def test_serve_refuses_an_engine_that_does_not_work(tmp_path, engine):
    fake = tmp_path / "bin" / engine  # answers as an engine whose daemon is not running
    fake.parent.mkdir()
    fake.write_text("#!/bin/sh\necho 'Cannot connect to the daemon: is it running?' >&2\nexit 1\n")
    fake.chmod(0o755)
    started = _serve(tmp_path, engine, f"{fake.parent}:{os.environ.get('PATH', '')}")
    assert started.returncode != 0
    assert f"--container-engine {engine}: '{engine} info' failed (Cannot connect to the daemon: is it running?)" \
        in started.stderr


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
