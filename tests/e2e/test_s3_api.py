"""S3 through boto3 against the real server: buckets, objects, listings, copies, errors, addressing."""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import subprocess
import sys
import uuid

import boto3
import pytest
import urllib3
from botocore.config import Config
from botocore.exceptions import ClientError


def _code(err: ClientError) -> str:
    return err.response["Error"]["Code"]


@pytest.fixture(scope="module")
def s3(server):
    return server.client("s3")


@pytest.fixture
def bucket(s3):
    name = f"bkt-{uuid.uuid4().hex[:12]}"
    s3.create_bucket(Bucket=name)
    return name


@pytest.fixture(scope="module")
def other(server):
    """A client of a second account."""
    subprocess.run([sys.executable, "-m", "jobforge.cli", "--data-dir", str(server.data_dir), "accounts", "create",
                    "s3-other"], check=True, capture_output=True)
    return server.client("s3", profile="s3-other")


def test_bucket_lifecycle_and_errors(s3):
    name = f"life-{uuid.uuid4().hex[:8]}"
    s3.create_bucket(Bucket=name)
    assert name in [b["Name"] for b in s3.list_buckets()["Buckets"]]
    assert s3.head_bucket(Bucket=name)["ResponseMetadata"]["HTTPHeaders"]["x-amz-bucket-region"] == "us-east-1"
    assert s3.get_bucket_location(Bucket=name)["LocationConstraint"] is None
    # Re-creating one's own bucket in us-east-1 answers 200, as S3 documents (BucketAlreadyOwnedByYou elsewhere).
    assert s3.create_bucket(Bucket=name)["ResponseMetadata"]["HTTPStatusCode"] == 200
    s3.put_object(Bucket=name, Key="k", Body=b"x")
    with pytest.raises(ClientError) as err:
        s3.delete_bucket(Bucket=name)
    assert _code(err.value) == "BucketNotEmpty"
    s3.delete_object(Bucket=name, Key="k")
    s3.delete_bucket(Bucket=name)
    with pytest.raises(ClientError) as err:
        s3.head_bucket(Bucket=name)
    assert _code(err.value) == "404"
    with pytest.raises(s3.exceptions.NoSuchBucket):
        s3.list_objects_v2(Bucket=name)
    for bad in ("ab", "Upper", "bad_name", "192.168.1.1", "-dash"):
        with pytest.raises(ClientError) as err:
            s3.create_bucket(Bucket=bad)
        assert _code(err.value) == "InvalidBucketName", bad


def test_object_round_trip_with_metadata(s3, bucket):
    put = s3.put_object(Bucket=bucket, Key="dir/file.txt", Body=b"hello world", ContentType="text/plain",
                        Metadata={"owner": "me"}, CacheControl="no-cache", ContentDisposition="inline",
                        Tagging="a=1&b=2")
    assert put["ETag"] == '"5eb63bbbe01eeed093cb22bb8f5acdc3"'  # MD5
    got = s3.get_object(Bucket=bucket, Key="dir/file.txt", ChecksumMode="ENABLED")
    assert got["Body"].read() == b"hello world"
    assert got["ContentType"] == "text/plain" and got["Metadata"] == {"owner": "me"}
    assert got["CacheControl"] == "no-cache" and got["ContentDisposition"] == "inline"
    assert got["ETag"] == put["ETag"] and got["ContentLength"] == 11 and got["TagCount"] == 2
    assert got["ChecksumCRC32"] == put["ChecksumCRC32"]
    head = s3.head_object(Bucket=bucket, Key="dir/file.txt")
    assert head["ContentLength"] == 11 and head["Metadata"] == {"owner": "me"}
    assert s3.get_object_tagging(Bucket=bucket, Key="dir/file.txt")["TagSet"] == [
        {"Key": "a", "Value": "1"}, {"Key": "b", "Value": "2"}]
    s3.put_object_tagging(Bucket=bucket, Key="dir/file.txt", Tagging={"TagSet": [{"Key": "x", "Value": "y"}]})
    assert s3.get_object_tagging(Bucket=bucket, Key="dir/file.txt")["TagSet"] == [{"Key": "x", "Value": "y"}]
    empty = s3.put_object(Bucket=bucket, Key="empty", Body=b"")
    assert empty["ETag"] == '"d41d8cd98f00b204e9800998ecf8427e"'
    assert s3.get_object(Bucket=bucket, Key="empty")["Body"].read() == b""


