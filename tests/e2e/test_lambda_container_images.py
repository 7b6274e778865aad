"""Container-image Lambda functions (PackageType Image) through boto3 and the AWS CLI against a server started
with --container-engine: the image is built here FROM this host's Python, with AWS's Runtime Interface Client
(awslambdaric) as its entry point, as AWS documents for images not based on its own; jobforge serves each
container its Lambda Runtime API. Skipped, saying why, where no container engine can run it."""

from __future__ import annotations

import base64
import json
import os
import re
import subprocess
import sys
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from botocore.exceptions import ClientError

import container_images
from jobforge.execution.container_engine import ContainerEngine
from jobforge.testing_server import ServerProcess

AWS = str(Path(sys.executable).with_name("aws"))
REPOSITORY = "123456789012.dkr.ecr.us-east-1.amazonaws.com/jobforge-test-lambda"
APP = """
import json
import os
import time

import boto3

VERSION = "{version}"


def handler(event, context):
    print("got", json.dumps(event))
    action = event.get("action", "echo")
    if action == "fail":
        raise ValueError("no good: " + event["why"])
    if action == "sleep":
        time.sleep(event["seconds"])
    if action == "hoard":
        hoard = bytearray(event["mb"] * 1024 * 1024)
        for i in range(0, len(hoard), 4096):
            hoard[i] = 1
    if action == "s3":
        s3 = boto3.client("s3")
        s3.put_object(Bucket=event["bucket"], Key=event["key"], Body=context.aws_request_id.encode())
        return {{"who": boto3.client("sts").get_caller_identity()["Arn"]}}
    if action == "scratch":
        with open("/tmp/scratch", "w") as scratch:
            scratch.write("ok")
        try:
            open("/var/task/written", "w").close()
            root = "writable"
        except OSError as err:
            root = err.strerror
        return {{"tmp": open("/tmp/scratch").read(), "root": root}}
    return {{"echo": event, "version": VERSION, "function": context.function_name,
             "request": context.aws_request_id, "arn": context.invoked_function_arn,
             "memory": context.memory_limit_in_mb, "left_ms": context.get_remaining_time_in_millis(),
             "stream": context.log_stream_name, "user": [os.getuid(), os.getgid()], "cwd": os.getcwd(),
             "greeting": os.environ.get("GREETING"), "lines": os.environ.get("LINES"),
             "endpoint": os.environ.get("AWS_ENDPOINT_URL")}}


def other(event, context):
    return {{"handler": "other", "version": VERSION}}
"""


@pytest.fixture(scope="module")
def engine():
    name, why = container_images.engine()
    if name is None:
        pytest.skip(why)
    return name


def _image(engine: str, version: str) -> str:
    tag = f"{REPOSITORY}:{version}"
    container_images.build(engine, tag, {"/var/task/app.py": APP.format(version=version)},
                           packages=("awslambdaric", "boto3"),
                           entrypoint=[container_images.PYTHON, "-m", "awslambdaric"], command=["app.handler"],
                           workdir="/var/task")
    return tag


@pytest.fixture(scope="module")
def images(engine):
    tags = {version: _image(engine, version) for version in ("v1", "v2")}
    yield tags
    container_images.remove(engine, *tags.values())


@pytest.fixture(scope="module")
def server(engine, images, tmp_path_factory):
    srv = ServerProcess(tmp_path_factory.mktemp("lambda-images") / "data",
                        extra_args=["--container-engine", engine]).start()
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def lam(server):
    return server.client("lambda", read_timeout=120, max_pool_connections=20)


@pytest.fixture(scope="module")
def role(server):
    return f"arn:aws:iam::{server.client('sts').get_caller_identity()['Account']}:role/JobforgeExecutionRole"


def wait(lam, name: str, member: str = "State", value: str = "Active") -> dict:
    deadline = time.time() + 60
    while (config := lam.get_function_configuration(FunctionName=name)).get(member) != value:
        assert time.time() < deadline, config
        time.sleep(0.1)
    return config


def make(lam, role, image: str, **settings) -> str:
    name = settings.pop("FunctionName", f"img-{uuid.uuid4().hex[:8]}")
    created = lam.create_function(FunctionName=name, Role=role, PackageType="Image", Code={"ImageUri": image},
                                  **settings)
    assert created["State"] == "Pending" and created["PackageType"] == "Image"
    wait(lam, name)
    return name


def invoke(lam, name: str, event=None, **extra) -> tuple[dict, dict]:
    answer = lam.invoke(FunctionName=name, Payload=json.dumps(event if event is not None else {}), **extra)
    return answer, json.loads(answer["Payload"].read())


