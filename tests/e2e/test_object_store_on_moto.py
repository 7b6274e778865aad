"""Every object in an S3 service of another implementation (moto's server): given as
``--object-store s3://bucket/prefix --object-store-endpoint URL``, it holds users' objects (single and
multipart, copies, ranges, deletes) and a job's checkpoints, and nothing of them stays on the server's disk."""

from __future__ import annotations

import json
import time

import pytest
from botocore.exceptions import ClientError

from jobforge.testing_server import ServerProcess
from selftest_kind import CATEGORY, SELFTEST_ENV


@pytest.fixture
def server(tmp_path, external_s3):
    srv = ServerProcess(tmp_path / "data", extra_args=[
        "--object-store", "s3://jobforge-shared/jobforge?region=us-east-1",
        "--object-store-endpoint", external_s3["endpoint"]], env=dict(SELFTEST_ENV, **external_s3["env"])).start()
    yield srv
    srv.stop()


def stored(external_s3) -> list[str]:
    found = external_s3["client"].list_objects_v2(Bucket="jobforge-shared", Prefix="jobforge/")
    return [o["Key"] for o in found.get("Contents", [])]


def test_objects_live_in_the_external_store(server, external_s3):
    s3 = server.client("s3")
    s3.create_bucket(Bucket="data")
    s3.put_object(Bucket="data", Key="small.txt", Body=b"small", Metadata={"m": "1"})
    data = bytes(range(256)) * (24 * 1024)  # 6 MiB: two parts
    upload = s3.create_multipart_upload(Bucket="data", Key="big.bin")["UploadId"]
    parts = [{"PartNumber": n, "ETag": s3.upload_part(Bucket="data", Key="big.bin", UploadId=upload, PartNumber=n,
                                                      Body=chunk)["ETag"]}
             for n, chunk in enumerate((data[:5 << 20], data[5 << 20:]), 1)]
    s3.complete_multipart_upload(Bucket="data", Key="big.bin", UploadId=upload, MultipartUpload={"Parts": parts})
    s3.copy_object(Bucket="data", Key="copy.txt", CopySource="data/small.txt")
    assert s3.get_object(Bucket="data", Key="small.txt")["Metadata"] == {"m": "1"}
    assert s3.get_object(Bucket="data", Key="big.bin")["Body"].read() == data
    assert s3.get_object(Bucket="data", Key="big.bin", Range="bytes=5242870-5242889")["Body"].read() == \
        data[5242870:5242890]
    assert s3.get_object(Bucket="data", Key="copy.txt")["Body"].read() == b"small"
    assert len(stored(external_s3)) == 4 and all(k.startswith("jobforge/blobs/") for k in stored(external_s3))
    blobs = server.data_dir / "objects" / "blobs"
    assert not blobs.exists() or not any(p.is_file() for p in blobs.rglob("*"))
    for key in ("small.txt", "big.bin", "copy.txt"):
        s3.delete_object(Bucket="data", Key=key)
    assert stored(external_s3) == []
    with pytest.raises(ClientError):
        s3.get_object(Bucket="data", Key="small.txt")


def test_a_jobs_checkpoints_go_to_the_external_store(server, external_s3):
    sm = server.client("sagemaker")
    account = server.client("sts").get_caller_identity()["Account"]
    sm.create_job(JobName="checkpointed", RoleArn=f"arn:aws:iam::{account}:role/JobforgeExecutionRole",
                  JobCategory=CATEGORY, JobConfigSchemaVersion="1.0.0",
                  JobConfigDocument=json.dumps({"Steps": 30, "SleepSeconds": 0.1}))
    s3 = server.client("s3")
    deadline = time.time() + 60
    while not any(b["Name"].startswith("jobforge-checkpoints-") and
                  s3.list_objects_v2(Bucket=b["Name"]).get("KeyCount") for b in s3.list_buckets()["Buckets"]):
        assert time.time() < deadline
        time.sleep(0.2)
    assert stored(external_s3)  # the checkpoint's bytes are in the external store
    while sm.describe_job(JobName="checkpointed", JobCategory=CATEGORY)["JobStatus"] == "InProgress":
        assert time.time() < deadline
        time.sleep(0.2)
    assert sm.describe_job(JobName="checkpointed", JobCategory=CATEGORY)["JobStatus"] == "Completed"


def test_the_endpoint_flag_needs_an_object_store(tmp_path):
    server = ServerProcess(tmp_path / "data", extra_args=["--object-store-endpoint", "http://127.0.0.1:9"])
    with pytest.raises(RuntimeError, match="exited"):
        server.start(timeout=30)