def test_missing_objects(s3, bucket):
    with pytest.raises(s3.exceptions.NoSuchKey) as err:
        s3.get_object(Bucket=bucket, Key="nope")
    headers = err.value.response["ResponseMetadata"]["HTTPHeaders"]
    assert "x-amz-request-id" in headers and "x-amz-id-2" in headers
    with pytest.raises(ClientError) as err:
        s3.head_object(Bucket=bucket, Key="nope")
    assert _code(err.value) == "404"  # HEAD errors have no body
    s3.delete_object(Bucket=bucket, Key="nope")  # deleting a missing key succeeds, as in S3


def test_ranges_and_conditions(s3, bucket):
    data = bytes(range(256)) * 4
    etag = s3.put_object(Bucket=bucket, Key="r", Body=data)["ETag"]
    part = s3.get_object(Bucket=bucket, Key="r", Range="bytes=10-19")
    assert part["Body"].read() == data[10:20]
    assert part["ContentRange"] == f"bytes 10-19/{len(data)}"
    assert part["ResponseMetadata"]["HTTPStatusCode"] == 206
    assert s3.get_object(Bucket=bucket, Key="r", Range="bytes=1000-")["Body"].read() == data[1000:]
    assert s3.get_object(Bucket=bucket, Key="r", Range="bytes=-5")["Body"].read() == data[-5:]
    assert s3.get_object(Bucket=bucket, Key="r", Range="bytes=1020-5000")["Body"].read() == data[1020:]
    with pytest.raises(ClientError) as err:
        s3.get_object(Bucket=bucket, Key="r", Range="bytes=5000-")
    assert _code(err.value) == "InvalidRange"
    assert err.value.response["ResponseMetadata"]["HTTPStatusCode"] == 416
    assert s3.get_object(Bucket=bucket, Key="r", IfMatch=etag)["Body"].read() == data
    with pytest.raises(ClientError) as err:
        s3.get_object(Bucket=bucket, Key="r", IfMatch='"0000"')
    assert _code(err.value) == "PreconditionFailed"
    with pytest.raises(ClientError) as err:
        s3.get_object(Bucket=bucket, Key="r", IfNoneMatch=etag)
    assert err.value.response["ResponseMetadata"]["HTTPStatusCode"] == 304
    later = dt.datetime.now(dt.timezone.utc) + dt.timedelta(hours=1)
    with pytest.raises(ClientError) as err:
        s3.get_object(Bucket=bucket, Key="r", IfModifiedSince=later)
    assert err.value.response["ResponseMetadata"]["HTTPStatusCode"] == 304
    head = s3.head_object(Bucket=bucket, Key="r")
    for call in (lambda: s3.get_object(Bucket=bucket, Key="r", IfNoneMatch=etag),
                 lambda: s3.head_object(Bucket=bucket, Key="r", IfModifiedSince=later),
                 lambda: s3.get_object(Bucket=bucket, Key="r", IfMatch='"0000"')):
        with pytest.raises(ClientError) as err:
            call()
        headers = err.value.response["ResponseMetadata"]["HTTPHeaders"]  # 304 and 412 describe the object
        assert headers["etag"] == etag
        assert headers["last-modified"] == head["ResponseMetadata"]["HTTPHeaders"]["last-modified"]
    with pytest.raises(ClientError) as err:
        s3.put_object(Bucket=bucket, Key="r", Body=b"new", IfNoneMatch="*")
    assert _code(err.value) == "PreconditionFailed"


def test_listing_v2_pages_prefixes_and_encoding(s3, bucket):
    keys = [f"logs/2024/{i:03d}.txt" for i in range(25)] + ["logs/readme", "top", "a b+c/d", "zzz/é"]
    for key in keys:
        s3.put_object(Bucket=bucket, Key=key, Body=key.encode())
    everything = [o["Key"] for page in s3.get_paginator("list_objects_v2").paginate(
        Bucket=bucket, PaginationConfig={"PageSize": 7}) for o in page.get("Contents", [])]
    assert everything == sorted(keys, key=lambda k: k.encode())
    top = s3.list_objects_v2(Bucket=bucket, Delimiter="/")
    assert [p["Prefix"] for p in top["CommonPrefixes"]] == ["a b+c/", "logs/", "zzz/"]
    assert [o["Key"] for o in top["Contents"]] == ["top"]
    nested = s3.list_objects_v2(Bucket=bucket, Prefix="logs/", Delimiter="/")
    assert [p["Prefix"] for p in nested["CommonPrefixes"]] == ["logs/2024/"]
    assert [o["Key"] for o in nested["Contents"]] == ["logs/readme"]
    pages = list(s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Delimiter="/",
                                                               PaginationConfig={"PageSize": 1}))
    assert [p["Prefix"] for page in pages for p in page.get("CommonPrefixes", [])] == ["a b+c/", "logs/", "zzz/"]
    after = s3.list_objects_v2(Bucket=bucket, StartAfter="logs/2024/020.txt", MaxKeys=3)
    assert [o["Key"] for o in after["Contents"]] == [f"logs/2024/{i:03d}.txt" for i in (21, 22, 23)]
    assert after["IsTruncated"] and after["KeyCount"] == 3
    encoded = s3.list_objects_v2(Bucket=bucket, Prefix="a b", EncodingType="url")
    assert [o["Key"] for o in encoded["Contents"]] == ["a+b%2Bc/d"]  # asked for explicitly: left encoded
    v1 = [o["Key"] for page in s3.get_paginator("list_objects").paginate(
        Bucket=bucket, PaginationConfig={"PageSize": 10}) for o in page.get("Contents", [])]
    assert v1 == everything


