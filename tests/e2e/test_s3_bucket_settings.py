"""S3 bucket-level features through boto3 and the AWS CLI: tagging, ListBuckets paging, CORS, policies,
lifecycle (expiry applied by the server's sweep), GetObjectAttributes, and fidelity details."""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import sys
import time
import uuid

import pytest
import urllib3
from botocore.exceptions import ClientError

from jobforge.testing_server import ServerProcess
from selftest_kind import SELFTEST_ENV


def _code(err: ClientError) -> str:
    return err.response["Error"]["Code"]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """A server that applies lifecycle rules every second, so expiry shows within a test."""
    srv = ServerProcess(tmp_path_factory.mktemp("server") / "data", env=SELFTEST_ENV,
                        extra_args=["--lifecycle-interval", "1"]).start()
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def s3(server):
    return server.client("s3")


@pytest.fixture
def bucket(s3):
    name = f"bs-{uuid.uuid4().hex[:12]}"
    s3.create_bucket(Bucket=name)
    return name


def test_bucket_tagging(s3, bucket):
    with pytest.raises(ClientError) as err:
        s3.get_bucket_tagging(Bucket=bucket)
    assert _code(err.value) == "NoSuchTagSet"
    s3.put_bucket_tagging(Bucket=bucket, Tagging={"TagSet": [{"Key": "team", "Value": "ml"},
                                                             {"Key": "cost", "Value": ""}]})
    assert sorted((t["Key"], t["Value"]) for t in s3.get_bucket_tagging(Bucket=bucket)["TagSet"]) == \
        [("cost", ""), ("team", "ml")]
    s3.put_bucket_tagging(Bucket=bucket, Tagging={"TagSet": [{"Key": "only", "Value": "1"}]})  # replaces the set
    assert s3.get_bucket_tagging(Bucket=bucket)["TagSet"] == [{"Key": "only", "Value": "1"}]
    for bad in ([{"Key": "aws:x", "Value": "1"}], [{"Key": "a", "Value": "1"}, {"Key": "a", "Value": "2"}],
                [{"Key": f"k{i}", "Value": "v"} for i in range(51)]):
        with pytest.raises(ClientError) as err:
            s3.put_bucket_tagging(Bucket=bucket, Tagging={"TagSet": bad})
        assert _code(err.value) == "InvalidTag"
    s3.delete_bucket_tagging(Bucket=bucket)
    with pytest.raises(ClientError) as err:
        s3.get_bucket_tagging(Bucket=bucket)
    assert _code(err.value) == "NoSuchTagSet"


def test_tags_and_settings_go_with_a_deleted_bucket(s3):
    name = f"gone-{uuid.uuid4().hex[:10]}"
    s3.create_bucket(Bucket=name, CreateBucketConfiguration={"Tags": [{"Key": "k", "Value": "v"}]})
    assert s3.get_bucket_tagging(Bucket=name)["TagSet"] == [{"Key": "k", "Value": "v"}]
    s3.put_bucket_cors(Bucket=name, CORSConfiguration={"CORSRules": [{"AllowedMethods": ["GET"],
                                                                      "AllowedOrigins": ["*"]}]})
    s3.delete_bucket(Bucket=name)
    s3.create_bucket(Bucket=name)
    with pytest.raises(ClientError) as err:
        s3.get_bucket_tagging(Bucket=name)
    assert _code(err.value) == "NoSuchTagSet"
    with pytest.raises(ClientError) as err:
        s3.get_bucket_cors(Bucket=name)
    assert _code(err.value) == "NoSuchCORSConfiguration"


def test_list_buckets_pages(s3):
    prefix = f"page-{uuid.uuid4().hex[:6]}-"
    names = [f"{prefix}{i}" for i in range(5)]
    for name in names:
        s3.create_bucket(Bucket=name)
    seen, token = [], None
    while True:
        kwargs = {"ContinuationToken": token} if token else {}
        page = s3.list_buckets(MaxBuckets=2, Prefix=prefix, **kwargs)
        assert len(page["Buckets"]) <= 2 and page["Prefix"] == prefix
        seen += [b["Name"] for b in page["Buckets"]]
        token = page.get("ContinuationToken")
        if not token:
            break
    assert seen == names
    assert all(b["BucketRegion"] == "us-east-1" for b in s3.list_buckets(Prefix=prefix)["Buckets"])
    assert s3.list_buckets(Prefix=prefix, BucketRegion="eu-west-1")["Buckets"] == []
    paginated = [b["Name"] for page in s3.get_paginator("list_buckets").paginate(
        Prefix=prefix, PaginationConfig={"PageSize": 3}) for b in page["Buckets"]]
    assert paginated == names
    with pytest.raises(ClientError) as err:
        s3.list_buckets(MaxBuckets=10001)
    assert _code(err.value) == "InvalidArgument"


