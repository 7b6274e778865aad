"""Object keys never become paths outside the directory meant for them.

Keys such as ``prefix/../../x`` or ``prefix//abs/path/x`` are valid S3 keys.
Put with boto3 under a prefix, they must make a Bedrock model import, the copy
of a model for inference, and a job's input channel fail with a reason naming
the key, and no file may appear outside the data dir or at the absolute path
a key names.
"""

from __future__ import annotations

import io
import json
import os
import tarfile
import time
import uuid
from pathlib import Path

import pytest
from botocore.exceptions import ClientError

from jobforge.execution.local_paths import UnsafePath, path_for_key, path_under
from jobforge.testing_server import ServerProcess

ESCAPE = Path(f"/tmp/jobforge-escape-{uuid.uuid4().hex}")
UP = "../" * 24  # more than any data dir is deep: '..' at / stays at /
UNSAFE = {  # the key's part after the prefix → what the refusal says
    "dot-dot": (f"{UP}{ESCAPE.relative_to('/')}/dotdot.txt", "'..' path segment"),
    "dot-dot inside": (f"weights/{UP}{ESCAPE.relative_to('/')}/inside.txt", "'..' path segment"),
    "absolute": (f"{ESCAPE}/absolute.txt", "absolute path"),
    "empty segment": ("weights//empty.txt", "empty path segment"),
    "dot": ("./dot.txt", "'.' path segment"),
}
CONFIG = json.dumps({"model_type": "llama"}).encode()


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    srv = ServerProcess(tmp_path_factory.mktemp("paths") / "data").start()
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def s3(server):
    client = server.client("s3")
    client.create_bucket(Bucket="keys")
    return client


@pytest.fixture(scope="module")
def account(server):
    return server.client("sts").get_caller_identity()["Account"]


def _snapshot(folder: Path) -> set[Path]:
    """Every path under the data dir's parent, except the data dir itself (what a server writes there)."""
    return {p for p in folder.rglob("*") if not p.is_relative_to(folder / "data")}


@pytest.fixture
def nothing_escapes(server):
    """Fails the test when a file appeared beside the data dir, above it, or where a key points."""
    before = _snapshot(server.data_dir.parent)
    yield
    after = _snapshot(server.data_dir.parent)
    assert {p for p in after - before if not p.name.startswith("server-")} == set()
    assert not ESCAPE.exists()
    assert not Path("/dotdot.txt").exists() and not Path("/inside.txt").exists()


def put(s3, key: str, body: bytes = b"x") -> None:
    s3.put_object(Bucket="keys", Key=key, Body=body)
    assert any(o["Key"] == key for o in s3.list_objects_v2(Bucket="keys", Prefix=key)["Contents"])  # stored as sent


@pytest.mark.parametrize("case", sorted(UNSAFE))
def test_custom_model_import_refuses_a_key_outside_the_model(server, s3, case, nothing_escapes):
    relative, reason = UNSAFE[case]
    prefix = f"import-{uuid.uuid4().hex[:8]}/"
    put(s3, prefix + "config.json", CONFIG)
    put(s3, prefix + relative)
    with pytest.raises(ClientError) as err:
        server.client("bedrock").create_custom_model(
            modelName=f"escape-{uuid.uuid4().hex[:8]}",
            modelSourceConfig={"s3DataSource": {"s3Uri": f"s3://keys/{prefix}"}})
    error = err.value.response["Error"]
    assert err.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400
    assert error["Code"] == "ValidationException"
    assert prefix + relative in error["Message"] and reason in error["Message"], error["Message"]


