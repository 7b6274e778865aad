"""AgentCore runtimes through boto3 and the AWS CLI against the real server: the agent is built with the real
``bedrock-agentcore`` SDK (``BedrockAgentCoreApp``), zipped here with its dependencies as direct code
deployment takes it, uploaded to jobforge's S3, and each runtime session runs it in a confined process."""

from __future__ import annotations

import json
import re
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
from botocore.exceptions import ClientError

from jobforge.testing_server import ServerProcess

import agent_code

AWS = str(Path(sys.executable).with_name("aws"))
AGENT = """
import asyncio
import json
import os
import socket
import uuid

import boto3
from bedrock_agentcore import BedrockAgentCoreApp

app = BedrockAgentCoreApp()
calls = 0
boot = str(uuid.uuid4())  # this process's, to tell sessions' processes apart


@app.entrypoint
def invoke(payload, context):
    global calls
    calls += 1
    action = payload.get("action", "echo")
    print("agent got", json.dumps(payload), flush=True)
    if action == "stream":
        return stream(payload)
    if action == "sync-stream":
        return ({"part": i} for i in range(payload["n"]))
    if action == "s3":
        s3 = boto3.client("s3")
        s3.put_object(Bucket=payload["bucket"], Key="from-agent", Body=b"written by the agent")
        who = boto3.client("sts").get_caller_identity()["Arn"]
        return {"read": s3.get_object(Bucket=payload["bucket"], Key="from-agent")["Body"].read().decode(),
                "who": who}
    if action == "credentials":
        return {name: os.environ[name] for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN")}
    if action == "probe":
        try:
            socket.create_connection(("127.0.0.1", payload["port"]), timeout=2).close()
            reached = True
        except OSError:
            reached = False
        try:
            seen = sorted(os.listdir(payload["data_dir"]))
        except OSError as err:
            seen = str(err)
        return {"reached": reached, "data_dir": seen}
    if action == "fail":
        raise RuntimeError("the agent failed on purpose")
    return {"echo": payload, "session": context.session_id, "calls": calls, "boot": boot,
            "region": os.environ.get("AWS_REGION"), "greeting": os.environ.get("GREETING"),
            "endpoint": os.environ.get("AWS_ENDPOINT_URL")}


async def stream(payload):
    # Each chunk after the first waits for the caller to have read the one before (it says so in S3): the
    # answer can only end if it reaches the caller chunk by chunk.
    s3 = boto3.client("s3")
    for i in range(payload["n"]):
        while i and "Contents" not in s3.list_objects_v2(Bucket=payload["bucket"], Prefix=f"read-{i - 1}"):
            await asyncio.sleep(0.05)
        yield {"chunk": i}


if __name__ == "__main__":
    app.run()
"""
BROKEN = "import a_module_the_archive_does_not_have\n"


@pytest.fixture(scope="module")
def code_zip() -> bytes:
    return agent_code.code_zip({"main.py": AGENT, "broken.py": BROKEN}, ["bedrock-agentcore"])


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    srv = ServerProcess(tmp_path_factory.mktemp("agentcore") / "data").start()
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def account(server):
    return server.client("sts").get_caller_identity()["Account"]


@pytest.fixture(scope="module")
def role(account):
    return f"arn:aws:iam::{account}:role/JobforgeExecutionRole"


@pytest.fixture(scope="module")
def control(server):
    return server.client("bedrock-agentcore-control")


@pytest.fixture(scope="module")
def data(server):
    return server.client("bedrock-agentcore", read_timeout=120)


@pytest.fixture(scope="module")
def code(server, code_zip):
    s3 = server.client("s3")
    s3.create_bucket(Bucket="agent-code")
    s3.put_object(Bucket="agent-code", Key="agent.zip", Body=code_zip)
    return {"bucket": "agent-code", "prefix": "agent.zip"}


def artifact(code: dict, entry: str = "main.py") -> dict:
    return {"codeConfiguration": {"code": {"s3": code}, "runtime": f"PYTHON_3_{sys.version_info[1]}",
                                  "entryPoint": [entry]}}


