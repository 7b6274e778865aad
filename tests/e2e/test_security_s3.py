"""S3 under attack: malformed XML bodies, header injection through response-* overrides, objects replaced
while they are read, and protection headers jobforge does not implement."""

from __future__ import annotations

import datetime as dt
import hashlib
import os
import threading
import time
import uuid
from urllib.parse import quote

import pytest
from botocore.exceptions import ClientError

from jobforge.testing_server import ServerProcess
from rawclient import send

MIB = 1024 * 1024
MALFORMED_XML = "MalformedXML"


def _code(err: ClientError) -> str:
    return err.response["Error"]["Code"]


def _status(err: ClientError) -> int:
    return err.response["ResponseMetadata"]["HTTPStatusCode"]


@pytest.fixture(scope="module")
def s3(server):
    return server.client("s3")


@pytest.fixture
def bucket(s3):
    name = f"sec-{uuid.uuid4().hex[:12]}"
    s3.create_bucket(Bucket=name)
    return name


def _raw(server, method: str, path: str, body: bytes = b"", headers: dict | None = None):
    """A signed request boto3 would not send as written: (status, headers, body)."""
    return send(server.endpoint, method, path, service="s3", credentials=server.credentials(), body=body,
                headers={"x-amz-content-sha256": "UNSIGNED-PAYLOAD", **(headers or {})})


def _error_code(body: bytes) -> str:
    return body.split(b"<Code>", 1)[1].split(b"</Code>", 1)[0].decode()


# -- item 5: every XML body S3 parses is checked against its schema ---------------------------------------------