def containers(engine: str, server) -> list[str]:
    """The names of the containers the server has running."""
    owner = ContainerEngine(engine, server.data_dir.absolute()).owner
    listed = subprocess.run([engine, "ps", "--all", "--filter", f"label=io.jobforge.owner={owner}", "--format",
                             "{{.Names}}"], capture_output=True, text=True, timeout=60)
    return listed.stdout.split()


def test_create_invoke_update_and_delete(engine, server, lam, role, images):
    name = make(lam, role, images["v1"], Environment={"Variables": {"GREETING": "hello", "LINES": "one\ntwo"}},
                MemorySize=256)
    function = lam.get_function(FunctionName=name)
    config, code = function["Configuration"], function["Code"]
    assert "Runtime" not in config and "Handler" not in config and config["CodeSize"] == 0
    assert code["RepositoryType"] == "ECR" and code["ImageUri"] == images["v1"]
    digest = code["ResolvedImageUri"].split("@sha256:", 1)[1]
    assert code["ResolvedImageUri"] == f"{REPOSITORY}@sha256:{digest}" and config["CodeSha256"] == digest

    answer, result = invoke(lam, name, {"n": 1}, LogType="Tail")
    assert answer["StatusCode"] == 200 and "FunctionError" not in answer
    request_id = answer["ResponseMetadata"]["RequestId"]
    assert result["echo"] == {"n": 1} and result["version"] == "v1" and result["greeting"] == "hello"
    assert result["lines"] == "one\ntwo"
    assert not list((server.data_dir / "container-env").iterdir())  # its credentials' file went once it ran
    assert result["function"] == name and result["request"] == request_id and result["memory"] == "256"
    assert result["arn"] == config["FunctionArn"] and 0 < result["left_ms"] <= 3000
    assert result["user"] == [993, 990] and result["cwd"] == "/var/task"  # Lambda's user, the image's WORKDIR
    tail = base64.b64decode(answer["LogResult"]).decode().splitlines()
    assert tail[0] == f"START RequestId: {request_id} Version: $LATEST"
    assert tail[1] == 'got {"n": 1}' and tail[2] == f"END RequestId: {request_id}"
    assert re.fullmatch(rf"REPORT RequestId: {request_id}\tDuration: \d+\.\d\d ms\tBilled Duration: \d+ ms\t"
                        r"Memory Size: 256 MB\tMax Memory Used: \d+ MB\tInit Duration: \d+\.\d\d ms", tail[3])
    assert invoke(lam, name, {"n": 2})[1]["stream"] == result["stream"]  # the warm container again
    assert len([c for c in containers(engine, server) if c.startswith("lambda-env-")]) >= 1

    updated = lam.update_function_code(FunctionName=name, ImageUri=images["v2"])
    assert updated["LastUpdateStatus"] == "InProgress"
    wait(lam, name, "LastUpdateStatus", "Successful")
    assert invoke(lam, name)[1]["version"] == "v2"
    assert lam.get_function(FunctionName=name)["Code"]["ImageUri"] == images["v2"]

    lam.update_function_configuration(FunctionName=name, ImageConfig={"Command": ["app.other"]})
    config = wait(lam, name, "LastUpdateStatus", "Successful")
    assert config["ImageConfigResponse"] == {"ImageConfig": {"Command": ["app.other"]}}
    assert invoke(lam, name)[1] == {"handler": "other", "version": "v2"}

    before = set(containers(engine, server))
    lam.delete_function(FunctionName=name)
    with pytest.raises(ClientError) as gone:
        lam.invoke(FunctionName=name)
    assert gone.value.response["Error"]["Code"] == "ResourceNotFoundException"
    deadline = time.time() + 30
    while before & set(containers(engine, server)):
        assert time.time() < deadline, "the deleted function's container is still there"
        time.sleep(0.2)


def test_a_handler_error_and_a_timeout_answer_as_aws_does(lam, role, images):
    name = make(lam, role, images["v1"], Timeout=2)
    answer, error = invoke(lam, name, {"action": "fail", "why": "testing"}, LogType="Tail")
    assert answer["StatusCode"] == 200 and answer["FunctionError"] == "Unhandled"
    assert error["errorType"] == "ValueError" and error["errorMessage"] == "no good: testing"
    assert error["requestId"] == answer["ResponseMetadata"]["RequestId"]
    assert any('raise ValueError("no good: " + event["why"])' in line for line in error["stackTrace"])
    assert "[ERROR] ValueError: no good: testing" in base64.b64decode(answer["LogResult"]).decode()

    answer, error = invoke(lam, name, {"action": "sleep", "seconds": 30}, LogType="Tail")
    assert answer["FunctionError"] == "Unhandled"
    request_id = answer["ResponseMetadata"]["RequestId"]
    assert re.fullmatch(rf"\S+Z {request_id} Task timed out after 2\.00 seconds", error["errorMessage"])
    assert "Status: timeout" in base64.b64decode(answer["LogResult"]).decode()
    assert invoke(lam, name, {"after": "timeout"})[1]["echo"] == {"after": "timeout"}  # a new container