def test_recreating_your_own_bucket(server, s3, bucket):
    assert s3.create_bucket(Bucket=bucket)["ResponseMetadata"]["HTTPStatusCode"] == 200  # us-east-1: as S3
    west = server.client("s3")
    name = f"west-{uuid.uuid4().hex[:8]}"
    west.create_bucket(Bucket=name, CreateBucketConfiguration={"LocationConstraint": "eu-west-1"})
    with pytest.raises(ClientError) as err:
        west.create_bucket(Bucket=name, CreateBucketConfiguration={"LocationConstraint": "eu-west-1"})
    assert _code(err.value) == "BucketAlreadyOwnedByYou"


def test_cors_configuration_round_trip_and_checks(s3, bucket):
    with pytest.raises(ClientError) as err:
        s3.get_bucket_cors(Bucket=bucket)
    assert _code(err.value) == "NoSuchCORSConfiguration"
    rules = [{"ID": "web", "AllowedHeaders": ["*"], "AllowedMethods": ["GET", "PUT"],
              "AllowedOrigins": ["https://app.example.com"], "ExposeHeaders": ["ETag"], "MaxAgeSeconds": 300}]
    s3.put_bucket_cors(Bucket=bucket, CORSConfiguration={"CORSRules": rules})
    assert s3.get_bucket_cors(Bucket=bucket)["CORSRules"] == rules
    for bad in ({"AllowedMethods": ["PATCH"], "AllowedOrigins": ["*"]},
                {"AllowedMethods": ["GET"], "AllowedOrigins": ["https://*.*.example.com"]}):
        with pytest.raises(ClientError) as err:
            s3.put_bucket_cors(Bucket=bucket, CORSConfiguration={"CORSRules": [bad]})
        assert _code(err.value) == "InvalidRequest"
    s3.delete_bucket_cors(Bucket=bucket)
    with pytest.raises(ClientError) as err:
        s3.get_bucket_cors(Bucket=bucket)
    assert _code(err.value) == "NoSuchCORSConfiguration"


def test_cors_applied_to_preflights_and_requests(server, s3, bucket):
    http = urllib3.PoolManager()
    url = f"{server.endpoint}/{bucket}/photo.jpg"
    asked = {"Origin": "https://app.example.com", "Access-Control-Request-Method": "PUT",
             "Access-Control-Request-Headers": "content-type, x-amz-meta-owner"}
    refused = http.request("OPTIONS", url, headers=asked)
    assert refused.status == 403 and b"<Code>AccessForbidden</Code>" in refused.data
    assert b"CORS is not enabled for this bucket" in refused.data
    s3.put_bucket_cors(Bucket=bucket, CORSConfiguration={"CORSRules": [
        {"AllowedMethods": ["GET", "PUT"], "AllowedOrigins": ["https://*.example.com"],
         "AllowedHeaders": ["content-type", "x-amz-meta-*"], "ExposeHeaders": ["ETag"], "MaxAgeSeconds": 600},
        {"AllowedMethods": ["GET"], "AllowedOrigins": ["*"]}]})
    allowed = http.request("OPTIONS", url, headers=asked)
    assert allowed.status == 200
    assert allowed.headers["Access-Control-Allow-Origin"] == "https://app.example.com"
    assert allowed.headers["Access-Control-Allow-Methods"] == "GET, PUT"
    assert allowed.headers["Access-Control-Allow-Headers"] == "content-type, x-amz-meta-owner"
    assert allowed.headers["Access-Control-Expose-Headers"] == "ETag"
    assert allowed.headers["Access-Control-Max-Age"] == "600"
    assert allowed.headers["Access-Control-Allow-Credentials"] == "true"
    other_origin = http.request("OPTIONS", url, headers={"Origin": "https://evil.test",
                                                         "Access-Control-Request-Method": "GET"})
    assert other_origin.status == 200 and other_origin.headers["Access-Control-Allow-Origin"] == "*"
    for headers in ({"Origin": "https://evil.test", "Access-Control-Request-Method": "PUT"},
                    {**asked, "Access-Control-Request-Headers": "x-forbidden"}):
        denied = http.request("OPTIONS", url, headers=headers)
        assert denied.status == 403 and b"This CORS request is not allowed" in denied.data
    no_origin = http.request("OPTIONS", url, headers={"Access-Control-Request-Method": "GET"})
    assert no_origin.status == 400 and b"<Code>BadRequest</Code>" in no_origin.data
    # A signed request from a browser's page gets the matching rule's headers on its answer.
    s3.put_object(Bucket=bucket, Key="photo.jpg", Body=b"jpeg")
    presigned = s3.generate_presigned_url("get_object", Params={"Bucket": bucket, "Key": "photo.jpg"})
    got = http.request("GET", presigned, headers={"Origin": "https://app.example.com"})
    assert got.status == 200 and got.data == b"jpeg"
    assert got.headers["Access-Control-Allow-Origin"] == "https://app.example.com"
    assert got.headers["Access-Control-Expose-Headers"] == "ETag"
    plain = http.request("GET", presigned)
    assert "Access-Control-Allow-Origin" not in plain.headers


