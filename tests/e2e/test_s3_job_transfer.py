"""A job's S3 transfers: through the S3 API with the job's temporary credentials, so with its account's
permissions; object keys that are not file names under the target fail the transfer."""

from __future__ import annotations

import hashlib
import subprocess
import sys
import uuid

import pytest

from jobforge.core import accounts
from jobforge.core.store import create_engine
from jobforge.execution.context import NoSuchData, WorkloadError
from jobforge.execution.transfer import S3Transfer


@pytest.fixture(scope="module")
def job_env(server):
    """The environment a worker gets: temporary credentials of a role of the default account."""
    account = server.client("sts").get_caller_identity()["Account"]
    engine = create_engine(f"sqlite:///{server.data_dir / 'jobforge.db'}")
    credential = accounts.issue_job_credentials(engine, account, f"arn:aws:iam::{account}:role/JobforgeExecutionRole",
                                                f"transfer-test-{uuid.uuid4().hex[:8]}")
    return {"AWS_ACCESS_KEY_ID": credential.access_key_id, "AWS_SECRET_ACCESS_KEY": credential.secret_key,
            "AWS_SESSION_TOKEN": credential.session_token, "AWS_DEFAULT_REGION": "us-east-1",
            "AWS_ENDPOINT_URL_S3": server.endpoint}


@pytest.fixture
def as_job(monkeypatch, job_env):
    for name, value in job_env.items():
        monkeypatch.setenv(name, value)


def test_round_trip(server, as_job, tmp_path):
    s3 = server.client("s3")
    bucket = f"job-{uuid.uuid4().hex[:8]}"
    s3.create_bucket(Bucket=bucket)
    s3.put_object(Bucket=bucket, Key="in/train.jsonl", Body=b'{"a": 1}\n')
    upload = s3.create_multipart_upload(Bucket=bucket, Key="in/sub/big.bin")["UploadId"]
    parts = [s3.upload_part(Bucket=bucket, Key="in/sub/big.bin", UploadId=upload, PartNumber=n, Body=body)["ETag"]
             for n, body in ((1, b"1" * (5 << 20)), (2, b"22"))]
    s3.complete_multipart_upload(Bucket=bucket, Key="in/sub/big.bin", UploadId=upload, MultipartUpload={
        "Parts": [{"PartNumber": n, "ETag": etag} for n, etag in enumerate(parts, 1)]})
    transfer = S3Transfer()
    transfer.download(f"s3://{bucket}/in/train.jsonl", tmp_path / "one.jsonl")
    assert (tmp_path / "one.jsonl").read_bytes() == b'{"a": 1}\n'
    transfer.download(f"s3://{bucket}/in/", tmp_path / "all")
    assert (tmp_path / "all" / "sub" / "big.bin").read_bytes() == b"1" * (5 << 20) + b"22"
    out = tmp_path / "model"
    (out / "weights").mkdir(parents=True)
    (out / "weights" / "w.bin").write_bytes(b"w" * 1000)
    (out / "config.json").write_text("{}")
    transfer.upload(out, f"s3://{bucket}/out")
    transfer.upload(tmp_path / "one.jsonl", f"s3://{bucket}/single.jsonl")
    keys = sorted(o["Key"] for o in s3.list_objects_v2(Bucket=bucket, Prefix="out/")["Contents"])
    assert keys == ["out/config.json", "out/weights/w.bin"]
    got = s3.get_object(Bucket=bucket, Key="out/weights/w.bin", ChecksumMode="ENABLED")
    assert got["Body"].read() == b"w" * 1000
    assert got["ETag"] == f'"{hashlib.md5(b"w" * 1000).hexdigest()}"'
    assert got["ChecksumCRC32"]  # boto3's default for uploads, verified and kept by the server
    with pytest.raises(NoSuchData, match="404"):
        transfer.download(f"s3://{bucket}/missing", tmp_path / "missing")
    with pytest.raises(NoSuchData, match="No objects under"):
        transfer.download(f"s3://{bucket}/nothing/", tmp_path / "nothing")


def test_accounts_are_kept_apart(server, as_job, tmp_path):
    subprocess.run([sys.executable, "-m", "jobforge.cli", "--data-dir", str(server.data_dir), "accounts", "create",
                    "transfer-other"], check=True, capture_output=True)
    other = server.client("s3", profile="transfer-other")
    bucket = f"theirs-{uuid.uuid4().hex[:8]}"
    other.create_bucket(Bucket=bucket)
    other.put_object(Bucket=bucket, Key="secret", Body=b"not yours")
    transfer = S3Transfer()
    with pytest.raises(WorkloadError, match="403"):
        transfer.download(f"s3://{bucket}/secret", tmp_path / "secret")
    with pytest.raises(WorkloadError, match="AccessDenied"):
        transfer.download(f"s3://{bucket}/", tmp_path / "all")
    (tmp_path / "f").write_bytes(b"x")
    with pytest.raises(WorkloadError, match="AccessDenied"):
        transfer.upload(tmp_path / "f", f"s3://{bucket}/planted")
    assert [o["Key"] for o in other.list_objects_v2(Bucket=bucket)["Contents"]] == ["secret"]


def test_an_unknown_key_is_refused(server, monkeypatch, job_env, tmp_path):
    for name, value in job_env.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "ASIANOTINTHISDATABASE")
    with pytest.raises(WorkloadError, match="403"):
        S3Transfer().download("s3://any-bucket/key", tmp_path / "x")


def test_a_key_that_is_no_file_name_fails_before_anything_is_written(server, as_job, tmp_path):
    s3 = server.client("s3")
    bucket = f"keys-{uuid.uuid4().hex[:8]}"
    s3.create_bucket(Bucket=bucket)
    s3.put_object(Bucket=bucket, Key="in/a.txt", Body=b"a")
    s3.put_object(Bucket=bucket, Key="in/../../outside.txt", Body=b"b")
    with pytest.raises(WorkloadError, match=r"'in/\.\./\.\./outside\.txt'.*'\.\.' path segment"):
        S3Transfer().download(f"s3://{bucket}/in/", tmp_path / "in")
    assert list(tmp_path.iterdir()) == []


def test_a_file_replaced_as_its_upload_starts_is_stored_whole(server, as_job, tmp_path, monkeypatch):
    """A job replaces its checkpoint (os.replace) while the worker uploads it: the object is the old file or the
    new one, never the old one's length of the new one's bytes."""
    import os

    from s3transfer.utils import OSUtils

    s3 = server.client("s3")
    bucket = f"job-{uuid.uuid4().hex[:8]}"
    s3.create_bucket(Bucket=bucket)
    checkpoint, newer = tmp_path / "position.json", tmp_path / "position.tmp"
    checkpoint.write_text('{"next": 9}')
    newer.write_text('{"next": 10}')
    sized = OSUtils.get_file_size

    def replaced_after_sizing(self, filename):
        size = sized(self, filename)
        os.replace(newer, checkpoint)  # the job's next checkpoint lands between the size and the read
        return size

    monkeypatch.setattr(OSUtils, "get_file_size", replaced_after_sizing)
    S3Transfer().upload(checkpoint, f"s3://{bucket}/position.json")
    assert s3.get_object(Bucket=bucket, Key="position.json")["Body"].read() in (b'{"next": 9}', b'{"next": 10}')
