"""Lambda functions through boto3 and the AWS CLI against the real server: the code is a .zip built here, the
function runs in jobforge's warm, confined execution environments, its logs are read back through CloudWatch Logs."""

from __future__ import annotations

import base64
import io
import json
import os
import re
import subprocess
import sys
import textwrap
import time
import uuid
import zipfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from botocore.exceptions import ClientError

from jobforge.testing_server import ServerProcess

AWS = str(Path(sys.executable).with_name("aws"))
ECHO = """
import os

def handler(event, context):
    print("got", event)
    return {"echo": event, "greeting": os.environ.get("GREETING"), "function": context.function_name,
            "request": context.aws_request_id, "stream": context.log_stream_name,
            "memory": context.memory_limit_in_mb, "left_ms": context.get_remaining_time_in_millis(),
            "arn": context.invoked_function_arn}
"""


def code_zip(source: str, module: str = "app", extra: dict | None = None) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr(f"{module}.py", textwrap.dedent(source))
        for name, text in (extra or {}).items():
            archive.writestr(name, text)
    return buffer.getvalue()


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    srv = ServerProcess(tmp_path_factory.mktemp("lambda") / "data").start()
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def account(server):
    return server.client("sts").get_caller_identity()["Account"]


@pytest.fixture(scope="module")
def role(account):
    return f"arn:aws:iam::{account}:role/JobforgeExecutionRole"


@pytest.fixture(scope="module")
def lam(server):
    return server.client("lambda", read_timeout=120, max_pool_connections=20)


def wait(lam, name: str, member: str = "State", value: str = "Active") -> dict:
    deadline = time.time() + 30
    while (config := lam.get_function_configuration(FunctionName=name)).get(member) != value:
        assert time.time() < deadline, config
        time.sleep(0.05)
    return config


def make(lam, role, source: str = ECHO, **settings) -> str:
    name = settings.pop("FunctionName", f"fn-{uuid.uuid4().hex[:8]}")
    created = lam.create_function(FunctionName=name, Runtime=settings.pop("Runtime", f"python3.{sys.version_info[1]}"),
                                  Role=role, Handler=settings.pop("Handler", "app.handler"),
                                  Code={"ZipFile": code_zip(source)}, **settings)
    assert created["State"] == "Pending" and created["StateReasonCode"] == "Creating"
    wait(lam, name)
    return name


def invoke(lam, name: str, event=None, **extra) -> tuple[dict, dict]:
    answer = lam.invoke(FunctionName=name, Payload=json.dumps(event if event is not None else {}), **extra)
    return answer, json.loads(answer["Payload"].read())


def test_create_invoke_update_and_delete(lam, role, account):
    zipped = code_zip(ECHO)
    name = make(lam, role, Environment={"Variables": {"GREETING": "hello"}}, MemorySize=256)
    config = lam.get_function(FunctionName=name)["Configuration"]
    assert config["CodeSize"] == len(zipped)
    assert config["CodeSha256"] == base64.b64encode(__import__("hashlib").sha256(zipped).digest()).decode()
    assert config["FunctionArn"] == f"arn:aws:lambda:us-east-1:{account}:function:{name}"
    assert config["State"] == "Active" and config["Version"] == "$LATEST"

    answer, result = invoke(lam, name, {"n": 1})
    assert answer["StatusCode"] == 200 and "FunctionError" not in answer
    assert answer["ExecutedVersion"] == "$LATEST"
    assert result["echo"] == {"n": 1} and result["greeting"] == "hello" and result["function"] == name
    assert result["request"] == answer["ResponseMetadata"]["RequestId"]
    assert result["memory"] == "256" and 0 < result["left_ms"] <= 3000
    assert result["arn"] == config["FunctionArn"]
    assert invoke(lam, name, {"n": 2})[1]["stream"] == result["stream"]  # the warm environment again

    updated = lam.update_function_code(FunctionName=name, ZipFile=code_zip(
        "def handler(event, context):\n    return 'version two'\n"))
    assert updated["LastUpdateStatus"] == "InProgress"
    wait(lam, name, "LastUpdateStatus", "Successful")
    assert invoke(lam, name)[1] == "version two"

    lam.update_function_code(FunctionName=name, ZipFile=zipped)
    wait(lam, name, "LastUpdateStatus", "Successful")
    lam.update_function_configuration(FunctionName=name, Environment={"Variables": {"GREETING": "changed"}})
    wait(lam, name, "LastUpdateStatus", "Successful")
    assert invoke(lam, name)[1]["greeting"] == "changed"

    assert name in [f["FunctionName"] for f in lam.list_functions()["Functions"]]
    lam.delete_function(FunctionName=name)
    with pytest.raises(ClientError) as gone:
        lam.invoke(FunctionName=name)
    assert gone.value.response["Error"]["Code"] == "ResourceNotFoundException"
    assert gone.value.response["Error"]["Message"] == f"Function not found: {config['FunctionArn']}"