def test_the_memory_size_is_the_containers_limit(lam, role, images):
    name = make(lam, role, images["v1"], MemorySize=128)
    assert invoke(lam, name, {"action": "hoard", "mb": 16})[1]["echo"]["mb"] == 16
    answer, error = invoke(lam, name, {"action": "hoard", "mb": 512})
    assert answer["FunctionError"] == "Unhandled" and error["errorType"] == "Runtime.ExitError"
    request_id = answer["ResponseMetadata"]["RequestId"]
    assert error["errorMessage"] == f"RequestId: {request_id} Error: Runtime exited with error: signal: killed"
    assert invoke(lam, name, {"action": "hoard", "mb": 16})[0]["StatusCode"] == 200


def test_the_container_has_the_roles_credentials_and_a_private_tmp(server, lam, role, images):
    s3 = server.client("s3")
    bucket = f"lambda-images-{uuid.uuid4().hex[:8]}"
    s3.create_bucket(Bucket=bucket)
    name = make(lam, role, images["v1"], Timeout=30)
    answer, result = invoke(lam, name, {"action": "s3", "bucket": bucket, "key": "direct"})
    assert "FunctionError" not in answer, result
    assert result["who"].endswith(f":assumed-role/JobforgeExecutionRole/{name}")
    assert s3.get_object(Bucket=bucket, Key="direct")["Body"].read().decode() == \
        answer["ResponseMetadata"]["RequestId"]
    assert invoke(lam, name, {"action": "scratch"})[1] == {"tmp": "ok", "root": "Read-only file system"}

    event = lam.invoke(FunctionName=name, InvocationType="Event",
                       Payload=json.dumps({"action": "s3", "bucket": bucket, "key": "event"}))
    assert event["StatusCode"] == 202
    deadline = time.time() + 60
    while True:
        try:
            body = s3.get_object(Bucket=bucket, Key="event")["Body"].read().decode()
            break
        except ClientError:
            assert time.time() < deadline
            time.sleep(0.2)
    assert body == event["ResponseMetadata"]["RequestId"]


def test_concurrent_invocations_and_throttling(lam, role, images):
    name = make(lam, role, images["v1"], Timeout=10)
    with ThreadPoolExecutor(2) as pool:
        streams = list(pool.map(lambda _: invoke(lam, name, {"action": "sleep", "seconds": 1.5})[1]["stream"],
                                range(2)))
    assert len(set(streams)) == 2  # two containers side by side
    lam.put_function_concurrency(FunctionName=name, ReservedConcurrentExecutions=0)
    with pytest.raises(ClientError) as throttled:
        invoke(lam, name)
    assert throttled.value.response["Error"]["Code"] == "TooManyRequestsException"
    lam.delete_function_concurrency(FunctionName=name)
    assert invoke(lam, name)[0]["StatusCode"] == 200


def test_logs_reach_cloudwatch_logs(server, lam, role, images):
    name = make(lam, role, images["v1"])
    answer, _ = invoke(lam, name, {"logged": True})
    request_id = answer["ResponseMetadata"]["RequestId"]
    logs = server.client("logs")
    group = f"/aws/lambda/{name}"
    deadline = time.time() + 30
    while True:
        try:
            messages = [e["message"] for e in logs.filter_log_events(logGroupName=group)["events"]]
        except ClientError:
            messages = []
        if any(m.startswith(f"REPORT RequestId: {request_id}") for m in messages):
            break
        assert time.time() < deadline, messages
        time.sleep(0.2)
    assert f"START RequestId: {request_id} Version: $LATEST" in messages
    assert 'got {"logged": true}' in messages and f"END RequestId: {request_id}" in messages