def test_copy_and_delete_objects(s3, bucket):
    s3.put_object(Bucket=bucket, Key="src", Body=b"copy me", Metadata={"m": "1"}, ContentType="text/x")
    result = s3.copy_object(Bucket=bucket, Key="dst/copy", CopySource={"Bucket": bucket, "Key": "src"})
    assert result["CopyObjectResult"]["ETag"] == s3.head_object(Bucket=bucket, Key="src")["ETag"]
    copied = s3.get_object(Bucket=bucket, Key="dst/copy")
    assert copied["Body"].read() == b"copy me" and copied["Metadata"] == {"m": "1"}
    assert copied["ContentType"] == "text/x"
    s3.copy_object(Bucket=bucket, Key="src", CopySource=f"{bucket}/src", MetadataDirective="REPLACE",
                   Metadata={"m": "2"})
    assert s3.head_object(Bucket=bucket, Key="src")["Metadata"] == {"m": "2"}
    with pytest.raises(ClientError) as err:
        s3.copy_object(Bucket=bucket, Key="src", CopySource=f"{bucket}/src")
    assert _code(err.value) == "InvalidRequest"
    sha = s3.copy_object(Bucket=bucket, Key="dst/sha", CopySource=f"{bucket}/src", ChecksumAlgorithm="SHA256")
    expected = base64.b64encode(hashlib.sha256(b"copy me").digest()).decode()
    assert sha["CopyObjectResult"]["ChecksumSHA256"] == expected
    assert sha["CopyObjectResult"]["ChecksumType"] == "FULL_OBJECT"
    head = s3.head_object(Bucket=bucket, Key="dst/sha", ChecksumMode="ENABLED")
    assert head["ChecksumSHA256"] == expected and "ChecksumCRC64NVME" not in head
    s3.delete_object(Bucket=bucket, Key="dst/sha")
    s3.delete_object(Bucket=bucket, Key="src")
    assert s3.get_object(Bucket=bucket, Key="dst/copy")["Body"].read() == b"copy me"  # copies own their bytes
    result = s3.delete_objects(Bucket=bucket, Delete={"Objects": [{"Key": "dst/copy"}, {"Key": "never"}]})
    assert sorted(d["Key"] for d in result["Deleted"]) == ["dst/copy", "never"]
    assert s3.list_objects_v2(Bucket=bucket)["KeyCount"] == 0