def test_list_functions_pages(lam, role):
    names = sorted(make(lam, role, FunctionName=f"page-{i}-{uuid.uuid4().hex[:6]}") for i in range(3))
    seen, marker = [], None
    while True:
        page = lam.list_functions(MaxItems=1, **({"Marker": marker} if marker else {}))
        seen += [f["FunctionName"] for f in page["Functions"]]
        marker = page.get("NextMarker")
        if not marker:
            break
    assert [n for n in seen if n in names] == names


def test_a_handler_exception_answers_as_aws_does(lam, role):
    name = make(lam, role, """
        def handler(event, context):
            raise ValueError("no good: " + event["why"])
        """)
    answer, error = invoke(lam, name, {"why": "testing"})
    assert answer["StatusCode"] == 200 and answer["FunctionError"] == "Unhandled"
    assert error["errorType"] == "ValueError" and error["errorMessage"] == "no good: testing"
    assert error["requestId"] == answer["ResponseMetadata"]["RequestId"]
    assert len(error["stackTrace"]) == 1 and 'raise ValueError("no good: " + event["why"])' in error["stackTrace"][0]

    unmarshalable = make(lam, role, "def handler(event, context):\n    return {1, 2}\n")
    answer, error = invoke(lam, unmarshalable)
    assert answer["FunctionError"] == "Unhandled" and error["errorType"] == "Runtime.MarshalError"
    assert error["errorMessage"] == "Unable to marshal response: Object of type set is not JSON serializable"

    missing = make(lam, role, "x = 1\n", Handler="nowhere.handler")
    answer, error = invoke(lam, missing)
    assert answer["FunctionError"] == "Unhandled" and error["errorType"] == "Runtime.ImportModuleError"
    assert error["errorMessage"] == "Unable to import module 'nowhere': No module named 'nowhere'"


def test_the_timeout_kills_the_environment(lam, role):
    name = make(lam, role, """
        import time

        def handler(event, context):
            if event.get("sleep"):
                time.sleep(30)
            return "awake"
        """, Timeout=1)
    answer, error = invoke(lam, name, {"sleep": True}, LogType="Tail")
    assert answer["FunctionError"] == "Unhandled"
    request_id = answer["ResponseMetadata"]["RequestId"]
    assert re.fullmatch(rf"\S+Z {request_id} Task timed out after 1\.00 seconds", error["errorMessage"])
    tail = base64.b64decode(answer["LogResult"]).decode()
    assert "Task timed out after 1.00 seconds" in tail and "Status: timeout" in tail
    assert invoke(lam, name)[1] == "awake"  # a new environment


def test_the_memory_size_is_a_limit(lam, role):
    name = make(lam, role, """
        def handler(event, context):
            hoard = bytearray(event["mb"] * 1024 * 1024)
            for i in range(0, len(hoard), 4096):
                hoard[i] = 1
            return len(hoard) // (1024 * 1024)
        """, MemorySize=128)
    assert invoke(lam, name, {"mb": 16})[1] == 16
    answer, error = invoke(lam, name, {"mb": 512})
    assert answer["FunctionError"] == "Unhandled" and error["errorType"] == "Runtime.ExitError"
    request_id = answer["ResponseMetadata"]["RequestId"]
    assert error["errorMessage"] == f"RequestId: {request_id} Error: Runtime exited with error: signal: killed"
    assert invoke(lam, name, {"mb": 16})[1] == 16