def wait_ready(control, runtime_id: str, version: str | None = None) -> dict:
    deadline = time.time() + 60
    while True:
        got = control.get_agent_runtime(agentRuntimeId=runtime_id, **({"agentRuntimeVersion": version}
                                                                       if version else {}))
        if got["status"] not in ("CREATING", "UPDATING"):
            return got
        assert time.time() < deadline, got
        time.sleep(0.1)


def make(control, role, code, entry="main.py", **settings) -> dict:
    name = f"agent_{uuid.uuid4().hex[:8]}"
    created = control.create_agent_runtime(agentRuntimeName=name, agentRuntimeArtifact=artifact(code, entry),
                                           roleArn=role, networkConfiguration={"networkMode": "PUBLIC"},
                                           **settings)
    assert created["status"] == "CREATING" and created["agentRuntimeVersion"] == "1"
    assert re.fullmatch(rf"{name}-[a-zA-Z0-9]{{10}}", created["agentRuntimeId"])
    return wait_ready(control, created["agentRuntimeId"])


def invoke(data, arn: str, payload: dict, session: str | None = None, **extra) -> tuple[dict, object]:
    answer = data.invoke_agent_runtime(agentRuntimeArn=arn, payload=json.dumps(payload).encode(),
                                       **({"runtimeSessionId": session} if session else {}), **extra)
    if answer["contentType"].startswith("application/json"):
        return answer, json.loads(answer["response"].read())
    return answer, answer["response"]


def session_id() -> str:
    return f"session-{uuid.uuid4()}"


def test_create_get_list_and_invoke_with_json(server, control, data, role, code, account):
    runtime = make(control, role, code, environmentVariables={"GREETING": "hello"}, description="an echo agent")
    arn = runtime["agentRuntimeArn"]
    assert runtime["status"] == "READY" and "failureReason" not in runtime
    assert arn == f"arn:aws:bedrock-agentcore:us-east-1:{account}:runtime/{runtime['agentRuntimeId']}"
    assert runtime["lifecycleConfiguration"] == {"idleRuntimeSessionTimeout": 900, "maxLifetime": 28800}
    assert runtime["agentRuntimeArtifact"] == artifact(code) and runtime["description"] == "an echo agent"
    listed = control.list_agent_runtimes()["agentRuntimes"]
    assert runtime["agentRuntimeId"] in [item["agentRuntimeId"] for item in listed]

    session = session_id()
    answer, result = invoke(data, arn, {"prompt": "hi"}, session)
    assert answer["statusCode"] == 200 and answer["runtimeSessionId"] == session
    assert result["echo"] == {"prompt": "hi"} and result["session"] == session and result["calls"] == 1
    assert result["greeting"] == "hello" and result["region"] == "us-east-1"
    _, again = invoke(data, arn, {"prompt": "again"}, session)
    assert again["boot"] == result["boot"] and again["calls"] == 2  # the same session's process

    _, other = invoke(data, arn, {"prompt": "other"}, session_id())
    assert other["calls"] == 1  # another session: a process of its own

    endpoint = control.get_agent_runtime_endpoint(agentRuntimeId=runtime["agentRuntimeId"], endpointName="DEFAULT")
    assert endpoint["status"] == "READY" and endpoint["liveVersion"] == "1"
    assert endpoint["agentRuntimeEndpointArn"] == f"{arn}/runtime-endpoint/DEFAULT"
    assert [e["name"] for e in control.list_agent_runtime_endpoints(
        agentRuntimeId=runtime["agentRuntimeId"])["runtimeEndpoints"]] == ["DEFAULT"]


def test_streaming_answers_arrive_chunk_by_chunk(server, control, data, role, code):
    s3 = server.client("s3")
    bucket = f"agent-stream-{uuid.uuid4().hex[:8]}"
    s3.create_bucket(Bucket=bucket)
    runtime = make(control, role, code)
    answer, stream = invoke(data, runtime["agentRuntimeArn"], {"action": "stream", "n": 3, "bucket": bucket},
                            session_id())
    assert answer["contentType"].startswith("text/event-stream")
    chunks = []
    for line in stream.iter_lines(chunk_size=1):  # as each byte arrives
        if line.startswith(b"data: "):
            chunks.append(json.loads(line[len(b"data: "):])["chunk"])
            s3.put_object(Bucket=bucket, Key=f"read-{chunks[-1]}", Body=b"")  # lets the agent send the next
    assert chunks == [0, 1, 2]

    answer, stream = invoke(data, runtime["agentRuntimeArn"], {"action": "sync-stream", "n": 2}, session_id())
    assert answer["contentType"].startswith("text/event-stream")
    assert stream.read().decode().split("\n\n")[:2] == ['data: {"part": 0}', 'data: {"part": 1}']


