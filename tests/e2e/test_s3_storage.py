"""Storage guarantees: a crash mid-upload exposes nothing; objects kept in an external S3 endpoint."""

from __future__ import annotations

import http.client
import time
import uuid

import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from botocore.exceptions import ClientError

from jobforge.testing_server import ServerProcess


def _start_partial_upload(server, bucket: str, key: str, total: int, sent: int) -> http.client.HTTPConnection:
    creds = server.credentials()
    request = AWSRequest(method="PUT", url=f"{server.endpoint}/{bucket}/{key}",
                         headers={"X-Amz-Content-SHA256": "UNSIGNED-PAYLOAD", "Content-Length": str(total)})
    SigV4Auth(Credentials(creds["aws_access_key_id"], creds["aws_secret_access_key"]), "s3",
              "us-east-1").add_auth(request)
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
    connection.putrequest("PUT", f"/{bucket}/{key}", skip_accept_encoding=True)
    for name, value in request.headers.items():
        connection.putheader(name, value)
    connection.endheaders()
    block = b"z" * (1 << 20)
    for _ in range(sent // len(block)):
        connection.send(block)
    return connection


def _staging_files(server) -> list:
    return [p for p in (server.data_dir / "objects" / "tmp").iterdir()]


def test_kill_during_upload_leaves_nothing_visible(tmp_path):
    server = ServerProcess(tmp_path / "data").start()
    try:
        s3 = server.client("s3")
        s3.create_bucket(Bucket="crash")
        s3.put_object(Bucket="crash", Key="dataset.bin", Body=b"old version")
        connection = _start_partial_upload(server, "crash", "dataset.bin", total=64 << 20, sent=24 << 20)
        deadline = time.time() + 10
        while time.time() < deadline and not any(p.stat().st_size >= 16 << 20 for p in _staging_files(server)):
            time.sleep(0.05)
        assert _staging_files(server), "the body should be streaming to a staging file"
        server.kill()
        connection.close()
        server.start()
        s3 = server.client("s3")
        assert s3.get_object(Bucket="crash", Key="dataset.bin")["Body"].read() == b"old version"
        assert [o["Key"] for o in s3.list_objects_v2(Bucket="crash")["Contents"]] == ["dataset.bin"]
        with pytest.raises(ClientError):
            s3.head_object(Bucket="crash", Key="other")
        assert _staging_files(server) == []  # the partial body was swept on start
        # a client that disconnects mid-body leaves nothing behind either
        connection = _start_partial_upload(server, "crash", "cut.bin", total=32 << 20, sent=8 << 20)
        connection.close()
        deadline = time.time() + 10
        while time.time() < deadline and _staging_files(server):
            time.sleep(0.05)
        assert _staging_files(server) == []
        with pytest.raises(s3.exceptions.NoSuchKey):
            s3.get_object(Bucket="crash", Key="cut.bin")
    finally:
        server.stop()


def test_external_object_store_on_a_second_endpoint(tmp_path):
    backing = ServerProcess(tmp_path / "backing").start()
    front = None
    try:
        backing_s3 = backing.client("s3")
        backing_s3.create_bucket(Bucket="jobforge-data")
        creds = backing.credentials()
        front = ServerProcess(tmp_path / "front", extra_args=[
            "--object-store", f"s3://jobforge-data/front?endpoint={backing.endpoint}&region=us-east-1"],
            env={"AWS_ACCESS_KEY_ID": creds["aws_access_key_id"],
                 "AWS_SECRET_ACCESS_KEY": creds["aws_secret_access_key"]}).start()
        s3 = front.client("s3")
        bucket = f"ext-{uuid.uuid4().hex[:8]}"
        s3.create_bucket(Bucket=bucket)
        s3.put_object(Bucket=bucket, Key="a/small.txt", Body=b"small", Metadata={"m": "1"})
        data = bytes(range(256)) * (48 * 1024)  # 12 MiB: two parts
        upload = s3.create_multipart_upload(Bucket=bucket, Key="a/big.bin")["UploadId"]
        parts = []
        for number, chunk in enumerate((data[:8 << 20], data[8 << 20:]), 1):
            etag = s3.upload_part(Bucket=bucket, Key="a/big.bin", UploadId=upload, PartNumber=number,
                                  Body=chunk)["ETag"]
            parts.append({"PartNumber": number, "ETag": etag})
        s3.complete_multipart_upload(Bucket=bucket, Key="a/big.bin", UploadId=upload,
                                     MultipartUpload={"Parts": parts})
        s3.copy_object(Bucket=bucket, Key="b/copy.txt", CopySource=f"{bucket}/a/small.txt")
        assert s3.get_object(Bucket=bucket, Key="a/small.txt")["Metadata"] == {"m": "1"}
        assert s3.get_object(Bucket=bucket, Key="a/big.bin")["Body"].read() == data
        assert s3.get_object(Bucket=bucket, Key="a/big.bin", Range="bytes=8388600-8388615")["Body"].read() \
            == data[8388600:8388616]
        assert s3.get_object(Bucket=bucket, Key="b/copy.txt")["Body"].read() == b"small"
        stored = [o for o in backing_s3.list_objects_v2(Bucket="jobforge-data", Prefix="front/")["Contents"]]
        assert len(stored) == 4 and all(o["Key"].startswith("front/blobs/") for o in stored)
        local_blobs = front.data_dir / "objects" / "blobs"
        assert not local_blobs.exists() or not any(p.is_file() for p in local_blobs.rglob("*"))
        s3.delete_object(Bucket=bucket, Key="a/big.bin")
        s3.delete_object(Bucket=bucket, Key="b/copy.txt")
        assert len(backing_s3.list_objects_v2(Bucket="jobforge-data", Prefix="front/")["Contents"]) == 1
    finally:
        if front is not None:
            front.stop()
        backing.stop()