def test_concurrent_invocations_and_throttling(lam, role):
    name = make(lam, role, """
        import time

        def handler(event, context):
            time.sleep(event.get("sleep", 0))
            return context.log_stream_name
        """)
    with ThreadPoolExecutor(3) as pool:
        streams = list(pool.map(lambda _: invoke(lam, name, {"sleep": 1.5})[1], range(3)))
    assert len(set(streams)) == 3  # three environments side by side

    assert lam.put_function_concurrency(FunctionName=name, ReservedConcurrentExecutions=1)[
        "ReservedConcurrentExecutions"] == 1
    assert lam.get_function_concurrency(FunctionName=name)["ReservedConcurrentExecutions"] == 1
    assert lam.get_function(FunctionName=name)["Concurrency"] == {"ReservedConcurrentExecutions": 1}

    def attempt(_):
        try:
            return invoke(lam, name, {"sleep": 2})[1]
        except ClientError as err:
            return err.response

    with ThreadPoolExecutor(2) as pool:
        first = pool.submit(attempt, 0)
        time.sleep(0.5)
        second = pool.submit(attempt, 1)
        outcomes = [first.result(), second.result()]
    refused = [o for o in outcomes if isinstance(o, dict)]
    assert len(refused) == 1, outcomes
    assert refused[0]["Error"]["Code"] == "TooManyRequestsException"
    assert refused[0]["ResponseMetadata"]["HTTPStatusCode"] == 429
    assert refused[0]["Reason"] == "ReservedFunctionConcurrentInvocationLimitExceeded"

    lam.put_function_concurrency(FunctionName=name, ReservedConcurrentExecutions=0)
    with pytest.raises(ClientError) as throttled:
        invoke(lam, name)
    assert throttled.value.response["Error"]["Code"] == "TooManyRequestsException"
    lam.delete_function_concurrency(FunctionName=name)
    assert "ReservedConcurrentExecutions" not in lam.get_function_concurrency(FunctionName=name)
    assert invoke(lam, name)[0]["StatusCode"] == 200


def test_event_invocations_run_with_the_role_credentials(server, lam, role, account):
    s3 = server.client("s3")
    bucket = f"lambda-events-{uuid.uuid4().hex[:8]}"
    s3.create_bucket(Bucket=bucket)
    name = make(lam, role, f"""
        import boto3

        def handler(event, context):
            boto3.client("s3").put_object(Bucket="{bucket}", Key=event["key"], Body=context.aws_request_id.encode())
            return "stored"
        """, Timeout=30)
    answer = lam.invoke(FunctionName=name, InvocationType="Event", Payload=json.dumps({"key": "from-event"}))
    assert answer["StatusCode"] == 202
    request_id = answer["ResponseMetadata"]["RequestId"]
    deadline = time.time() + 60
    while True:
        try:
            body = s3.get_object(Bucket=bucket, Key="from-event")["Body"].read().decode()
            break
        except ClientError:
            assert time.time() < deadline
            time.sleep(0.2)
    assert body == request_id
    assert lam.invoke(FunctionName=name, InvocationType="DryRun")["StatusCode"] == 204
    with pytest.raises(ClientError) as too_large:
        lam.invoke(FunctionName=name, InvocationType="Event", Payload=json.dumps({"x": "y" * (1024 * 1024)}))
    assert too_large.value.response["Error"]["Code"] == "RequestTooLargeException"