def test_bucket_policy_stored_checked_and_returned(s3, bucket):
    with pytest.raises(ClientError) as err:
        s3.get_bucket_policy(Bucket=bucket)
    assert _code(err.value) == "NoSuchBucketPolicy"
    policy = json.dumps({"Version": "2012-10-17", "Statement": [{
        "Sid": "PublicRead", "Effect": "Allow", "Principal": "*", "Action": "s3:GetObject",
        "Resource": f"arn:aws:s3:::{bucket}/*"}]}, indent=2)
    s3.put_bucket_policy(Bucket=bucket, Policy=policy)
    assert s3.get_bucket_policy(Bucket=bucket)["Policy"] == policy  # as sent
    assert s3.get_bucket_policy_status(Bucket=bucket)["PolicyStatus"]["IsPublic"] is True
    private = {"Version": "2012-10-17", "Statement": [{
        "Effect": "Allow", "Principal": {"AWS": "arn:aws:iam::123456789012:root"}, "Action": ["s3:GetObject"],
        "Resource": [f"arn:aws:s3:::{bucket}", f"arn:aws:s3:::{bucket}/*"]}]}
    s3.put_bucket_policy(Bucket=bucket, Policy=json.dumps(private))
    assert s3.get_bucket_policy_status(Bucket=bucket)["PolicyStatus"]["IsPublic"] is False
    statement = private["Statement"][0]
    malformed = {
        "not json": "Policies must be valid JSON and the first byte must be '{'",
        json.dumps({"Statement": [{k: v for k, v in statement.items() if k != "Principal"}]}):
            "Missing required field Principal",
        json.dumps({"Statement": [{**statement, "Action": "iam:PassRole"}]}): "Policy has invalid action",
        json.dumps({"Statement": [{**statement, "Resource": "arn:aws:s3:::another-bucket/*"}]}):
            "Policy has invalid resource",
        json.dumps({"Statement": [{**statement, "Effect": "Maybe"}]}): "Invalid effect: Maybe",
        json.dumps({"Statement": [{**statement, "Principal": {"AWS": "someone"}}]}): "Invalid principal in policy",
        json.dumps({"Version": "2012-10-17"}): "Missing required field Statement",
    }
    for text, message in malformed.items():
        with pytest.raises(ClientError) as err:
            s3.put_bucket_policy(Bucket=bucket, Policy=text)
        assert _code(err.value) == "MalformedPolicy" and err.value.response["Error"]["Message"] == message, text
    s3.delete_bucket_policy(Bucket=bucket)
    with pytest.raises(ClientError) as err:
        s3.get_bucket_policy_status(Bucket=bucket)
    assert _code(err.value) == "NoSuchBucketPolicy"


