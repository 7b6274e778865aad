"""AgentCore container runtimes (agentRuntimeArtifact.containerConfiguration) through boto3 against a server
started with --container-engine: the agent is built with the real ``bedrock-agentcore`` SDK
(``BedrockAgentCoreApp``) into an image FROM this host's Python, tagged with an ECR-style URI as a user's
build would be, and each runtime session runs it as a container serving AgentCore's contract on port 8080.
Skipped, saying why, where no container engine can run it."""

from __future__ import annotations

import json
import subprocess
import time
import uuid

import pytest
from botocore.exceptions import ClientError

import container_images
from jobforge.execution.container_engine import ContainerEngine
from jobforge.testing_server import ServerProcess

REPOSITORY = "123456789012.dkr.ecr.us-east-1.amazonaws.com/jobforge-test-agent"
AGENT = """
import json
import os
import time
import uuid

import boto3
from bedrock_agentcore import BedrockAgentCoreApp

app = BedrockAgentCoreApp()
boot = str(uuid.uuid4())  # this container's, to tell sessions apart
VERSION = "{version}"


@app.entrypoint
def invoke(payload, context):
    print("agent got", json.dumps(payload), flush=True)
    action = payload.get("action", "echo")
    if action == "stream":
        return stream(payload)
    if action == "s3":
        s3 = boto3.client("s3")
        s3.put_object(Bucket=payload["bucket"], Key="from-agent", Body=b"written by the agent")
        return {{"who": boto3.client("sts").get_caller_identity()["Arn"],
                 "read": s3.get_object(Bucket=payload["bucket"], Key="from-agent")["Body"].read().decode()}}
    return {{"echo": payload, "session": context.session_id, "boot": boot, "version": VERSION,
             "greeting": os.environ.get("GREETING"), "region": os.environ.get("AWS_REGION")}}


def stream(payload):
    # Each part after the first waits for the caller to have read the one before (it says so in S3): the
    # answer can only end if it reaches the caller part by part.
    s3 = boto3.client("s3")
    for part in range(payload["n"]):
        if part:
            while True:
                try:
                    s3.head_object(Bucket=payload["bucket"], Key=f"read-{{part - 1}}")
                    break
                except Exception:
                    time.sleep(0.05)
        yield {{"part": part}}


if __name__ == "__main__":
    app.run()
"""


@pytest.fixture(scope="module")
def engine():
    name, why = container_images.engine()
    if name is None:
        pytest.skip(why)
    return name


@pytest.fixture(scope="module")
def images(engine):
    tags = {}
    for version in ("v1", "v2"):
        tags[version] = f"{REPOSITORY}:{version}"
        container_images.build(engine, tags[version], {"/app/agent.py": AGENT.format(version=version)},
                               packages=("bedrock-agentcore",), entrypoint=[container_images.PYTHON, "/app/agent.py"],
                               # as the AgentCore starter toolkit's Dockerfile says, so the SDK listens on 0.0.0.0
                               env={"DOCKER_CONTAINER": "1"})
    yield tags
    container_images.remove(engine, *tags.values())


@pytest.fixture(scope="module")
def server(engine, images, tmp_path_factory):
    srv = ServerProcess(tmp_path_factory.mktemp("agentcore-containers") / "data",
                        extra_args=["--container-engine", engine]).start()
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def role(server):
    return f"arn:aws:iam::{server.client('sts').get_caller_identity()['Account']}:role/JobforgeExecutionRole"


@pytest.fixture(scope="module")
def control(server):
    return server.client("bedrock-agentcore-control")


@pytest.fixture(scope="module")
def data(server):
    return server.client("bedrock-agentcore", read_timeout=120)


def wait_ready(control, runtime_id: str) -> dict:
    deadline = time.time() + 60
    while (got := control.get_agent_runtime(agentRuntimeId=runtime_id))["status"] in ("CREATING", "UPDATING"):
        assert time.time() < deadline, got
        time.sleep(0.1)
    return got


def make(control, role, image: str, **settings) -> dict:
    created = control.create_agent_runtime(
        agentRuntimeName=f"agent_{uuid.uuid4().hex[:8]}", roleArn=role,
        agentRuntimeArtifact={"containerConfiguration": {"containerUri": image}},
        networkConfiguration={"networkMode": "PUBLIC"}, **settings)
    assert created["status"] == "CREATING"
    return wait_ready(control, created["agentRuntimeId"])


def invoke(data, arn: str, payload: dict, session: str) -> tuple[dict, object]:
    answer = data.invoke_agent_runtime(agentRuntimeArn=arn, payload=json.dumps(payload).encode(),
                                       runtimeSessionId=session)
    if answer["contentType"].startswith("application/json"):
        return answer, json.loads(answer["response"].read())
    return answer, answer["response"]


def session_id() -> str:
    return f"session-{uuid.uuid4()}"