def test_logs_reach_cloudwatch_logs(server, lam, role):
    name = make(lam, role, """
        import logging

        def handler(event, context):
            print("line one")
            print("line two")
            logging.getLogger().warning("careful")
            return "logged"
        """)
    answer, _ = invoke(lam, name, LogType="Tail")
    request_id = answer["ResponseMetadata"]["RequestId"]
    tail = base64.b64decode(answer["LogResult"]).decode().splitlines()
    assert tail[0] == f"START RequestId: {request_id} Version: $LATEST"
    assert tail[1:3] == ["line one", "line two"] and tail[3].startswith("[WARNING]\t")
    assert tail[3].endswith(f"\t{request_id}\tcareful")
    assert tail[4] == f"END RequestId: {request_id}"
    assert re.fullmatch(rf"REPORT RequestId: {request_id}\tDuration: \d+\.\d\d ms\tBilled Duration: \d+ ms\t"
                        r"Memory Size: 128 MB\tMax Memory Used: \d+ MB\tInit Duration: \d+\.\d\d ms", tail[5])

    logs = server.client("logs")
    group = f"/aws/lambda/{name}"
    deadline = time.time() + 20
    while not (_group_exists(logs, group) and (streams := logs.describe_log_streams(logGroupName=group)[
            "logStreams"])):
        assert time.time() < deadline
        time.sleep(0.2)
    assert re.fullmatch(r"\d{4}/\d\d/\d\d/\[\$LATEST\][0-9a-f]{32}", streams[0]["logStreamName"])
    events = logs.get_log_events(logGroupName=group, logStreamName=streams[0]["logStreamName"],
                                 startFromHead=True)["events"]
    messages = [e["message"] for e in events]
    assert messages[0] == f"START RequestId: {request_id} Version: $LATEST" and "line one" in messages
    assert messages[-2] == f"END RequestId: {request_id}" and messages[-1].startswith("REPORT RequestId: ")
    found = logs.filter_log_events(logGroupName=group, filterPattern='"line two"')["events"]
    assert [e["message"] for e in found] == ["line two"]
    assert group in [g["logGroupName"] for g in logs.describe_log_groups(logGroupNamePrefix="/aws/lambda/")[
        "logGroups"]]


def _group_exists(logs, group: str) -> bool:
    return group in [g["logGroupName"] for g in logs.describe_log_groups(logGroupNamePrefix=group)["logGroups"]]


def test_another_accounts_function_is_unreachable(server, lam, role):
    name = make(lam, role)
    subprocess.run([sys.executable, "-m", "jobforge.cli", "--data-dir", str(server.data_dir), "accounts", "create",
                    "lambda-other"], check=True, capture_output=True, timeout=120)
    other = server.client("lambda", profile="lambda-other")
    arn = lam.get_function_configuration(FunctionName=name)["FunctionArn"]
    for identifier in (name, arn):
        with pytest.raises(ClientError) as refused:
            other.invoke(FunctionName=identifier)
        assert refused.value.response["Error"]["Code"] == "ResourceNotFoundException"
        with pytest.raises(ClientError):
            other.get_function(FunctionName=identifier)
    assert name not in [f["FunctionName"] for f in other.list_functions()["Functions"]]


def test_the_function_is_confined(server, lam, role):
    log = (server.data_dir.parent / f"server-{server.port}.log").read_text()
    isolation = re.search(r"Job isolation: (.*)", log)
    if isolation is None or "none on this host" in isolation.group(1) or "mount namespace: yes" not in log:
        pytest.skip(f"the host offers no mount namespace: {isolation and isolation.group(1)}")
    name = make(lam, role, f"""
        import os

        def attempt(path):
            try:
                with open(path, "w") as handle:
                    handle.write("planted")
                return "written"
            except OSError as error:
                return type(error).__name__

        def handler(event, context):
            return {{
                "tmp": attempt("/tmp/mine"), "own": attempt(os.path.join(os.getcwd(), "..", "mine")),
                "shm": attempt("/dev/shm/jobforge-planted"),
                "code": attempt(os.path.join(os.environ["LAMBDA_TASK_ROOT"], "app.py")),
                "data dir": attempt({str(server.data_dir / "planted")!r}),
                "credentials": attempt({str(server.data_dir / "credentials")!r}),
                "root": attempt("/planted"), "etc": attempt("/etc/planted"), "var tmp": attempt("/var/tmp/planted"),
                "host tmp": os.path.exists({str(server.data_dir.parent)!r} + "/server-{server.port}.log"),
            }}
        """)
    result = invoke(lam, name)[1]
    assert result.pop("tmp") == "written" and result.pop("own") == "written" and result.pop("shm") == "written"
    assert not Path("/dev/shm/jobforge-planted").exists()  # its own /dev/shm
    assert result.pop("host tmp") is False  # the host's /tmp is not the function's
    assert all(outcome != "written" for outcome in result.values()), result
    assert not (server.data_dir / "planted").exists() and not Path("/planted").exists()