def test_lifecycle_configuration_round_trip_and_refusals(s3, bucket):
    with pytest.raises(ClientError) as err:
        s3.get_bucket_lifecycle_configuration(Bucket=bucket)
    assert _code(err.value) == "NoSuchLifecycleConfiguration"
    rules = [{"ID": "logs", "Status": "Enabled", "Filter": {"Prefix": "logs/"}, "Expiration": {"Days": 30}},
             {"ID": "uploads", "Status": "Enabled", "Filter": {"Prefix": ""},
              "AbortIncompleteMultipartUpload": {"DaysAfterInitiation": 7}},
             {"ID": "tmp", "Status": "Disabled",
              "Filter": {"And": {"Prefix": "tmp/", "Tags": [{"Key": "scratch", "Value": "yes"}]}},
              "Expiration": {"Date": dt.datetime(2031, 1, 1, tzinfo=dt.timezone.utc)}}]
    s3.put_bucket_lifecycle_configuration(Bucket=bucket, LifecycleConfiguration={"Rules": rules})
    assert s3.get_bucket_lifecycle_configuration(Bucket=bucket)["Rules"] == rules
    refused = {"Transitions": [{"Days": 30, "StorageClass": "GLACIER"}],
               "NoncurrentVersionExpiration": {"NoncurrentDays": 5}}
    for member, value in refused.items():
        with pytest.raises(ClientError) as err:
            s3.put_bucket_lifecycle_configuration(Bucket=bucket, LifecycleConfiguration={"Rules": [
                {"ID": "r", "Status": "Enabled", "Filter": {}, member: value}]})
        assert _code(err.value) == "NotImplemented" and member in err.value.response["Error"]["Message"]
        assert err.value.response["ResponseMetadata"]["HTTPStatusCode"] == 501
    bad = {"Days": 0}, {"Date": dt.datetime(2031, 1, 1, 12, tzinfo=dt.timezone.utc)}
    for expiration in bad:
        with pytest.raises(ClientError) as err:
            s3.put_bucket_lifecycle_configuration(Bucket=bucket, LifecycleConfiguration={"Rules": [
                {"ID": "r", "Status": "Enabled", "Filter": {}, "Expiration": expiration}]})
        assert _code(err.value) == "InvalidArgument"
    with pytest.raises(ClientError) as err:
        s3.put_bucket_lifecycle_configuration(Bucket=bucket, LifecycleConfiguration={"Rules": [
            {"ID": "r", "Status": "Enabled", "Filter": {}, "Expiration": {"Days": 1}},
            {"ID": "r", "Status": "Enabled", "Filter": {}, "Expiration": {"Days": 2}}]})
    assert _code(err.value) == "InvalidArgument"
    assert s3.get_bucket_lifecycle_configuration(Bucket=bucket)["Rules"] == rules  # refusals changed nothing
    s3.delete_bucket_lifecycle(Bucket=bucket)
    with pytest.raises(ClientError) as err:
        s3.get_bucket_lifecycle_configuration(Bucket=bucket)
    assert _code(err.value) == "NoSuchLifecycleConfiguration"


def test_lifecycle_expiration_deletes_objects(s3, bucket):
    for key in ("old/a.txt", "old/b.txt", "old/keep.txt", "new/c.txt"):
        s3.put_object(Bucket=bucket, Key=key, Body=b"x")
    s3.put_object_tagging(Bucket=bucket, Key="old/keep.txt", Tagging={"TagSet": [{"Key": "hold", "Value": "1"}]})
    for key in ("old/a.txt", "old/b.txt"):
        s3.put_object_tagging(Bucket=bucket, Key=key, Tagging={"TagSet": [{"Key": "expire", "Value": "1"}]})
    past = dt.datetime(2020, 1, 1, tzinfo=dt.timezone.utc)
    s3.put_bucket_lifecycle_configuration(Bucket=bucket, LifecycleConfiguration={"Rules": [
        {"ID": "old", "Status": "Enabled", "Expiration": {"Date": past},
         "Filter": {"And": {"Prefix": "old/", "Tags": [{"Key": "expire", "Value": "1"}]}}},
        {"ID": "off", "Status": "Disabled", "Filter": {"Prefix": "new/"}, "Expiration": {"Date": past}}]})
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        keys = [o["Key"] for o in s3.list_objects_v2(Bucket=bucket).get("Contents", [])]
        if keys == ["new/c.txt", "old/keep.txt"]:
            break
        time.sleep(0.5)
    assert keys == ["new/c.txt", "old/keep.txt"]