def test_the_agent_calls_s3_with_its_role_credentials(server, control, data, role, code, account):
    server.client("s3").create_bucket(Bucket="agent-works")
    runtime = make(control, role, code)
    _, result = invoke(data, runtime["agentRuntimeArn"], {"action": "s3", "bucket": "agent-works"}, session_id())
    assert result["read"] == "written by the agent"
    assert result["who"].startswith(f"arn:aws:sts::{account}:assumed-role/JobforgeExecutionRole/")
    stored = server.client("s3").get_object(Bucket="agent-works", Key="from-agent")["Body"].read()
    assert stored == b"written by the agent"


def test_errors_are_answered_in_the_models_shapes(control, data, role, code):
    runtime = make(control, role, code)
    with pytest.raises(ClientError) as failed:
        invoke(data, runtime["agentRuntimeArn"], {"action": "fail"}, session_id())
    assert failed.value.response["Error"]["Code"] == "RuntimeClientError"
    assert failed.value.response["ResponseMetadata"]["HTTPStatusCode"] == 424
    assert "Received error (500) from runtime" in failed.value.response["Error"]["Message"]

    missing = runtime["agentRuntimeArn"].replace(runtime["agentRuntimeId"], "agent_gone-abcdefghij")
    with pytest.raises(ClientError) as unknown:
        invoke(data, missing, {})
    assert unknown.value.response["Error"]["Code"] == "ResourceNotFoundException"
    with pytest.raises(ClientError) as no_endpoint:
        invoke(data, runtime["agentRuntimeArn"], {}, qualifier="nope")
    assert no_endpoint.value.response["Error"]["Code"] == "ResourceNotFoundException"
    with pytest.raises(ClientError) as container:
        control.create_agent_runtime(
            agentRuntimeName="container_agent", roleArn=role, networkConfiguration={"networkMode": "PUBLIC"},
            agentRuntimeArtifact={"containerConfiguration": {
                "containerUri": "123456789012.dkr.ecr.us-east-1.amazonaws.com/agent:latest"}})
    assert container.value.response["Error"]["Code"] == "ValidationException"
    assert "--container-engine" in container.value.response["Error"]["Message"]
    with pytest.raises(ClientError) as no_code:
        make(control, role, {"bucket": "agent-code", "prefix": "missing.zip"})
    assert no_code.value.response["Error"]["Code"] == "ValidationException"
    with pytest.raises(ClientError) as no_role:
        make(control, role.replace("JobforgeExecutionRole", "NoSuchRole"), code)
    assert no_role.value.response["Error"]["Code"] == "ValidationException"


def test_a_broken_agent(control, data, role, code):
    """An entry point missing from the archive fails the create; one that cannot start fails the invocation with
    RuntimeClientError, as AgentCore answers an agent whose initialization does not complete."""
    missing = make(control, role, code, entry="absent.py")
    assert missing["status"] == "CREATE_FAILED" and "absent.py" in missing["failureReason"]
    with pytest.raises(ClientError) as not_ready:
        invoke(data, missing["agentRuntimeArn"], {})
    assert not_ready.value.response["Error"]["Code"] == "ValidationException"

    broken = make(control, role, code, entry="broken.py")
    assert broken["status"] == "READY"
    with pytest.raises(ClientError) as refused:
        invoke(data, broken["agentRuntimeArn"], {}, session_id())
    assert refused.value.response["Error"]["Code"] == "RuntimeClientError"
    assert "exited with status 1" in refused.value.response["Error"]["Message"]