def test_a_key_added_after_import_stops_the_copy_for_inference(server, s3, nothing_escapes):
    prefix = f"import-{uuid.uuid4().hex[:8]}/"
    put(s3, prefix + "config.json", CONFIG)
    bedrock = server.client("bedrock")
    name = f"late-{uuid.uuid4().hex[:8]}"
    arn = bedrock.create_custom_model(modelName=name,
                                      modelSourceConfig={"s3DataSource": {"s3Uri": f"s3://keys/{prefix}"}})["modelArn"]
    relative, reason = UNSAFE["absolute"]
    put(s3, prefix + relative)
    with pytest.raises(ClientError) as err:
        server.client("bedrock-runtime").converse(modelId=name, messages=[{"role": "user", "content": [{"text": "hi"}]}])
    error = err.value.response["Error"]
    assert error["Code"] == "ValidationException"
    assert prefix + relative in error["Message"] and reason in error["Message"], error["Message"]
    # A deployment copies the model as it is created, and fails with the same reason.
    deployment = bedrock.create_custom_model_deployment(modelDeploymentName=f"late-{uuid.uuid4().hex[:8]}",
                                                        modelArn=arn)["customModelDeploymentArn"]
    deadline = time.time() + 60
    while (found := bedrock.get_custom_model_deployment(customModelDeploymentIdentifier=deployment))["status"] == \
            "Creating" and time.time() < deadline:
        time.sleep(0.2)
    assert found["status"] == "Failed"
    assert prefix + relative in found["failureMessage"] and reason in found["failureMessage"], found


def _source_archive() -> bytes:
    code = b"def main():\n    print('the job ran')\n"
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        info = tarfile.TarInfo("algo.py")
        info.size = len(code)
        tar.addfile(info, io.BytesIO(code))
    return buffer.getvalue()


def _run_hybrid_job(server, account: str, name: str, channel_uri: str) -> dict:
    braket = server.client("braket")
    arn = braket.create_job(
        clientToken=str(uuid.uuid4()), jobName=name, roleArn=f"arn:aws:iam::{account}:role/JobforgeExecutionRole",
        algorithmSpecification={"scriptModeConfig": {"entryPoint": "algo:main", "s3Uri": "s3://keys/code/algo.tar.gz",
                                                     "compressionType": "GZIP"}},
        inputDataConfig=[{"channelName": "data", "dataSource": {"s3DataSource": {"s3Uri": channel_uri}}}],
        outputDataConfig={"s3Path": f"s3://keys/out/{name}"},
        instanceConfig={"instanceType": "ml.m5.large", "volumeSizeInGb": 1},
        deviceConfig={"device": "local:braket/braket_sv"})["jobArn"]
    deadline = time.time() + 120
    while (job := braket.get_job(jobArn=arn))["status"] not in ("COMPLETED", "FAILED", "CANCELLED"):
        assert time.time() < deadline, job["status"]
        time.sleep(0.2)
    return job


@pytest.mark.parametrize("case", sorted(UNSAFE))
def test_job_input_channel_refuses_a_key_outside_the_job(server, s3, account, case, nothing_escapes):
    relative, reason = UNSAFE[case]
    s3.put_object(Bucket="keys", Key="code/algo.tar.gz", Body=_source_archive())
    prefix = f"channel-{uuid.uuid4().hex[:8]}/"
    put(s3, prefix + "good.txt", b"fine")
    put(s3, prefix + relative)
    job = _run_hybrid_job(server, account, f"escape-{uuid.uuid4().hex[:8]}", f"s3://keys/{prefix}")
    assert job["status"] == "FAILED"
    assert prefix + relative in job["failureReason"] and reason in job["failureReason"], job["failureReason"]


def test_job_input_channel_of_ordinary_keys_still_downloads(server, s3, account, nothing_escapes):
    s3.put_object(Bucket="keys", Key="code/algo.tar.gz", Body=_source_archive())
    prefix = f"channel-{uuid.uuid4().hex[:8]}/"
    put(s3, prefix + "a.txt")
    put(s3, prefix + "nested/b.txt")
    put(s3, prefix + "folder/")  # a folder marker holds no file
    job = _run_hybrid_job(server, account, f"fine-{uuid.uuid4().hex[:8]}", f"s3://keys/{prefix}")
    assert job["status"] == "COMPLETED", job.get("failureReason")


def test_paths_for_keys_stay_under_their_root(tmp_path):
    assert path_for_key(tmp_path, "p/a/b.txt", "p/") == tmp_path / "a" / "b.txt"
    assert path_for_key(tmp_path, "p/", "p/") is None and path_for_key(tmp_path, "p/folder/", "p/") is None
    for relative, reason in UNSAFE.values():
        with pytest.raises(UnsafePath, match=reason.replace(".", r"\.")):
            path_for_key(tmp_path, "p/" + relative, "p/")
    for name in ("..", ".", "", "/etc", "a/../../b", "a\0b", "x" * 256):
        with pytest.raises(UnsafePath):
            path_under(tmp_path, name)
    assert os.listdir(tmp_path) == []