def test_refusals_say_why(lam, role):
    with pytest.raises(ClientError) as image:
        lam.create_function(FunctionName="image-fn", Role=role, PackageType="Image",
                            Code={"ImageUri": "123456789012.dkr.ecr.us-east-1.amazonaws.com/repo:latest"})
    assert image.value.response["Error"]["Code"] == "InvalidParameterValueException"
    assert "Container-image functions" in image.value.response["Error"]["Message"]
    with pytest.raises(ClientError) as layers:
        lam.create_function(FunctionName="layered", Runtime="python3.11", Role=role, Handler="app.handler",
                            Code={"ZipFile": code_zip(ECHO)},
                            Layers=["arn:aws:lambda:us-east-1:123456789012:layer:x:1"])
    assert "Layers" in layers.value.response["Error"]["Message"]
    with pytest.raises(ClientError) as node:
        lam.create_function(FunctionName="node", Runtime="nodejs20.x", Role=role, Handler="index.handler",
                            Code={"ZipFile": code_zip(ECHO)})
    assert "not supported by jobforge" in node.value.response["Error"]["Message"]
    with pytest.raises(ClientError) as escaping:
        lam.create_function(FunctionName="escape", Runtime="python3.11", Role=role, Handler="app.handler",
                            Code={"ZipFile": code_zip(ECHO, extra={"../outside.py": "x = 1"})})
    assert "'..'" in escaping.value.response["Error"]["Message"]
    with pytest.raises(ClientError) as no_role:
        lam.create_function(FunctionName="no-role", Runtime="python3.11", Handler="app.handler",
                            Role=role.rsplit("/", 1)[0] + "/NoSuchRole", Code={"ZipFile": code_zip(ECHO)})
    assert no_role.value.response["Error"]["Message"] == "The role defined for the function cannot be assumed by Lambda."
    name = make(lam, role)
    with pytest.raises(ClientError) as again:
        make(lam, role, FunctionName=name)
    assert again.value.response["Error"]["Code"] == "ResourceConflictException"


def aws(server, *args):
    env = {key: value for key, value in os.environ.items() if not key.startswith("AWS_")}
    env.update(AWS_CONFIG_FILE=str(server.data_dir / "config"),
               AWS_SHARED_CREDENTIALS_FILE=str(server.data_dir / "credentials"))
    return subprocess.run([AWS, *args, "--output", "json"], capture_output=True, text=True, env=env, timeout=120)


def test_the_aws_cli(server, role, tmp_path):
    archive = tmp_path / "function.zip"
    archive.write_bytes(code_zip(ECHO))
    created = aws(server, "lambda", "create-function", "--function-name", "cli-fn", "--runtime",
                  f"python3.{sys.version_info[1]}", "--role", role, "--handler", "app.handler",
                  "--zip-file", f"fileb://{archive}")
    assert created.returncode == 0, created.stderr
    waited = aws(server, "lambda", "wait", "function-active-v2", "--function-name", "cli-fn")
    assert waited.returncode == 0, waited.stderr
    out = tmp_path / "out.json"
    invoked = aws(server, "lambda", "invoke", "--function-name", "cli-fn",
                  "--payload", '{"from": "cli"}', "--log-type", "Tail", str(out))
    assert invoked.returncode == 0, invoked.stderr
    assert json.loads(out.read_text())["echo"] == {"from": "cli"}
    assert "START RequestId" in base64.b64decode(json.loads(invoked.stdout)["LogResult"]).decode()
    got = aws(server, "lambda", "get-function", "--function-name", "cli-fn")
    assert json.loads(got.stdout)["Configuration"]["Handler"] == "app.handler"
    missing = aws(server, "lambda", "get-function", "--function-name", "no-such-fn")
    assert missing.returncode != 0 and "ResourceNotFoundException" in missing.stderr
    assert aws(server, "lambda", "delete-function", "--function-name", "cli-fn").returncode == 0


def test_functions_answer_after_the_server_is_killed(tmp_path):
    server = ServerProcess(tmp_path / "data").start()
    try:
        account = server.client("sts").get_caller_identity()["Account"]
        lam = server.client("lambda")
        name = make(lam, f"arn:aws:iam::{account}:role/JobforgeExecutionRole")
        assert invoke(lam, name, {"before": 1})[1]["echo"] == {"before": 1}
        server.kill()
        server.start()
        lam = server.client("lambda")
        assert invoke(lam, name, {"after": 2})[1]["echo"] == {"after": 2}
    finally:
        server.stop()