def test_update_makes_a_new_version_and_default_follows_it(control, data, role, code):
    runtime = make(control, role, code, environmentVariables={"GREETING": "one"})
    runtime_id, arn = runtime["agentRuntimeId"], runtime["agentRuntimeArn"]
    session = session_id()
    assert invoke(data, arn, {}, session)[1]["greeting"] == "one"
    updated = control.update_agent_runtime(agentRuntimeId=runtime_id, agentRuntimeArtifact=artifact(code),
                                           roleArn=role, networkConfiguration={"networkMode": "PUBLIC"},
                                           environmentVariables={"GREETING": "two"})
    assert updated["agentRuntimeVersion"] == "2" and updated["status"] == "UPDATING"
    assert wait_ready(control, runtime_id)["status"] == "READY"
    assert invoke(data, arn, {}, session)[1]["greeting"] == "two"
    assert wait_ready(control, runtime_id, "1")["environmentVariables"] == {"GREETING": "one"}
    versions = control.list_agent_runtime_versions(agentRuntimeId=runtime_id)["agentRuntimes"]
    assert [v["agentRuntimeVersion"] for v in versions] == ["2", "1"]

    pinned = control.create_agent_runtime_endpoint(agentRuntimeId=runtime_id, name="first", agentRuntimeVersion="1")
    assert pinned["status"] == "READY" and pinned["targetVersion"] == "1"
    assert invoke(data, arn, {}, session_id(), qualifier="first")[1]["greeting"] == "one"
    control.delete_agent_runtime_endpoint(agentRuntimeId=runtime_id, endpointName="first")
    with pytest.raises(ClientError) as default:
        control.delete_agent_runtime_endpoint(agentRuntimeId=runtime_id, endpointName="DEFAULT")
    assert default.value.response["Error"]["Code"] == "ConflictException"


def test_stop_session_and_delete(control, data, role, code):
    runtime = make(control, role, code)
    arn = runtime["agentRuntimeArn"]
    session = session_id()
    first = invoke(data, arn, {}, session)[1]
    data.stop_runtime_session(agentRuntimeArn=arn, runtimeSessionId=session)
    second = invoke(data, arn, {}, session)[1]
    assert second["calls"] == 1 and second["boot"] != first["boot"]

    assert control.delete_agent_runtime(agentRuntimeId=runtime["agentRuntimeId"])["status"] == "DELETING"
    with pytest.raises(ClientError) as gone:
        control.get_agent_runtime(agentRuntimeId=runtime["agentRuntimeId"])
    assert gone.value.response["Error"]["Code"] == "ResourceNotFoundException"
    with pytest.raises(ClientError) as not_invoked:
        invoke(data, arn, {}, session)
    assert not_invoked.value.response["Error"]["Code"] == "ResourceNotFoundException"


def test_another_accounts_runtime_is_unreachable(server, control, role, code):
    runtime = make(control, role, code)
    subprocess.run([sys.executable, "-m", "jobforge.cli", "--data-dir", str(server.data_dir), "accounts", "create",
                    "agent-other"], check=True, capture_output=True, timeout=120)
    other_data = server.client("bedrock-agentcore", profile="agent-other")
    other_control = server.client("bedrock-agentcore-control", profile="agent-other")
    with pytest.raises(ClientError) as refused:
        invoke(other_data, runtime["agentRuntimeArn"], {})
    assert refused.value.response["Error"]["Code"] == "ResourceNotFoundException"
    with pytest.raises(ClientError) as hidden:
        other_control.get_agent_runtime(agentRuntimeId=runtime["agentRuntimeId"])
    assert hidden.value.response["Error"]["Code"] == "ResourceNotFoundException"
    assert other_control.list_agent_runtimes()["agentRuntimes"] == []


def test_sessions_are_confined(server, control, data, role, code):
    """A session sees neither the host's network (only jobforge's endpoint) nor the server's data dir."""
    runtime = make(control, role, code)
    with socket.create_server(("127.0.0.1", 0)) as listener:
        port = listener.getsockname()[1]
        _, probed = invoke(data, runtime["agentRuntimeArn"], {"action": "probe", "port": port,
                                                              "data_dir": str(server.data_dir)}, session_id())
    assert probed["reached"] is False
    assert not isinstance(probed["data_dir"], list) or not {"jobforge.db", "credentials"} & set(probed["data_dir"])