def test_refusals_say_why(lam, role, images):
    with pytest.raises(ClientError) as missing:
        lam.create_function(FunctionName="img-missing", Role=role, PackageType="Image",
                            Code={"ImageUri": f"{REPOSITORY}:no-such-tag"})
    assert missing.value.response["Error"]["Code"] == "InvalidParameterValueException"
    assert "does not exist on this host's" in missing.value.response["Error"]["Message"]
    with pytest.raises(ClientError) as runtime:
        lam.create_function(FunctionName="img-runtime", Role=role, PackageType="Image", Runtime="python3.12",
                            Handler="app.handler", Code={"ImageUri": images["v1"]})
    assert "Runtime and Handler are not supported" in runtime.value.response["Error"]["Message"]
    with pytest.raises(ClientError) as relative:
        lam.create_function(FunctionName="img-workdir", Role=role, PackageType="Image",
                            Code={"ImageUri": images["v1"]}, ImageConfig={"WorkingDirectory": "task"})
    assert "absolute path" in relative.value.response["Error"]["Message"]
    name = make(lam, role, images["v1"])
    with pytest.raises(ClientError) as zipped:
        lam.update_function_code(FunctionName=name, ZipFile=b"PK")
    assert "Please provide ImageUri" in zipped.value.response["Error"]["Message"]


def test_the_entry_point_and_working_directory_come_from_image_config(lam, role, images):
    name = make(lam, role, images["v1"], ImageConfig={
        "EntryPoint": [container_images.PYTHON, "-m", "awslambdaric"], "Command": ["app.other"],
        "WorkingDirectory": "/var/task"})
    assert invoke(lam, name)[1] == {"handler": "other", "version": "v1"}
    broken = make(lam, role, images["v1"], ImageConfig={"EntryPoint": ["/no/such/runtime"]})
    answer, error = invoke(lam, broken)
    assert answer["FunctionError"] == "Unhandled" and error["errorType"] == "Runtime.InvalidEntrypoint", error


def aws(server, *args):
    env = {key: value for key, value in os.environ.items() if not key.startswith("AWS_")}
    env.update(AWS_CONFIG_FILE=str(server.data_dir / "config"),
               AWS_SHARED_CREDENTIALS_FILE=str(server.data_dir / "credentials"))
    return subprocess.run([AWS, *args, "--output", "json"], capture_output=True, text=True, env=env, timeout=120)


def test_the_aws_cli(server, role, images, tmp_path):
    created = aws(server, "lambda", "create-function", "--function-name", "cli-image-fn", "--package-type",
                  "Image", "--code", f"ImageUri={images['v1']}", "--role", role)
    assert created.returncode == 0, created.stderr
    assert json.loads(created.stdout)["PackageType"] == "Image"
    waited = aws(server, "lambda", "wait", "function-active-v2", "--function-name", "cli-image-fn")
    assert waited.returncode == 0, waited.stderr
    out = tmp_path / "out.json"
    invoked = aws(server, "lambda", "invoke", "--function-name", "cli-image-fn", "--payload", '{"from": "cli"}',
                  "--log-type", "Tail", str(out))
    assert invoked.returncode == 0, invoked.stderr
    assert json.loads(out.read_text())["echo"] == {"from": "cli"}
    assert 'got {"from": "cli"}' in base64.b64decode(json.loads(invoked.stdout)["LogResult"]).decode()
    got = aws(server, "lambda", "get-function", "--function-name", "cli-image-fn")
    assert json.loads(got.stdout)["Code"]["ImageUri"] == images["v1"]
    updated = aws(server, "lambda", "update-function-code", "--function-name", "cli-image-fn", "--image-uri",
                  images["v2"])
    assert updated.returncode == 0, updated.stderr
    assert aws(server, "lambda", "wait", "function-updated-v2", "--function-name", "cli-image-fn").returncode == 0
    assert aws(server, "lambda", "delete-function", "--function-name", "cli-image-fn").returncode == 0


def test_containers_left_by_a_killed_server_are_removed_at_start(engine, images, tmp_path):
    server = ServerProcess(tmp_path / "data", extra_args=["--container-engine", engine]).start()
    try:
        lam = server.client("lambda", read_timeout=120)
        role = f"arn:aws:iam::{server.client('sts').get_caller_identity()['Account']}:role/JobforgeExecutionRole"
        name = make(lam, role, images["v1"])
        assert invoke(lam, name, {"before": 1})[1]["echo"] == {"before": 1}
        left = containers(engine, server)
        assert left
        server.kill()
        assert set(left) <= set(containers(engine, server))  # still running: nothing stopped them
        server.start()
        assert not set(left) & set(containers(engine, server))
        lam = server.client("lambda", read_timeout=120)
        assert invoke(lam, name, {"after": 2})[1]["echo"] == {"after": 2}
    finally:
        server.stop()
    deadline = time.time() + 30
    while containers(engine, server):
        assert time.time() < deadline, "the server's containers outlived it"
        time.sleep(0.2)