def test_get_object_attributes(s3, bucket):
    s3.put_object(Bucket=bucket, Key="single", Body=b"hello", ChecksumAlgorithm="SHA256")
    attributes = s3.get_object_attributes(Bucket=bucket, Key="single", ObjectAttributes=[
        "ETag", "Checksum", "ObjectParts", "StorageClass", "ObjectSize"])
    assert attributes["ETag"] == "5d41402abc4b2a76b9719d911017c592"
    assert attributes["ObjectSize"] == 5 and attributes["StorageClass"] == "STANDARD"
    assert attributes["Checksum"]["ChecksumSHA256"] == "LPJNul+wow4m6DsqxbninhsWHlwfp0JecwQzYpOLmCQ="
    assert "ObjectParts" not in attributes and "LastModified" in attributes
    only_size = s3.get_object_attributes(Bucket=bucket, Key="single", ObjectAttributes=["ObjectSize"])
    assert "ETag" not in only_size and only_size["ObjectSize"] == 5
    upload = s3.create_multipart_upload(Bucket=bucket, Key="multi")["UploadId"]
    sizes = [5 * 1024 * 1024, 5 * 1024 * 1024, 3]
    parts = [{"PartNumber": n, "ETag": s3.upload_part(Bucket=bucket, Key="multi", UploadId=upload, PartNumber=n,
                                                        Body=b"p" * size)["ETag"]}
             for n, size in enumerate(sizes, start=1)]
    s3.complete_multipart_upload(Bucket=bucket, Key="multi", UploadId=upload, MultipartUpload={"Parts": parts})
    first = s3.get_object_attributes(Bucket=bucket, Key="multi", ObjectAttributes=["ObjectParts", "ObjectSize"],
                                     MaxParts=2)
    assert first["ObjectSize"] == sum(sizes)
    assert first["ObjectParts"]["TotalPartsCount"] == 3 and first["ObjectParts"]["IsTruncated"] is True
    assert [(p["PartNumber"], p["Size"]) for p in first["ObjectParts"]["Parts"]] == [(1, sizes[0]), (2, sizes[1])]
    rest = s3.get_object_attributes(Bucket=bucket, Key="multi", ObjectAttributes=["ObjectParts"],
                                    PartNumberMarker=first["ObjectParts"]["NextPartNumberMarker"])
    assert [(p["PartNumber"], p["Size"]) for p in rest["ObjectParts"]["Parts"]] == [(3, 3)]
    assert rest["ObjectParts"]["IsTruncated"] is False
    with pytest.raises(ClientError) as err:
        s3.get_object_attributes(Bucket=bucket, Key="missing", ObjectAttributes=["ETag"])
    assert _code(err.value) == "NoSuchKey"


def test_content_encoding_kept_as_sent(server, s3, bucket):
    s3.put_object(Bucket=bucket, Key="g", Body=b"x", ContentEncoding="gzip, br")
    assert s3.head_object(Bucket=bucket, Key="g")["ContentEncoding"] == "gzip, br"
    http = urllib3.PoolManager()
    url = server.client("s3", signature_version="s3v4").generate_presigned_url(
        "put_object", Params={"Bucket": bucket, "Key": "chunked"})  # SigV2 would sign the x-amz- header too
    # aws-chunked is how this request's body travels, not how the object is encoded: S3 keeps the rest.
    body = b"3\r\nabc\r\n0\r\n\r\n"
    done = http.request("PUT", url, body=body, headers={"Content-Encoding": "aws-chunked,gzip",
                                                        "x-amz-decoded-content-length": "3"})
    assert done.status == 200, done.data
    head = s3.head_object(Bucket=bucket, Key="chunked")
    assert head["ContentEncoding"] == "gzip" and head["ContentLength"] == 3


def test_empty_delimiter_is_not_echoed(server, s3, bucket):
    s3.put_object(Bucket=bucket, Key="a/b", Body=b"x")
    http = urllib3.PoolManager()
    for query in ("list-type=2&delimiter=", "delimiter="):
        url = s3.generate_presigned_url("list_objects_v2" if "list-type" in query else "list_objects",
                                        Params={"Bucket": bucket, "Delimiter": ""})
        got = http.request("GET", url)
        assert got.status == 200 and b"<Key>a/b</Key>" in got.data
        assert b"<Delimiter" not in got.data


def test_aws_cli_bucket_settings(server, bucket):
    env = dict(os.environ, AWS_SHARED_CREDENTIALS_FILE=str(server.data_dir / "credentials"),
               AWS_CONFIG_FILE=str(server.data_dir / "config"), AWS_DEFAULT_REGION="us-east-1")

    def cli(*args) -> dict:
        done = subprocess.run([sys.executable, "-m", "awscli", "s3api", *args, "--endpoint-url", server.endpoint],
                              env=env, capture_output=True, text=True, check=True)
        return json.loads(done.stdout) if done.stdout.strip() else {}

    cli("put-bucket-tagging", "--bucket", bucket, "--tagging", "TagSet=[{Key=env,Value=dev}]")
    assert cli("get-bucket-tagging", "--bucket", bucket)["TagSet"] == [{"Key": "env", "Value": "dev"}]
    cli("put-bucket-cors", "--bucket", bucket, "--cors-configuration",
        json.dumps({"CORSRules": [{"AllowedMethods": ["GET"], "AllowedOrigins": ["*"]}]}))
    assert cli("get-bucket-cors", "--bucket", bucket)["CORSRules"][0]["AllowedOrigins"] == ["*"]
    cli("put-bucket-lifecycle-configuration", "--bucket", bucket, "--lifecycle-configuration",
        json.dumps({"Rules": [{"ID": "x", "Status": "Enabled", "Filter": {"Prefix": "tmp/"},
                               "Expiration": {"Days": 1}}]}))
    assert cli("get-bucket-lifecycle-configuration", "--bucket", bucket)["Rules"][0]["Expiration"] == {"Days": 1}
