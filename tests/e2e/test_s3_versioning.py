"""S3 versioning through boto3 and the AWS CLI: status, version ids, delete markers, suspension, listings."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from botocore.exceptions import ClientError

from jobforge.testing_server import ServerProcess

AWS = str(Path(sys.executable).with_name("aws"))
MIB = 1024 * 1024


def _code(err: ClientError) -> str:
    return err.response["Error"]["Code"]


def _status(err: ClientError) -> int:
    return err.response["ResponseMetadata"]["HTTPStatusCode"]


def _headers(err: ClientError) -> dict:
    return err.response["ResponseMetadata"]["HTTPHeaders"]


@pytest.fixture(scope="module")
def s3(server):
    return server.client("s3")


@pytest.fixture
def bucket(s3):
    name = f"ver-{uuid.uuid4().hex[:12]}"
    s3.create_bucket(Bucket=name)
    return name


def _enable(s3, bucket, status="Enabled"):
    s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": status})


def _versions(s3, bucket, **kwargs) -> set[tuple[str, str, bool, bool]]:
    """(key, version id, is latest, is a delete marker) of every version listed."""
    listed = s3.list_object_versions(Bucket=bucket, **kwargs)
    return {(v["Key"], v["VersionId"], v["IsLatest"], False) for v in listed.get("Versions", [])} \
        | {(m["Key"], m["VersionId"], m["IsLatest"], True) for m in listed.get("DeleteMarkers", [])}


def test_versioning_status_and_mfa_delete_refused(s3, bucket):
    assert "Status" not in s3.get_bucket_versioning(Bucket=bucket)
    _enable(s3, bucket)
    assert s3.get_bucket_versioning(Bucket=bucket)["Status"] == "Enabled"
    _enable(s3, bucket, "Suspended")
    assert s3.get_bucket_versioning(Bucket=bucket)["Status"] == "Suspended"
    with pytest.raises(ClientError) as err:
        s3.put_bucket_versioning(Bucket=bucket, MFA="arn:aws:iam::123456789012:mfa/root 123456",
                                 VersioningConfiguration={"Status": "Enabled", "MFADelete": "Enabled"})
    assert _code(err.value) == "NotImplemented" and _status(err.value) == 501
    assert s3.get_bucket_versioning(Bucket=bucket)["Status"] == "Suspended"
    with pytest.raises(ClientError) as err:
        s3.get_bucket_versioning(Bucket=f"missing-{uuid.uuid4().hex[:8]}")
    assert _code(err.value) == "NoSuchBucket"


def test_versions_delete_markers_and_reads_by_version(s3, bucket):
    _enable(s3, bucket)
    first = s3.put_object(Bucket=bucket, Key="model.bin", Body=b"weights v1")
    second = s3.put_object(Bucket=bucket, Key="model.bin", Body=b"weights v2")
    v1, v2 = first["VersionId"], second["VersionId"]
    assert v1 != v2 and "null" not in (v1, v2)
    latest = s3.get_object(Bucket=bucket, Key="model.bin")
    assert latest["Body"].read() == b"weights v2" and latest["VersionId"] == v2
    old = s3.get_object(Bucket=bucket, Key="model.bin", VersionId=v1)
    assert old["Body"].read() == b"weights v1" and old["VersionId"] == v1 and old["ETag"] == first["ETag"]
    assert s3.head_object(Bucket=bucket, Key="model.bin", VersionId=v1)["ContentLength"] == len(b"weights v1")
    attributes = s3.get_object_attributes(Bucket=bucket, Key="model.bin", VersionId=v1,
                                          ObjectAttributes=["ObjectSize", "ETag"])
    assert attributes["VersionId"] == v1 and attributes["ObjectSize"] == len(b"weights v1")

    deleted = s3.delete_object(Bucket=bucket, Key="model.bin")
    marker = deleted["VersionId"]
    assert deleted["DeleteMarker"] is True and marker not in (v1, v2)
    with pytest.raises(ClientError) as err:
        s3.get_object(Bucket=bucket, Key="model.bin")
    assert _code(err.value) == "NoSuchKey"
    assert _headers(err.value)["x-amz-delete-marker"] == "true"
    assert _headers(err.value)["x-amz-version-id"] == marker
    with pytest.raises(ClientError) as err:
        s3.head_object(Bucket=bucket, Key="model.bin")
    assert _status(err.value) == 404 and _headers(err.value)["x-amz-delete-marker"] == "true"
    for read in (s3.get_object, s3.head_object):
        with pytest.raises(ClientError) as err:
            read(Bucket=bucket, Key="model.bin", VersionId=marker)
        assert _status(err.value) == 405 and _headers(err.value)["x-amz-delete-marker"] == "true"
        assert "last-modified" in _headers(err.value)
    assert _code(err.value) == "405"  # a HEAD error has no body
    assert s3.get_object(Bucket=bucket, Key="model.bin", VersionId=v2)["Body"].read() == b"weights v2"
    assert "Contents" not in s3.list_objects_v2(Bucket=bucket)
    listed = s3.list_object_versions(Bucket=bucket)
    assert [v["VersionId"] for v in listed["Versions"]] == [v2, v1]  # newest first
    assert _versions(s3, bucket) == {("model.bin", marker, True, True), ("model.bin", v2, False, False),
                                     ("model.bin", v1, False, False)}

    # deleting the delete marker by its version id brings the key back
    undone = s3.delete_object(Bucket=bucket, Key="model.bin", VersionId=marker)
    assert undone["DeleteMarker"] is True and undone["VersionId"] == marker
    assert s3.get_object(Bucket=bucket, Key="model.bin")["Body"].read() == b"weights v2"
    # deleting the latest version for good makes the one before it the latest
    gone = s3.delete_object(Bucket=bucket, Key="model.bin", VersionId=v2)
    assert gone["VersionId"] == v2 and "DeleteMarker" not in gone
    assert s3.get_object(Bucket=bucket, Key="model.bin")["VersionId"] == v1
    assert [o["Key"] for o in s3.list_objects_v2(Bucket=bucket)["Contents"]] == ["model.bin"]

    with pytest.raises(ClientError) as err:
        s3.get_object(Bucket=bucket, Key="model.bin", VersionId=v2)
    assert _code(err.value) == "NoSuchVersion" and _status(err.value) == 404
    with pytest.raises(ClientError) as err:
        s3.get_object(Bucket=bucket, Key="model.bin", VersionId="not-a-version")
    assert _code(err.value) == "InvalidArgument" and _status(err.value) == 400
    # deleting a version that is not there is no error, as in S3
    assert s3.delete_object(Bucket=bucket, Key="model.bin", VersionId=v2)["VersionId"] == v2
    assert s3.get_object(Bucket=bucket, Key="model.bin")["VersionId"] == v1


def test_never_versioned_bucket_lists_null_versions(s3, bucket):
    put = s3.put_object(Bucket=bucket, Key="a", Body=b"1")
    assert "VersionId" not in put and "VersionId" not in s3.get_object(Bucket=bucket, Key="a")
    s3.put_object(Bucket=bucket, Key="a", Body=b"2")
    listed = s3.list_object_versions(Bucket=bucket)
    assert [(v["Key"], v["VersionId"], v["IsLatest"]) for v in listed["Versions"]] == [("a", "null", True)]
    assert listed["Versions"][0]["ETag"] == s3.head_object(Bucket=bucket, Key="a")["ETag"]
    assert "DeleteMarkers" not in listed and listed["IsTruncated"] is False
    assert s3.get_object(Bucket=bucket, Key="a", VersionId="null")["Body"].read() == b"2"
    deleted = s3.delete_object(Bucket=bucket, Key="a")
    assert "DeleteMarker" not in deleted and "VersionId" not in deleted
    assert "Versions" not in s3.list_object_versions(Bucket=bucket)
    s3.delete_bucket(Bucket=bucket)


def test_suspended_versioning_overwrites_the_null_version(s3, bucket):
    s3.put_object(Bucket=bucket, Key="k", Body=b"before versioning")
    _enable(s3, bucket)
    assert s3.head_object(Bucket=bucket, Key="k")["VersionId"] == "null"
    kept = s3.put_object(Bucket=bucket, Key="k", Body=b"while enabled")["VersionId"]
    assert _versions(s3, bucket) == {("k", kept, True, False), ("k", "null", False, False)}
    _enable(s3, bucket, "Suspended")
    assert s3.put_object(Bucket=bucket, Key="k", Body=b"while suspended")["VersionId"] == "null"
    assert [v["VersionId"] for v in s3.list_object_versions(Bucket=bucket)["Versions"]] == ["null", kept]
    assert _versions(s3, bucket) == {("k", "null", True, False), ("k", kept, False, False)}
    assert s3.get_object(Bucket=bucket, Key="k", VersionId="null")["Body"].read() == b"while suspended"
    assert s3.put_object(Bucket=bucket, Key="k", Body=b"again")["VersionId"] == "null"
    assert len(_versions(s3, bucket)) == 2
    # a delete while suspended removes the null version and leaves a null delete marker
    deleted = s3.delete_object(Bucket=bucket, Key="k")
    assert deleted["DeleteMarker"] is True and deleted["VersionId"] == "null"
    assert _versions(s3, bucket) == {("k", "null", True, True), ("k", kept, False, False)}
    assert s3.get_object(Bucket=bucket, Key="k", VersionId=kept)["Body"].read() == b"while enabled"
    # versioning enabled again: new versions stack on top, the null delete marker stays below them
    _enable(s3, bucket)
    newer = s3.put_object(Bucket=bucket, Key="k", Body=b"re-enabled")["VersionId"]
    assert _versions(s3, bucket) == {("k", newer, True, False), ("k", "null", False, True),
                                     ("k", kept, False, False)}


def test_copy_tagging_and_multipart_by_version(s3, bucket):
    _enable(s3, bucket)
    v1 = s3.put_object(Bucket=bucket, Key="src", Body=b"first", Tagging="stage=raw")["VersionId"]
    v2 = s3.put_object(Bucket=bucket, Key="src", Body=b"second")["VersionId"]
    copied = s3.copy_object(Bucket=bucket, Key="dst", CopySource={"Bucket": bucket, "Key": "src", "VersionId": v1})
    assert copied["CopySourceVersionId"] == v1 and copied["VersionId"] not in (v1, v2)
    assert s3.get_object(Bucket=bucket, Key="dst")["Body"].read() == b"first"
    # restoring an old version by copying it over its own key
    restored = s3.copy_object(Bucket=bucket, Key="src", CopySource={"Bucket": bucket, "Key": "src", "VersionId": v1})
    assert restored["CopySourceVersionId"] == v1
    assert s3.get_object(Bucket=bucket, Key="src")["Body"].read() == b"first"

    tags = s3.get_object_tagging(Bucket=bucket, Key="src", VersionId=v1)
    assert tags["VersionId"] == v1 and tags["TagSet"] == [{"Key": "stage", "Value": "raw"}]
    tagged = s3.put_object_tagging(Bucket=bucket, Key="src", VersionId=v2,
                                   Tagging={"TagSet": [{"Key": "stage", "Value": "clean"}]})
    assert tagged["VersionId"] == v2
    assert s3.get_object_tagging(Bucket=bucket, Key="src", VersionId=v2)["TagSet"] == [
        {"Key": "stage", "Value": "clean"}]
    assert s3.get_object_tagging(Bucket=bucket, Key="src", VersionId=v1)["TagSet"] == [
        {"Key": "stage", "Value": "raw"}]
    assert s3.delete_object_tagging(Bucket=bucket, Key="src", VersionId=v2)["VersionId"] == v2
    assert s3.get_object_tagging(Bucket=bucket, Key="src", VersionId=v2)["TagSet"] == []

    marker = s3.delete_object(Bucket=bucket, Key="src")["VersionId"]
    with pytest.raises(ClientError) as err:
        s3.copy_object(Bucket=bucket, Key="dst", CopySource={"Bucket": bucket, "Key": "src", "VersionId": marker})
    assert _code(err.value) == "InvalidRequest"
    with pytest.raises(ClientError) as err:
        s3.copy_object(Bucket=bucket, Key="dst", CopySource={"Bucket": bucket, "Key": "src"})
    assert _code(err.value) == "NoSuchKey"
    with pytest.raises(ClientError) as err:
        s3.put_object_tagging(Bucket=bucket, Key="src", VersionId=marker, Tagging={"TagSet": []})
    assert _code(err.value) == "MethodNotAllowed"

    upload = s3.create_multipart_upload(Bucket=bucket, Key="big")["UploadId"]
    part = s3.upload_part_copy(Bucket=bucket, Key="big", UploadId=upload, PartNumber=1,
                               CopySource={"Bucket": bucket, "Key": "src", "VersionId": v2})
    assert part["CopySourceVersionId"] == v2
    parts = [{"PartNumber": 1, "ETag": part["CopyPartResult"]["ETag"]}]
    done = s3.complete_multipart_upload(Bucket=bucket, Key="big", UploadId=upload, MultipartUpload={"Parts": parts})
    assert done["VersionId"] and s3.head_object(Bucket=bucket, Key="big")["VersionId"] == done["VersionId"]
    again = s3.complete_multipart_upload(Bucket=bucket, Key="big", UploadId=upload, MultipartUpload={"Parts": parts})
    assert again["VersionId"] == done["VersionId"] and again["ETag"] == done["ETag"]
    assert len([v for v in _versions(s3, bucket) if v[0] == "big"]) == 1


def test_delete_objects_by_version(s3, bucket):
    _enable(s3, bucket)
    a1 = s3.put_object(Bucket=bucket, Key="a", Body=b"1")["VersionId"]
    b1 = s3.put_object(Bucket=bucket, Key="b", Body=b"1")["VersionId"]
    result = s3.delete_objects(Bucket=bucket, Delete={"Objects": [{"Key": "a"}, {"Key": "b", "VersionId": b1},
                                                                  {"Key": "c", "VersionId": "abc"}]})
    deleted = {d["Key"]: d for d in result["Deleted"]}
    assert deleted["a"]["DeleteMarker"] is True and deleted["a"]["DeleteMarkerVersionId"] not in (a1, None)
    assert deleted["b"]["VersionId"] == b1 and "DeleteMarker" not in deleted["b"]
    assert result["Errors"] == [{"Key": "c", "VersionId": "abc", "Code": "NoSuchVersion",
                                 "Message": "The specified version does not exist."}]
    marker = deleted["a"]["DeleteMarkerVersionId"]
    result = s3.delete_objects(Bucket=bucket, Delete={"Objects": [{"Key": "a", "VersionId": marker},
                                                                  {"Key": "a", "VersionId": a1}]})
    by_version = {d["VersionId"]: d for d in result["Deleted"]}
    assert by_version[marker]["DeleteMarker"] is True and by_version[marker]["DeleteMarkerVersionId"] == marker
    assert "DeleteMarker" not in by_version[a1]
    assert "Versions" not in s3.list_object_versions(Bucket=bucket)
    assert "DeleteMarkers" not in s3.list_object_versions(Bucket=bucket)


def test_a_bucket_with_versions_is_deleted_only_once_every_version_is_gone(s3, bucket):
    _enable(s3, bucket)
    s3.put_object(Bucket=bucket, Key="k", Body=b"1")
    s3.put_object(Bucket=bucket, Key="k", Body=b"2")
    s3.delete_object(Bucket=bucket, Key="k")
    assert "Contents" not in s3.list_objects_v2(Bucket=bucket)
    for _ in range(3):
        with pytest.raises(ClientError) as err:
            s3.delete_bucket(Bucket=bucket)
        assert _code(err.value) == "BucketNotEmpty"
        listed = s3.list_object_versions(Bucket=bucket)
        oldest = (listed.get("Versions") or listed.get("DeleteMarkers"))[-1]
        s3.delete_object(Bucket=bucket, Key="k", VersionId=oldest["VersionId"])
    s3.delete_bucket(Bucket=bucket)


def test_list_object_versions_pages_prefixes_and_encoding(s3, bucket):
    _enable(s3, bucket)
    expected = set()
    for key in ("a", "b/x", "b/y", "c d", "e"):
        ids = [s3.put_object(Bucket=bucket, Key=key, Body=str(n).encode())["VersionId"] for n in range(2)]
        expected |= {(key, ids[1], key != "e", False), (key, ids[0], False, False)}
    marker = s3.delete_object(Bucket=bucket, Key="e")["VersionId"]
    expected.add(("e", marker, True, True))
    assert _versions(s3, bucket) == expected

    # pages of three, through the key and version id markers S3 gives back
    seen, kwargs = [], {}
    while True:
        page = s3.list_object_versions(Bucket=bucket, MaxKeys=3, **kwargs)
        entries = page.get("Versions", []) + page.get("DeleteMarkers", [])
        assert len(entries) <= 3
        seen += [(e["Key"], e["VersionId"]) for e in entries]
        if not page["IsTruncated"]:
            assert "NextKeyMarker" not in page
            break
        kwargs = {"KeyMarker": page["NextKeyMarker"], "VersionIdMarker": page["NextVersionIdMarker"]}
    assert set(seen) == {(e[0], e[1]) for e in expected} and len(seen) == len(expected)
    paged = [item for page in s3.get_paginator("list_object_versions").paginate(
        Bucket=bucket, PaginationConfig={"PageSize": 4}) for item in page.get("Versions", [])]
    assert len(paged) == 10

    # a key marker alone starts after every version of that key
    after_b = s3.list_object_versions(Bucket=bucket, KeyMarker="b/y")
    assert {v["Key"] for v in after_b["Versions"]} == {"c d", "e"}
    grouped = s3.list_object_versions(Bucket=bucket, Delimiter="/")
    assert [p["Prefix"] for p in grouped["CommonPrefixes"]] == ["b/"]
    assert {v["Key"] for v in grouped["Versions"]} == {"a", "c d", "e"}
    inside = s3.list_object_versions(Bucket=bucket, Prefix="b/", Delimiter="/")
    assert {v["Key"] for v in inside["Versions"]} == {"b/x", "b/y"} and inside["Prefix"] == "b/"
    first = s3.list_object_versions(Bucket=bucket, Delimiter="/", MaxKeys=3)
    assert first["IsTruncated"] and first["NextKeyMarker"] == "b/" and "NextVersionIdMarker" not in first
    rest = s3.list_object_versions(Bucket=bucket, Delimiter="/", KeyMarker="b/")
    assert {v["Key"] for v in rest["Versions"]} == {"c d", "e"}
    encoded = s3.list_object_versions(Bucket=bucket, Prefix="c ", EncodingType="url")
    # botocore asks for url encoding itself and decodes it (the listings above); asked by the caller, it is
    # left to the caller
    assert [v["Key"] for v in encoded["Versions"]] == ["c+d", "c+d"] and encoded["Prefix"] == "c+"

    with pytest.raises(ClientError) as err:
        s3.list_object_versions(Bucket=bucket, VersionIdMarker=marker)
    assert _code(err.value) == "InvalidArgument"
    with pytest.raises(ClientError) as err:
        s3.list_object_versions(Bucket=bucket, KeyMarker="a", VersionIdMarker="no-such-version")
    assert _code(err.value) == "InvalidArgument"
    assert s3.list_object_versions(Bucket=bucket, MaxKeys=0)["IsTruncated"] is False


def _aws(server, *args):
    env = {key: value for key, value in os.environ.items() if not key.startswith("AWS_")}
    env.update(AWS_CONFIG_FILE=str(server.data_dir / "config"),
               AWS_SHARED_CREDENTIALS_FILE=str(server.data_dir / "credentials"))
    done = subprocess.run([AWS, *args, "--output", "json"], capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout) if done.stdout.strip() else {}


def test_versioning_through_the_aws_cli(server, s3, bucket):
    _aws(server, "s3api", "put-bucket-versioning", "--bucket", bucket,
         "--versioning-configuration", "Status=Enabled")
    assert _aws(server, "s3api", "get-bucket-versioning", "--bucket", bucket) == {"Status": "Enabled"}
    ids = [s3.put_object(Bucket=bucket, Key=f"data/{n % 2}", Body=b"x")["VersionId"] for n in range(4)]
    s3.delete_object(Bucket=bucket, Key="data/0")
    listed = _aws(server, "s3api", "list-object-versions", "--bucket", bucket, "--prefix", "data/")
    assert sorted(v["VersionId"] for v in listed["Versions"]) == sorted(ids)
    assert [m["Key"] for m in listed["DeleteMarkers"]] == ["data/0"] and listed["DeleteMarkers"][0]["IsLatest"]
    # the CLI pages on its own with the markers S3 gives back
    paged = _aws(server, "s3api", "list-object-versions", "--bucket", bucket, "--page-size", "1")
    assert len(paged["Versions"]) == 4 and len(paged["DeleteMarkers"]) == 1
    got = _aws(server, "s3api", "head-object", "--bucket", bucket, "--key", "data/1", "--version-id", ids[1])
    assert got["VersionId"] == ids[1]


def test_concurrent_writers_of_one_key_on_postgresql(tmp_path, postgres_url):
    """Writers racing for a key's latest version each get their own version, and exactly one is the latest."""
    server = ServerProcess(tmp_path / "data", extra_args=["--database-url", postgres_url]).start()
    try:
        s3 = server.client("s3", max_pool_connections=16)
        s3.create_bucket(Bucket="race")
        _enable(s3, "race")

        def write(n: int) -> str:
            return s3.put_object(Bucket="race", Key="k", Body=f"{n}".encode())["VersionId"]

        with ThreadPoolExecutor(8) as pool:
            written = list(pool.map(write, range(32)))
        listed = s3.list_object_versions(Bucket="race")["Versions"]
        assert sorted(v["VersionId"] for v in listed) == sorted(written) and len(set(written)) == 32
        assert [v["IsLatest"] for v in listed].count(True) == 1 and listed[0]["IsLatest"]
        assert s3.get_object(Bucket="race", Key="k")["VersionId"] == listed[0]["VersionId"]
        _enable(s3, "race", "Suspended")
        with ThreadPoolExecutor(8) as pool:
            assert set(pool.map(write, range(16))) == {"null"}
        listed = s3.list_object_versions(Bucket="race")["Versions"]
        assert [v["VersionId"] for v in listed].count("null") == 1 and listed[0]["VersionId"] == "null"
    finally:
        server.stop()