def test_complete_multipart_upload_refuses_parts_that_do_not_follow_the_schema(server, s3, bucket):
    upload = s3.create_multipart_upload(Bucket=bucket, Key="mp")["UploadId"]
    etag = s3.upload_part(Bucket=bucket, Key="mp", UploadId=upload, PartNumber=1, Body=b"part one")["ETag"]
    for parts in ([{"ETag": etag}], [{"PartNumber": 1}], []):
        with pytest.raises(ClientError) as err:
            s3.complete_multipart_upload(Bucket=bucket, Key="mp", UploadId=upload, MultipartUpload={"Parts": parts})
        assert (_code(err.value), _status(err.value)) == (MALFORMED_XML, 400), parts
    path = f"/{bucket}/mp?uploadId={upload}"
    part = f"<ETag>{etag}</ETag>"
    for body in (b"", b"<CompleteMultipartUpload><Part/></CompleteMultipartUpload>",
                 f"<CompleteMultipartUpload><Part>{part}<PartNumber>one</PartNumber></Part>"
                 "</CompleteMultipartUpload>".encode(),
                 f"<CompleteMultipartUpload><Part>{part}<PartNumber></PartNumber></Part>"
                 "</CompleteMultipartUpload>".encode(),
                 f"<Delete><Part>{part}<PartNumber>1</PartNumber></Part></Delete>".encode(),
                 b"<CompleteMultipartUpload><Part>"):
        status, _, answer = _raw(server, "POST", path, body)
        assert (status, _error_code(answer)) == (400, MALFORMED_XML), body
    # the upload is untouched by the refused bodies
    s3.complete_multipart_upload(Bucket=bucket, Key="mp", UploadId=upload,
                                 MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": etag}]})
    assert s3.get_object(Bucket=bucket, Key="mp")["Body"].read() == b"part one"


def test_delete_objects_and_tagging_refuse_bodies_that_do_not_follow_the_schema(server, s3, bucket):
    s3.put_object(Bucket=bucket, Key="keep", Body=b"x")
    with pytest.raises(ClientError) as err:
        s3.delete_objects(Bucket=bucket, Delete={"Objects": []})
    assert (_code(err.value), _status(err.value)) == (MALFORMED_XML, 400)
    for body in (b"", b"<Delete/>", b"<Delete><Quiet>true</Quiet></Delete>", b"<Delete><Object/></Delete>",
                 b"<Delete><Object><VersionId>v</VersionId></Object></Delete>",
                 b"<Delete><Quiet>perhaps</Quiet><Object><Key>keep</Key></Object></Delete>",
                 b"<Delete><Object><Key>keep</Key><Size>big</Size></Object></Delete>",
                 b"<Delete><Object><Key>keep</Key><LastModifiedTime>yesterday</LastModifiedTime></Object></Delete>",
                 b"<Remove><Object><Key>keep</Key></Object></Remove>"):
        status, _, answer = _raw(server, "POST", f"/{bucket}?delete", body)
        assert (status, _error_code(answer)) == (400, MALFORMED_XML), body
    for body in (b"", b"<Tagging/>", b"<Tagging><TagSet><Tag><Key>k</Key></Tag></TagSet></Tagging>",
                 b"<Tagging><TagSet><Tag><Value>v</Value></Tag></TagSet></Tagging>"):
        status, _, answer = _raw(server, "PUT", f"/{bucket}/keep?tagging", body)
        assert (status, _error_code(answer)) == (400, MALFORMED_XML), body
    with pytest.raises(ClientError) as err:
        s3.put_object_tagging(Bucket=bucket, Key="keep", Tagging={"TagSet": [{"Key": "k", "Value": "1"},
                                                                              {"Key": "k", "Value": "2"}]})
    assert _code(err.value) == "InvalidTag"
    assert s3.get_object(Bucket=bucket, Key="keep")["Body"].read() == b"x"
    assert s3.get_object_tagging(Bucket=bucket, Key="keep")["TagSet"] == []


def test_conditional_deletes_remove_only_the_version_they_name(s3, bucket):
    etag = s3.put_object(Bucket=bucket, Key="cond", Body=b"v1")["ETag"]
    with pytest.raises(ClientError) as err:
        s3.delete_object(Bucket=bucket, Key="cond", IfMatch='"0123456789abcdef0123456789abcdef"')
    assert (_code(err.value), _status(err.value)) == ("PreconditionFailed", 412)
    with pytest.raises(ClientError) as err:
        s3.delete_object(Bucket=bucket, Key="cond", IfMatchSize=3)
    assert _code(err.value) == "PreconditionFailed"
    answer = s3.delete_objects(Bucket=bucket, Delete={"Objects": [{"Key": "cond", "ETag": '"00"'}]})
    assert [e["Code"] for e in answer["Errors"]] == ["PreconditionFailed"] and "Deleted" not in answer
    assert s3.get_object(Bucket=bucket, Key="cond")["Body"].read() == b"v1"
    s3.delete_object(Bucket=bucket, Key="cond", IfMatch=etag, IfMatchSize=2)
    with pytest.raises(ClientError) as err:
        s3.head_object(Bucket=bucket, Key="cond")
    assert _status(err.value) == 404
    upload = s3.create_multipart_upload(Bucket=bucket, Key="cond")["UploadId"]
    with pytest.raises(ClientError) as err:
        s3.abort_multipart_upload(Bucket=bucket, Key="cond", UploadId=upload,
                                  IfMatchInitiatedTime=dt.datetime(2000, 1, 1, tzinfo=dt.timezone.utc))
    assert _code(err.value) == "PreconditionFailed"
    initiated = s3.list_multipart_uploads(Bucket=bucket)["Uploads"][0]["Initiated"]
    s3.abort_multipart_upload(Bucket=bucket, Key="cond", UploadId=upload, IfMatchInitiatedTime=initiated)
    assert "Uploads" not in s3.list_multipart_uploads(Bucket=bucket)


# -- item 6: values sent back as headers -------------------------------------------------------------------------


def test_response_overrides_are_sent_as_s3_sends_them_and_bad_ones_refused(server, s3, bucket):
    s3.put_object(Bucket=bucket, Key="doc", Body=b"hello")
    latin = 'attachment; filename="café.txt"'
    got = s3.get_object(Bucket=bucket, Key="doc", ResponseContentDisposition=latin, ResponseContentType="text/plain")
    assert (got["ContentDisposition"], got["ContentType"], got["Body"].read()) == (latin, "text/plain", b"hello")
    refused = {"ResponseContentDisposition": 'attachment; filename="中文.txt"',
               "ResponseContentType": "text/plain\r\nX-Injected: yes",
               "ResponseCacheControl": "no-cache\nSet-Cookie: a=b",
               "ResponseContentLanguage": "en\x01",
               "ResponseContentEncoding": "gzip\x7f"}
    for member, value in refused.items():
        with pytest.raises(ClientError) as err:
            s3.get_object(Bucket=bucket, Key="doc", **{member: value})
        assert (_code(err.value), _status(err.value)) == ("InvalidArgument", 400), member
        assert "X-Injected" not in err.value.response["ResponseMetadata"]["HTTPHeaders"]
        # the same connection goes on serving
        assert s3.get_object(Bucket=bucket, Key="doc")["Body"].read() == b"hello"
    status, headers, body = _raw(server, "GET", f"/{bucket}/doc?response-content-type=" + quote("a\r\nX-Injected: 1"))
    assert status == 400 and "X-Injected" not in headers and b"<ArgumentName>response-content-type<" in body
    status, _, _ = _raw(server, "HEAD", f"/{bucket}/doc?response-content-disposition=" + quote("中"))
    assert status == 400


def test_every_header_value_goes_out_as_one_header():
    """Whatever a handler returns, no value can end its header line or fail to encode."""
    from jobforge.server.protocol import restxml

    response = restxml.serialize("s3", "HeadObject", {"ContentDisposition": "a\r\nX-Injected: 1",
                                                      "ContentLanguage": "中文", "Metadata": {"note": "x\ny"},
                                                      "ContentType": "text/plain; charset=latin-1 é"}, "rid")
    headers = dict(response.headers)
    for name, value in response.headers:
        value.encode("latin-1")
        assert "\r" not in value and "\n" not in value, name
    assert headers["Content-Disposition"] == "=?UTF-8?B?YQ0KWC1JbmplY3RlZDogMQ==?="
    assert headers["Content-Type"] == "text/plain; charset=latin-1 é"  # Latin-1 goes out as it came in


def test_stored_header_values_come_back_as_they_were_sent(s3, bucket):
    s3.put_object(Bucket=bucket, Key="meta", Body=b"x", ContentDisposition='inline; filename="report; final.pdf"',
                  Metadata={"note": "kept"}, WebsiteRedirectLocation="/elsewhere")
    got = s3.head_object(Bucket=bucket, Key="meta")
    assert got["ContentDisposition"] == 'inline; filename="report; final.pdf"'
    assert got["Metadata"] == {"note": "kept"} and got["WebsiteRedirectLocation"] == "/elsewhere"
    with pytest.raises(ClientError) as err:
        s3.put_object(Bucket=bucket, Key="redirect", Body=b"x", WebsiteRedirectLocation="javascript:alert(1)")
    assert _code(err.value) == "InvalidRedirectLocation"


# -- item 11: a GET that has started returns the version it started with ------------------------------------------


def _multipart_object(s3, bucket: str, key: str, data: bytes) -> None:
    upload = s3.create_multipart_upload(Bucket=bucket, Key=key)["UploadId"]
    parts = []
    for number, start in enumerate(range(0, len(data), 5 * MIB), 1):
        etag = s3.upload_part(Bucket=bucket, Key=key, UploadId=upload, PartNumber=number,
                              Body=data[start:start + 5 * MIB])["ETag"]
        parts.append({"PartNumber": number, "ETag": etag})
    s3.complete_multipart_upload(Bucket=bucket, Key=key, UploadId=upload, MultipartUpload={"Parts": parts})


def _read_while_replaced(s3, bucket: str, key: str) -> bytes:
    """Start a GET, read its first MiB, overwrite the key and delete it, then read the rest slowly."""
    body = s3.get_object(Bucket=bucket, Key=key)["Body"]
    received = [body.read(MIB)]
    writer = threading.Thread(target=lambda: (s3.put_object(Bucket=bucket, Key=key, Body=b"new version"),
                                              s3.delete_object(Bucket=bucket, Key=key)))
    writer.start()
    writer.join()
    while chunk := body.read(MIB):
        received.append(chunk)
    return b"".join(received)


@pytest.mark.parametrize("layout", ["single", "multipart"])
def test_a_started_get_returns_the_whole_original_object(server, bucket, layout):
    s3 = server.client("s3")  # a client of its own: its pool holds the streaming connection
    data = os.urandom(15 * MIB)
    if layout == "single":
        s3.put_object(Bucket=bucket, Key="big", Body=data)
    else:
        _multipart_object(s3, bucket, "big", data)
    got = _read_while_replaced(s3, bucket, "big")
    assert len(got) == len(data) and hashlib.md5(got).digest() == hashlib.md5(data).digest()
    with pytest.raises(ClientError) as err:
        s3.head_object(Bucket=bucket, Key="big")
    assert _status(err.value) == 404


def test_an_external_object_store_keeps_a_blob_until_its_last_reader_is_done(tmp_path):
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
        s3.create_bucket(Bucket="data")
        data = os.urandom(15 * MIB)
        _multipart_object(s3, "data", "big", data)
        got = _read_while_replaced(s3, "data", "big")
        assert hashlib.md5(got).digest() == hashlib.md5(data).digest()

        def blobs():
            return backing_s3.list_objects_v2(Bucket="jobforge-data", Prefix="front/").get("KeyCount", 0)

        assert blobs() == 0  # the finished reader let the deleted parts go
        _multipart_object(s3, "data", "left", data)
        body = s3.get_object(Bucket="data", Key="left")["Body"]
        body.read(MIB)
        s3.delete_object(Bucket="data", Key="left")
        assert blobs() == 3  # held by the reader
        body.close()  # a reader that goes away early lets them go too
        deadline = time.monotonic() + 10
        while blobs() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert blobs() == 0
    finally:
        if front is not None:
            front.stop()
        backing.stop()


# -- item 11: protection headers jobforge does not implement are refused ------------------------------------------

SSE_C = {"SSECustomerAlgorithm": "AES256", "SSECustomerKey": "k" * 32}
REFUSED_PUTS = [
    (SSE_C, "NotImplemented", 501),
    ({"ServerSideEncryption": "aws:kms"}, "NotImplemented", 501),
    ({"ServerSideEncryption": "aws:kms:dsse"}, "NotImplemented", 501),
    ({"ServerSideEncryption": "aws:kms", "SSEKMSKeyId": "alias/mine"}, "NotImplemented", 501),
    ({"BucketKeyEnabled": True}, "NotImplemented", 501),
    ({"ObjectLockMode": "COMPLIANCE", "ObjectLockRetainUntilDate": dt.datetime(2099, 1, 1)}, "InvalidRequest", 400),
    ({"ObjectLockLegalHoldStatus": "ON"}, "InvalidRequest", 400),
    ({"ACL": "public-read"}, "AccessControlListNotSupported", 400),
    ({"ACL": "authenticated-read"}, "AccessControlListNotSupported", 400),
    ({"GrantRead": 'uri="http://acs.amazonaws.com/groups/global/AllUsers"'}, "AccessControlListNotSupported", 400),
    ({"GrantFullControl": 'id="0123456789abcdef"'}, "AccessControlListNotSupported", 400),
]


@pytest.mark.parametrize("extra,code,status", REFUSED_PUTS, ids=lambda v: str(v)[:40])
def test_unimplemented_protection_is_refused_and_nothing_is_stored(server, s3, bucket, extra, code, status):
    for call in (lambda: s3.put_object(Bucket=bucket, Key="obj", Body=os.urandom(2 * MIB), **extra),
                 lambda: s3.create_multipart_upload(Bucket=bucket, Key="obj", **extra)):
        with pytest.raises(ClientError) as err:
            call()
        assert (_code(err.value), _status(err.value)) == (code, status)
    with pytest.raises(ClientError) as err:
        s3.head_object(Bucket=bucket, Key="obj")
    assert _status(err.value) == 404
    assert "Uploads" not in s3.list_multipart_uploads(Bucket=bucket)
    assert list((server.data_dir / "objects" / "tmp").iterdir()) == []  # the received body is gone too
    s3.put_object(Bucket=bucket, Key="source", Body=b"plain")
    with pytest.raises(ClientError) as err:
        s3.copy_object(Bucket=bucket, Key="copy", CopySource=f"{bucket}/source", **extra)
    assert (_code(err.value), _status(err.value)) == (code, status)
    with pytest.raises(ClientError) as err:
        s3.head_object(Bucket=bucket, Key="copy")
    assert _status(err.value) == 404


def test_what_s3_does_by_default_is_accepted(s3, bucket):
    for extra in ({"ServerSideEncryption": "AES256"}, {"ACL": "private"}, {"ACL": "bucket-owner-full-control"},
                  {"BucketKeyEnabled": False}):
        s3.put_object(Bucket=bucket, Key="plain", Body=b"data", **extra)
        assert s3.get_object(Bucket=bucket, Key="plain")["Body"].read() == b"data"
    with pytest.raises(ClientError) as err:
        s3.put_object(Bucket=bucket, Key="odd", Body=b"data", ServerSideEncryption="rot13")
    assert _code(err.value) == "InvalidArgument"


def test_a_customer_key_on_a_read_is_not_applicable(s3, bucket):
    s3.put_object(Bucket=bucket, Key="plain", Body=b"data")
    for call in (lambda: s3.get_object(Bucket=bucket, Key="plain", **SSE_C),
                 lambda: s3.copy_object(Bucket=bucket, Key="copy", CopySource=f"{bucket}/plain",
                                        CopySourceSSECustomerAlgorithm="AES256",
                                        CopySourceSSECustomerKey="k" * 32)):
        with pytest.raises(ClientError) as err:
            call()
        assert (_code(err.value), _status(err.value)) == ("InvalidRequest", 400)
    with pytest.raises(ClientError) as err:
        s3.head_object(Bucket=bucket, Key="plain", **SSE_C)
    assert _status(err.value) == 400


def test_buckets_with_object_lock_or_acls_are_refused(s3):
    for extra, code, status in (({"ObjectLockEnabledForBucket": True}, "NotImplemented", 501),
                                ({"ACL": "public-read"}, "InvalidBucketAclWithObjectOwnership", 400),
                                ({"GrantWrite": 'uri="http://acs.amazonaws.com/groups/global/AllUsers"'},
                                 "InvalidBucketAclWithObjectOwnership", 400)):
        name = f"sec-{uuid.uuid4().hex[:12]}"
        with pytest.raises(ClientError) as err:
            s3.create_bucket(Bucket=name, **extra)
        assert (_code(err.value), _status(err.value)) == (code, status)
        with pytest.raises(ClientError) as err:
            s3.head_bucket(Bucket=name)
        assert _status(err.value) == 404
    name = f"sec-{uuid.uuid4().hex[:12]}"
    s3.create_bucket(Bucket=name, ACL="private", ObjectLockEnabledForBucket=False)
    s3.head_bucket(Bucket=name)


def test_expected_bucket_owner_is_checked(server, s3, bucket):
    account = server.client("sts").get_caller_identity()["Account"]
    s3.put_object(Bucket=bucket, Key="k", Body=b"x", ExpectedBucketOwner=account)
    for call in (lambda: s3.get_object(Bucket=bucket, Key="k", ExpectedBucketOwner="999999999999"),
                 lambda: s3.list_objects_v2(Bucket=bucket, ExpectedBucketOwner="999999999999"),
                 lambda: s3.copy_object(Bucket=bucket, Key="c", CopySource=f"{bucket}/k",
                                        ExpectedSourceBucketOwner="999999999999")):
        with pytest.raises(ClientError) as err:
            call()
        assert (_code(err.value), _status(err.value)) == ("AccessDenied", 403)


@pytest.mark.parametrize("tagging", ["k=%FF", "k=a%00b", "%C3=v"])
def test_object_tags_that_no_store_can_keep_are_refused(s3, bucket, tagging):
    with pytest.raises(ClientError) as refused:
        s3.put_object(Bucket=bucket, Key="tagged", Body=b"x", Tagging=tagging)
    assert _code(refused.value) == "InvalidTag"
    with pytest.raises(ClientError) as missing:
        s3.head_object(Bucket=bucket, Key="tagged")
    assert _status(missing.value) == 404