def test_multipart_upload_api(s3, bucket):
    mib = 1024 * 1024
    created = s3.create_multipart_upload(Bucket=bucket, Key="mp", ChecksumAlgorithm="SHA256",
                                         Metadata={"k": "v"})
    upload = created["UploadId"]
    assert created["ChecksumAlgorithm"] == "SHA256"
    parts = []
    for number, fill in ((1, b"a"), (2, b"b"), (3, b"c")):
        body = fill * (5 * mib if number < 3 else 1000)
        part = s3.upload_part(Bucket=bucket, Key="mp", UploadId=upload, PartNumber=number, Body=body,
                              ChecksumAlgorithm="SHA256")
        parts.append({"PartNumber": number, "ETag": part["ETag"], "ChecksumSHA256": part["ChecksumSHA256"]})
    listed = s3.list_parts(Bucket=bucket, Key="mp", UploadId=upload)
    assert [p["PartNumber"] for p in listed["Parts"]] == [1, 2, 3]
    assert upload in [u["UploadId"] for u in s3.list_multipart_uploads(Bucket=bucket)["Uploads"]]
    with pytest.raises(ClientError) as err:
        s3.complete_multipart_upload(Bucket=bucket, Key="mp", UploadId=upload,
                                     MultipartUpload={"Parts": [parts[1], parts[0]]})
    assert _code(err.value) == "InvalidPartOrder"
    with pytest.raises(ClientError) as err:
        s3.complete_multipart_upload(Bucket=bucket, Key="mp", UploadId=upload,
                                     MultipartUpload={"Parts": [{**parts[0], "ETag": '"00"'}]})
    assert _code(err.value) == "InvalidPart"
    done = s3.complete_multipart_upload(Bucket=bucket, Key="mp", UploadId=upload, MultipartUpload={"Parts": parts})
    assert done["ETag"].endswith('-3"') and done["ChecksumSHA256"].endswith("-3")
    got = s3.get_object(Bucket=bucket, Key="mp", ChecksumMode="ENABLED")
    data = got["Body"].read()
    assert data == b"a" * 5 * mib + b"b" * 5 * mib + b"c" * 1000 and got["Metadata"] == {"k": "v"}
    assert got["PartsCount"] == 3 and got["ETag"] == done["ETag"]
    second = s3.get_object(Bucket=bucket, Key="mp", PartNumber=2)
    assert second["Body"].read() == b"b" * 5 * mib
    assert s3.get_object(Bucket=bucket, Key="mp", Range=f"bytes={5 * mib - 2}-{5 * mib + 1}")["Body"].read() \
        == b"aabb"
    # UploadPartCopy, and parts too small to complete
    copy_upload = s3.create_multipart_upload(Bucket=bucket, Key="mp2")["UploadId"]
    first = s3.upload_part_copy(Bucket=bucket, Key="mp2", UploadId=copy_upload, PartNumber=1,
                                CopySource={"Bucket": bucket, "Key": "mp"}, CopySourceRange="bytes=0-9")
    second = s3.upload_part(Bucket=bucket, Key="mp2", UploadId=copy_upload, PartNumber=2, Body=b"tail")
    with pytest.raises(ClientError) as err:
        s3.complete_multipart_upload(Bucket=bucket, Key="mp2", UploadId=copy_upload, MultipartUpload={"Parts": [
            {"PartNumber": 1, "ETag": first["CopyPartResult"]["ETag"]}, {"PartNumber": 2, "ETag": second["ETag"]}]})
    assert _code(err.value) == "EntityTooSmall"
    s3.abort_multipart_upload(Bucket=bucket, Key="mp2", UploadId=copy_upload)
    with pytest.raises(ClientError) as err:  # CRC64NVME is a full-object checksum only
        s3.create_multipart_upload(Bucket=bucket, Key="mp3", ChecksumAlgorithm="CRC64NVME", ChecksumType="COMPOSITE")
    assert _code(err.value) == "InvalidRequest"
    assert s3.create_multipart_upload(Bucket=bucket, Key="mp3", ChecksumAlgorithm="CRC64NVME",
                                      ChecksumType="FULL_OBJECT")["ChecksumType"] == "FULL_OBJECT"
    with pytest.raises(s3.exceptions.NoSuchUpload):
        s3.list_parts(Bucket=bucket, Key="mp2", UploadId=copy_upload)


def test_presigned_get_and_put_with_expiry(server, bucket):
    # boto3 presigns S3 URLs with the legacy SigV2 unless asked for SigV4, as AWS recommends
    s3 = server.client("s3", signature_version="s3v4")
    http = urllib3.PoolManager()
    put_url = s3.generate_presigned_url("put_object", Params={"Bucket": bucket, "Key": "pre/signed"}, ExpiresIn=60)
    assert http.request("PUT", put_url, body=b"via presigned put").status == 200
    get_url = s3.generate_presigned_url("get_object", Params={"Bucket": bucket, "Key": "pre/signed"}, ExpiresIn=60)
    response = http.request("GET", get_url)
    assert response.status == 200 and response.data == b"via presigned put"
    expired = s3.generate_presigned_url("get_object", Params={"Bucket": bucket, "Key": "pre/signed"}, ExpiresIn=1)
    tampered = get_url.replace("pre/signed", "pre/other")
    import time

    time.sleep(2)
    response = http.request("GET", expired)
    assert response.status == 403 and b"<Code>AccessDenied</Code>" in response.data
    response = http.request("GET", tampered)
    assert response.status == 403 and b"<Code>SignatureDoesNotMatch</Code>" in response.data