def test_logs_go_to_the_runtime_log_group(server, control, data, role, code):
    runtime = make(control, role, code)
    invoke(data, runtime["agentRuntimeArn"], {"note": "logged"}, session_id())
    logs = server.client("logs")
    group = f"/aws/bedrock-agentcore/runtimes/{runtime['agentRuntimeId']}-DEFAULT"
    deadline = time.time() + 20
    while True:
        events = logs.filter_log_events(logGroupName=group)["events"] if logs.describe_log_groups(
            logGroupNamePrefix=group)["logGroups"] else []
        if any('agent got {"note": "logged"}' in event["message"] for event in events):
            break
        assert time.time() < deadline, events
        time.sleep(0.2)
    assert all(re.fullmatch(r"\d{4}/\d\d/\d\d/\[runtime-logs\][0-9a-f-]{36}", event["logStreamName"])
               for event in events)


def aws(server, *args) -> subprocess.CompletedProcess:
    env = {"AWS_CONFIG_FILE": str(server.data_dir / "config"),
           "AWS_SHARED_CREDENTIALS_FILE": str(server.data_dir / "credentials"), "PATH": "/usr/bin:/bin"}
    return subprocess.run([AWS, "--endpoint-url", server.endpoint, "--region", "us-east-1", *args],
                          capture_output=True, text=True, env=env, timeout=120)


def test_the_aws_cli(server, control, role, code):
    created = aws(server, "bedrock-agentcore-control", "create-agent-runtime", "--agent-runtime-name", "cli_agent",
                  "--agent-runtime-artifact", json.dumps(artifact(code)), "--role-arn", role,
                  "--network-configuration", "networkMode=PUBLIC")
    assert created.returncode == 0, created.stderr
    runtime_id = json.loads(created.stdout)["agentRuntimeId"]
    wait_ready(control, runtime_id)
    got = aws(server, "bedrock-agentcore-control", "get-agent-runtime", "--agent-runtime-id", runtime_id)
    assert got.returncode == 0 and json.loads(got.stdout)["status"] == "READY"
    listed = aws(server, "bedrock-agentcore-control", "list-agent-runtimes")
    assert runtime_id in [r["agentRuntimeId"] for r in json.loads(listed.stdout)["agentRuntimes"]]
    deleted = aws(server, "bedrock-agentcore-control", "delete-agent-runtime", "--agent-runtime-id", runtime_id)
    assert deleted.returncode == 0, deleted.stderr


def test_runtimes_serve_again_after_the_server_is_killed(tmp_path, code_zip):
    server = ServerProcess(tmp_path / "data").start()
    try:
        account = server.client("sts").get_caller_identity()["Account"]
        s3 = server.client("s3")
        s3.create_bucket(Bucket="agent-code")
        s3.put_object(Bucket="agent-code", Key="agent.zip", Body=code_zip)
        control = server.client("bedrock-agentcore-control")
        runtime = make(control, f"arn:aws:iam::{account}:role/JobforgeExecutionRole",
                       {"bucket": "agent-code", "prefix": "agent.zip"})
        data = server.client("bedrock-agentcore", read_timeout=120)
        session = session_id()
        before = invoke(data, runtime["agentRuntimeArn"], {"before": 1}, session)[1]
        credentials = invoke(data, runtime["agentRuntimeArn"], {"action": "credentials"}, session)[1]
        server.kill()
        server.start()
        data = server.client("bedrock-agentcore", read_timeout=120)
        after = invoke(data, runtime["agentRuntimeArn"], {"after": 2}, session)[1]
        assert after["echo"] == {"after": 2}
        assert after["calls"] == 1 and after["boot"] != before["boot"]  # the session's process died with the server

        # The dead session's credentials were revoked when the server started again.
        import boto3
        stale = boto3.client("sts", endpoint_url=server.endpoint, region_name="us-east-1",
                             aws_access_key_id=credentials["AWS_ACCESS_KEY_ID"],
                             aws_secret_access_key=credentials["AWS_SECRET_ACCESS_KEY"],
                             aws_session_token=credentials["AWS_SESSION_TOKEN"])
        with pytest.raises(ClientError) as revoked:
            stale.get_caller_identity()
        assert revoked.value.response["Error"]["Code"] in ("InvalidClientTokenId", "ExpiredToken",
                                                            "UnrecognizedClientException")
    finally:
        server.stop()