def containers(engine: str, server) -> list[str]:
    owner = ContainerEngine(engine, server.data_dir.absolute()).owner
    listed = subprocess.run([engine, "ps", "--all", "--filter", f"label=io.jobforge.owner={owner}", "--format",
                             "{{.Names}}"], capture_output=True, text=True, timeout=60)
    return [name for name in listed.stdout.split() if name.startswith("agentcore-")]


def wait_gone(engine, server, names) -> None:
    deadline = time.time() + 30
    while set(names) & set(containers(engine, server)):
        assert time.time() < deadline, "the session's container is still there"
        time.sleep(0.2)


def test_a_container_runtime_answers_its_sessions(engine, server, control, data, role, images):
    runtime = make(control, role, images["v1"], environmentVariables={"GREETING": "hello"})
    assert runtime["status"] == "READY" and "failureReason" not in runtime
    assert runtime["agentRuntimeArtifact"] == {"containerConfiguration": {"containerUri": images["v1"]}}
    arn = runtime["agentRuntimeArn"]

    session = session_id()
    answer, result = invoke(data, arn, {"prompt": "hi"}, session)
    assert answer["statusCode"] == 200 and answer["runtimeSessionId"] == session
    assert result["echo"] == {"prompt": "hi"} and result["session"] == session and result["version"] == "v1"
    assert result["greeting"] == "hello" and result["region"] == "us-east-1"
    assert invoke(data, arn, {"prompt": "again"}, session)[1]["boot"] == result["boot"]  # the same container
    other = session_id()
    assert invoke(data, arn, {"prompt": "other"}, other)[1]["boot"] != result["boot"]  # one of its own
    assert len(containers(engine, server)) >= 2

    running = containers(engine, server)
    data.stop_runtime_session(agentRuntimeArn=arn, runtimeSessionId=other)
    control.update_agent_runtime(agentRuntimeId=runtime["agentRuntimeId"], roleArn=role,
                                 agentRuntimeArtifact={"containerConfiguration": {"containerUri": images["v2"]}},
                                 networkConfiguration={"networkMode": "PUBLIC"})
    assert wait_ready(control, runtime["agentRuntimeId"])["agentRuntimeVersion"] == "2"
    wait_gone(engine, server, running)  # the stopped session's, and version 1's
    assert invoke(data, arn, {"prompt": "new"}, session)[1]["version"] == "v2"

    running = containers(engine, server)
    control.delete_agent_runtime(agentRuntimeId=runtime["agentRuntimeId"])
    wait_gone(engine, server, running)


def test_answers_stream_part_by_part(server, control, data, role, images):
    s3 = server.client("s3")
    bucket = f"agent-stream-{uuid.uuid4().hex[:8]}"
    s3.create_bucket(Bucket=bucket)
    runtime = make(control, role, images["v1"])
    answer, stream = invoke(data, runtime["agentRuntimeArn"], {"action": "stream", "n": 3, "bucket": bucket},
                            session_id())
    assert answer["contentType"].startswith("text/event-stream")
    parts = []
    for line in stream.iter_lines(chunk_size=1):
        if line.startswith(b"data: "):
            parts.append(json.loads(line[len(b"data: "):])["part"])
            s3.put_object(Bucket=bucket, Key=f"read-{parts[-1]}", Body=b"")  # lets the agent send the next
    assert parts == [0, 1, 2]


def test_the_agent_has_its_roles_credentials_and_logs(server, control, data, role, images):
    s3 = server.client("s3")
    bucket = f"agent-works-{uuid.uuid4().hex[:8]}"
    s3.create_bucket(Bucket=bucket)
    runtime = make(control, role, images["v1"])
    _, result = invoke(data, runtime["agentRuntimeArn"], {"action": "s3", "bucket": bucket}, session_id())
    assert result["read"] == "written by the agent"
    assert ":assumed-role/JobforgeExecutionRole/BedrockAgentCore-" in result["who"]

    logs = server.client("logs")
    group = f"/aws/bedrock-agentcore/runtimes/{runtime['agentRuntimeId']}-DEFAULT"
    deadline = time.time() + 30
    while True:
        try:
            messages = [e["message"] for e in logs.filter_log_events(logGroupName=group)["events"]]
        except ClientError:
            messages = []
        if any(m.startswith("agent got") and bucket in m for m in messages):
            break
        assert time.time() < deadline, messages
        time.sleep(0.2)


def test_an_image_the_engine_lacks_is_refused(control, role):
    with pytest.raises(ClientError) as missing:
        control.create_agent_runtime(
            agentRuntimeName=f"agent_{uuid.uuid4().hex[:8]}", roleArn=role,
            agentRuntimeArtifact={"containerConfiguration": {"containerUri": f"{REPOSITORY}:no-such-tag"}},
            networkConfiguration={"networkMode": "PUBLIC"})
    assert missing.value.response["Error"]["Code"] == "ValidationException"
    assert "is not on this host's" in missing.value.response["Error"]["Message"]