def test_keys_never_escape_the_storage_root(server, s3, bucket):
    root = server.data_dir.resolve()
    before = {p for p in root.parent.rglob("*")}
    hostile = ["../../escape.txt", "..%2F..%2Fescape2", "/absolute/key", "a/../../../b", "./.", "..", "~/x",
               "%2e%2e/%2e%2e/enc", "dir/" + "é" * 300]
    for key in hostile:
        s3.put_object(Bucket=bucket, Key=key, Body=key.encode())
        assert s3.get_object(Bucket=bucket, Key=key)["Body"].read() == key.encode()
    listed = {o["Key"] for o in s3.list_objects_v2(Bucket=bucket)["Contents"]}
    assert listed == set(hostile)
    created = {p for p in root.parent.rglob("*")} - before
    assert all(root in p.resolve().parents for p in created), created
    with pytest.raises(ClientError) as err:
        s3.put_object(Bucket=bucket, Key="k" * 1025, Body=b"x")
    assert _code(err.value) == "KeyTooLongError"
    # a raw path with dot segments is a key in the addressed bucket, never another bucket
    status, _, _ = _raw_get(server, f"/{bucket}/../{bucket}-other/x")
    assert status == 404
    http = urllib3.PoolManager()
    url = server.client("s3", signature_version="s3v4").generate_presigned_url(
        "put_object", Params={"Bucket": bucket, "Key": "nul"}, ExpiresIn=60)
    assert http.request("PUT", url.replace("/nul?", "/nul%00x?"), body=b"x").status in (400, 403)


def _raw_get(server, path):
    from rawclient import send

    return send(server.endpoint, "GET", path, service="s3", credentials=server.credentials(),
                headers={"x-amz-content-sha256": "UNSIGNED-PAYLOAD"})


def test_cross_account_access_is_denied(s3, other, bucket):
    s3.put_object(Bucket=bucket, Key="secret", Body=b"mine")
    for call in (lambda: other.get_object(Bucket=bucket, Key="secret"),
                 lambda: other.put_object(Bucket=bucket, Key="x", Body=b"x"),
                 lambda: other.list_objects_v2(Bucket=bucket),
                 lambda: other.delete_object(Bucket=bucket, Key="secret"),
                 lambda: other.delete_bucket(Bucket=bucket),
                 lambda: other.copy_object(Bucket=bucket, Key="y", CopySource=f"{bucket}/secret")):
        with pytest.raises(ClientError) as err:
            call()
        assert _code(err.value) == "AccessDenied"
    mine = f"mine-{uuid.uuid4().hex[:8]}"
    other.create_bucket(Bucket=mine)
    with pytest.raises(ClientError) as err:
        other.copy_object(Bucket=mine, Key="stolen", CopySource=f"{bucket}/secret")
    assert _code(err.value) == "AccessDenied"
    with pytest.raises(ClientError) as err:
        other.create_bucket(Bucket=bucket)
    assert _code(err.value) == "BucketAlreadyExists"
    assert bucket not in [b["Name"] for b in other.list_buckets()["Buckets"]]
    assert s3.get_object(Bucket=bucket, Key="secret")["Body"].read() == b"mine"


def test_virtual_hosted_style(server, bucket):
    credentials = server.credentials()
    client = boto3.client("s3", endpoint_url=f"http://localhost:{server.port}", region_name="us-east-1",
                          config=Config(s3={"addressing_style": "virtual"}), **credentials)
    # <bucket>.localhost resolves to the loopback address on this platform's resolver or not at all;
    # send the Host header explicitly to stay independent of it.
    client.meta.events.register("before-send.s3", _to_loopback)
    client.put_object(Bucket=bucket, Key="v/host", Body=b"virtual")
    assert client.get_object(Bucket=bucket, Key="v/host")["Body"].read() == b"virtual"
    assert [o["Key"] for o in client.list_objects_v2(Bucket=bucket)["Contents"]] == ["v/host"]
    fresh = f"virt-{uuid.uuid4().hex[:8]}"
    client.create_bucket(Bucket=fresh)  # "PUT /" on the host of a bucket that does not exist yet
    client.put_object(Bucket=fresh, Key=bucket, Body=b"a key named like a bucket")
    assert client.get_object(Bucket=fresh, Key=bucket)["Body"].read() == b"a key named like a bucket"
    client.delete_object(Bucket=fresh, Key=bucket)
    client.delete_bucket(Bucket=fresh)


def test_a_virtual_host_never_reaches_another_bucket(server, s3, bucket):
    """A typo in a virtual-hosted bucket name is NoSuchBucket, even when the key starts with a real bucket."""
    s3.put_object(Bucket=bucket, Key="app.txt", Body=b"kept")
    client = boto3.client("s3", endpoint_url=f"http://localhost:{server.port}", region_name="us-east-1",
                          config=Config(s3={"addressing_style": "virtual"}), **server.credentials())
    client.meta.events.register("before-send.s3", _to_loopback)
    for call in (lambda: client.put_object(Bucket="no-such-bucket-here", Key=f"{bucket}/app.txt", Body=b"x"),
                 lambda: client.get_object(Bucket="no-such-bucket-here", Key=f"{bucket}/app.txt"),
                 lambda: client.delete_object(Bucket="no-such-bucket-here", Key=f"{bucket}/app.txt")):
        with pytest.raises(ClientError) as err:
            call()
        assert err.value.response["Error"]["Code"] == "NoSuchBucket"
    assert s3.get_object(Bucket=bucket, Key="app.txt")["Body"].read() == b"kept"


def test_path_style_on_the_s3_localhost_host(server):
    """"s3" can never be a bucket name: s3.localhost is a path-style endpoint, as s3.amazonaws.com is."""
    host = "s3.localhost"
    client = boto3.client("s3", endpoint_url=f"http://{host}:{server.port}", region_name="us-east-1",
                          config=Config(s3={"addressing_style": "path"}), **server.credentials())
    client.meta.events.register("before-send.s3", _to_loopback)
    name = f"path-{uuid.uuid4().hex[:8]}"
    client.create_bucket(Bucket=name)
    assert name in [b["Name"] for b in client.list_buckets()["Buckets"]]
    client.put_object(Bucket=name, Key="dir/obj", Body=b"path style")
    assert client.get_object(Bucket=name, Key="dir/obj")["Body"].read() == b"path style"
    assert client.head_bucket(Bucket=name)["ResponseMetadata"]["HTTPStatusCode"] == 200
    assert [o["Key"] for o in client.list_objects_v2(Bucket=name)["Contents"]] == ["dir/obj"]
    with pytest.raises(client.exceptions.NoSuchKey):
        client.get_object(Bucket=name, Key="missing")
    client.delete_object(Bucket=name, Key="dir/obj")
    client.delete_bucket(Bucket=name)


def _to_loopback(request, **_):
    from urllib.parse import urlsplit, urlunsplit

    parts = urlsplit(request.url)
    request.headers["Host"] = parts.netloc
    request.url = urlunsplit(parts._replace(netloc=f"127.0.0.1:{parts.port}"))


def test_list_multipart_uploads_pages_and_prefixes(s3, bucket):
    keys = ["a/1", "a/2", "b", "b", "b", "c/x/y", "d"]
    created = [(key, s3.create_multipart_upload(Bucket=bucket, Key=key)["UploadId"]) for key in keys]
    pages = list(s3.get_paginator("list_multipart_uploads").paginate(Bucket=bucket,
                                                                      PaginationConfig={"PageSize": 2}))
    listed = [(u["Key"], u["UploadId"]) for page in pages for u in page.get("Uploads", [])]
    assert sorted(listed) == sorted(created) and [k for k, _ in listed] == sorted(keys)
    assert [u for k, u in listed if k == "b"] == [u for k, u in created if k == "b"]  # by initiation
    first = s3.list_multipart_uploads(Bucket=bucket, MaxUploads=3)
    assert first["IsTruncated"] and first["NextKeyMarker"] == "b" and len(first["Uploads"]) == 3
    rest = s3.list_multipart_uploads(Bucket=bucket, KeyMarker=first["NextKeyMarker"],
                                     UploadIdMarker=first["NextUploadIdMarker"])
    assert [u["Key"] for u in rest["Uploads"]] == ["b", "b", "c/x/y", "d"] and not rest["IsTruncated"]
    assert [u["Key"] for u in s3.list_multipart_uploads(Bucket=bucket, KeyMarker="b")["Uploads"]] == ["c/x/y", "d"]
    grouped = s3.list_multipart_uploads(Bucket=bucket, Delimiter="/")
    assert [p["Prefix"] for p in grouped["CommonPrefixes"]] == ["a/", "c/"]
    assert [u["Key"] for u in grouped["Uploads"]] == ["b", "b", "b", "d"]
    paged = list(s3.get_paginator("list_multipart_uploads").paginate(Bucket=bucket, Delimiter="/",
                                                                     PaginationConfig={"PageSize": 1}))
    assert [p["Prefix"] for page in paged for p in page.get("CommonPrefixes", [])] == ["a/", "c/"]
    assert [u["Key"] for page in paged for u in page.get("Uploads", [])] == ["b", "b", "b", "d"]
    nested = s3.list_multipart_uploads(Bucket=bucket, Prefix="c/", Delimiter="/")
    assert [p["Prefix"] for p in nested["CommonPrefixes"]] == ["c/x/"] and "Uploads" not in nested
    for key, upload_id in created:
        s3.abort_multipart_upload(Bucket=bucket, Key=key, UploadId=upload_id)


def test_listing_sizes_must_not_be_negative_and_zero_lists_nothing(s3, bucket):
    upload = s3.create_multipart_upload(Bucket=bucket, Key="k")["UploadId"]
    s3.upload_part(Bucket=bucket, Key="k", UploadId=upload, PartNumber=1, Body=b"x")
    for call in (lambda: s3.list_parts(Bucket=bucket, Key="k", UploadId=upload, MaxParts=-1),
                 lambda: s3.list_multipart_uploads(Bucket=bucket, MaxUploads=-1)):
        with pytest.raises(ClientError) as refused:
            call()
        assert refused.value.response["Error"]["Code"] == "InvalidArgument"
    empty = s3.list_parts(Bucket=bucket, Key="k", UploadId=upload, MaxParts=0)
    assert "Parts" not in empty and empty["MaxParts"] == 0
    s3.abort_multipart_upload(Bucket=bucket, Key="k", UploadId=upload)


def test_upload_part_copy_accepts_only_ranges_inside_the_source(s3, bucket):
    s3.put_object(Bucket=bucket, Key="src", Body=b"0123456789")
    upload = s3.create_multipart_upload(Bucket=bucket, Key="dst")["UploadId"]
    source = {"Bucket": bucket, "Key": "src"}
    for bad in ("bytes=-5", "bytes=5-", "bytes=0-10", "bytes=4-3", "bytes=a-b", "0-3"):
        with pytest.raises(ClientError) as err:
            s3.upload_part_copy(Bucket=bucket, Key="dst", UploadId=upload, PartNumber=1, CopySource=source,
                                CopySourceRange=bad)
        assert _code(err.value) == "InvalidArgument", bad
        assert err.value.response["Error"]["Message"] == "Range specified is not valid for source object of size: 10"
    good = s3.upload_part_copy(Bucket=bucket, Key="dst", UploadId=upload, PartNumber=1, CopySource=source,
                               CopySourceRange="bytes=2-9")
    done = s3.complete_multipart_upload(Bucket=bucket, Key="dst", UploadId=upload, MultipartUpload={
        "Parts": [{"PartNumber": 1, "ETag": good["CopyPartResult"]["ETag"]}]})
    assert s3.get_object(Bucket=bucket, Key="dst")["Body"].read() == b"23456789" and done["ETag"].endswith('-1"')


def test_range_with_part_number_is_refused(s3, bucket):
    s3.put_object(Bucket=bucket, Key="k", Body=b"data")
    with pytest.raises(ClientError) as err:
        s3.get_object(Bucket=bucket, Key="k", Range="bytes=0-1", PartNumber=1)
    assert _code(err.value) == "InvalidRequest"
    assert err.value.response["Error"]["Message"] == "Cannot specify both Range header and partNumber query parameter"
    with pytest.raises(ClientError) as err:
        s3.head_object(Bucket=bucket, Key="k", Range="bytes=0-1", PartNumber=1)
    assert err.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400


def test_metadata_limit_and_storage_class(s3, bucket):
    with pytest.raises(ClientError) as err:
        s3.put_object(Bucket=bucket, Key="big", Body=b"x", Metadata={"k": "v" * 2048})
    assert _code(err.value) == "MetadataTooLarge"
    with pytest.raises(ClientError) as err:
        s3.create_multipart_upload(Bucket=bucket, Key="big", Metadata={"key": "v" * 2046})  # keys count too
    assert _code(err.value) == "MetadataTooLarge"
    s3.put_object(Bucket=bucket, Key="fits", Body=b"x", Metadata={"k": "v" * 2047})
    s3.put_object(Bucket=bucket, Key="ia", Body=b"x", StorageClass="STANDARD_IA")
    s3.put_object(Bucket=bucket, Key="std", Body=b"x", StorageClass="STANDARD")
    assert s3.head_object(Bucket=bucket, Key="ia")["StorageClass"] == "STANDARD_IA"
    assert s3.get_object(Bucket=bucket, Key="ia")["StorageClass"] == "STANDARD_IA"
    assert "x-amz-storage-class" not in s3.head_object(Bucket=bucket, Key="std")["ResponseMetadata"]["HTTPHeaders"]
    listed = {o["Key"]: o["StorageClass"] for o in s3.list_objects_v2(Bucket=bucket)["Contents"]}
    assert listed == {"fits": "STANDARD", "ia": "STANDARD_IA", "std": "STANDARD"}
    assert {o["Key"]: o["StorageClass"] for o in s3.list_objects(Bucket=bucket)["Contents"]} == listed
    s3.copy_object(Bucket=bucket, Key="ia", CopySource=f"{bucket}/ia", StorageClass="GLACIER_IR")  # a change
    assert s3.head_object(Bucket=bucket, Key="ia")["StorageClass"] == "GLACIER_IR"
    s3.copy_object(Bucket=bucket, Key="copied", CopySource=f"{bucket}/ia")
    assert "StorageClass" not in s3.head_object(Bucket=bucket, Key="copied")  # copies are STANDARD unless asked
    with pytest.raises(ClientError) as err:
        s3.copy_object(Bucket=bucket, Key="copied", CopySource=f"{bucket}/ia", MetadataDirective="REPLACE",
                       Metadata={"k": "v" * 2048})
    assert _code(err.value) == "MetadataTooLarge"
    upload = s3.create_multipart_upload(Bucket=bucket, Key="mp", StorageClass="ONEZONE_IA")["UploadId"]
    assert s3.list_multipart_uploads(Bucket=bucket)["Uploads"][0]["StorageClass"] == "ONEZONE_IA"
    assert s3.list_parts(Bucket=bucket, Key="mp", UploadId=upload)["StorageClass"] == "ONEZONE_IA"
    etag = s3.upload_part(Bucket=bucket, Key="mp", UploadId=upload, PartNumber=1, Body=b"part")["ETag"]
    s3.complete_multipart_upload(Bucket=bucket, Key="mp", UploadId=upload,
                                 MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": etag}]})
    assert s3.head_object(Bucket=bucket, Key="mp")["StorageClass"] == "ONEZONE_IA"
    for unreadable in ("GLACIER", "DEEP_ARCHIVE", "EXPRESS_ONEZONE"):  # would need a restore, or another bucket kind
        with pytest.raises(ClientError) as err:
            s3.put_object(Bucket=bucket, Key="archived", Body=b"x", StorageClass=unreadable)
        assert _code(err.value) == "InvalidStorageClass"


def test_a_copy_of_a_multipart_object_is_one_object(s3, bucket):
    """The source and destination ETag are identical only for a non-multipart object (the model's words)."""
    first, last = b"a" * (5 * 1024 * 1024), b"tail"
    upload = s3.create_multipart_upload(Bucket=bucket, Key="multi")["UploadId"]
    parts = [{"PartNumber": n, "ETag": s3.upload_part(Bucket=bucket, Key="multi", UploadId=upload, PartNumber=n,
                                                      Body=body)["ETag"]} for n, body in ((1, first), (2, last))]
    s3.complete_multipart_upload(Bucket=bucket, Key="multi", UploadId=upload, MultipartUpload={"Parts": parts})
    assert s3.head_object(Bucket=bucket, Key="multi")["ETag"].endswith('-2"')
    copied = s3.copy_object(Bucket=bucket, Key="single", CopySource=f"{bucket}/multi")["CopyObjectResult"]["ETag"]
    assert copied == f'"{hashlib.md5(first + last).hexdigest()}"'
    assert s3.head_object(Bucket=bucket, Key="single")["ETag"] == copied
    s3.put_object(Bucket=bucket, Key="plain", Body=b"x")
    plain = s3.copy_object(Bucket=bucket, Key="plain-copy", CopySource=f"{bucket}/plain")["CopyObjectResult"]["ETag"]
    assert plain == s3.head_object(Bucket=bucket, Key="plain")["ETag"]


def test_multipart_upload_gets_the_default_full_object_checksum(s3, bucket):
    from botocore.httpchecksum import CrtCrc64NvmeChecksum

    first, tail = b"p" * (5 * 1024 * 1024), b"0123456789"
    s3.put_object(Bucket=bucket, Key="src", Body=tail)
    upload = s3.create_multipart_upload(Bucket=bucket, Key="mp")["UploadId"]  # no ChecksumAlgorithm
    one = s3.upload_part(Bucket=bucket, Key="mp", UploadId=upload, PartNumber=1, Body=first,
                         ChecksumAlgorithm="CRC32")
    assert "ChecksumCRC32" in one and "ChecksumCRC64NVME" not in one  # what the client sent
    two = s3.upload_part_copy(Bucket=bucket, Key="mp", UploadId=upload, PartNumber=2,
                              CopySource={"Bucket": bucket, "Key": "src"}, CopySourceRange="bytes=2-9")
    done = s3.complete_multipart_upload(Bucket=bucket, Key="mp", UploadId=upload, MultipartUpload={"Parts": [
        {"PartNumber": 1, "ETag": one["ETag"]}, {"PartNumber": 2, "ETag": two["CopyPartResult"]["ETag"]}]})
    whole = CrtCrc64NvmeChecksum()
    whole.update(first + tail[2:])
    assert done["ChecksumCRC64NVME"] == whole.b64digest() and done["ChecksumType"] == "FULL_OBJECT"
    got = s3.get_object(Bucket=bucket, Key="mp", ChecksumMode="ENABLED")  # botocore verifies it as it reads
    assert got["ChecksumCRC64NVME"] == whole.b64digest() and got["Body"].read() == first + tail[2:]
