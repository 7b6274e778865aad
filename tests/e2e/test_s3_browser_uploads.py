"""What browsers and plain SDK clients send S3 outside SigV4 headers: SigV2 presigned URLs (a plain
boto3 client's default), SigV2 header signatures, and POST form uploads from generate_presigned_post."""

from __future__ import annotations

import time
import uuid
from urllib.parse import parse_qs, urlsplit

import boto3
import pytest
import requests
from botocore.config import Config
from botocore.exceptions import ClientError


@pytest.fixture(scope="module")
def s3(server):
    return server.client("s3")


@pytest.fixture(scope="module")
def plain(server):
    """A client as a user makes one: no signature_version configured, so its presigned URLs are SigV2."""
    return boto3.client("s3", endpoint_url=server.endpoint, region_name="us-east-1", **server.credentials())


@pytest.fixture
def bucket(s3):
    name = f"br-{uuid.uuid4().hex[:12]}"
    s3.create_bucket(Bucket=name)
    return name


def test_a_plain_clients_presigned_urls_are_sigv2_and_work(plain, bucket):
    put = plain.generate_presigned_url("put_object", Params={"Bucket": bucket, "Key": "dir/a b+c.txt"})
    assert "AWSAccessKeyId=" in put and "Signature=" in put and "X-Amz-Signature" not in put
    assert requests.put(put, data=b"hello").status_code == 200
    get = plain.generate_presigned_url("get_object", Params={"Bucket": bucket, "Key": "dir/a b+c.txt",
                                                             "ResponseContentType": "text/plain"})
    got = requests.get(get)
    assert got.status_code == 200 and got.content == b"hello" and got.headers["Content-Type"] == "text/plain"
    listing = requests.get(plain.generate_presigned_url("list_objects_v2", Params={"Bucket": bucket}))
    assert listing.status_code == 200 and b"<Key>dir/a+b%2Bc.txt</Key>" in listing.content  # encoding-type=url


def test_virtual_hosted_sigv2_url(server, bucket):
    virtual = boto3.client("s3", endpoint_url=server.endpoint.replace("127.0.0.1", "localhost"),
                           region_name="us-east-1", config=Config(s3={"addressing_style": "virtual"}),
                           **server.credentials())
    url = virtual.generate_presigned_url("put_object", Params={"Bucket": bucket, "Key": "v"})
    assert urlsplit(url).hostname == f"{bucket}.localhost"
    port = urlsplit(url).port
    # Sent to the server's address with the virtual host's name, as a resolver would.
    sent = requests.put(url.replace(f"{bucket}.localhost:{port}", f"127.0.0.1:{port}"), data=b"v",
                        headers={"Host": f"{bucket}.localhost:{port}"})
    assert sent.status_code == 200, sent.text


def test_an_expired_or_altered_sigv2_url_is_refused(plain, bucket):
    plain.put_object(Bucket=bucket, Key="k", Body=b"x")
    expired = plain.generate_presigned_url("get_object", Params={"Bucket": bucket, "Key": "k"}, ExpiresIn=1)
    time.sleep(2)
    refused = requests.get(expired)
    assert refused.status_code == 403
    assert "<Code>AccessDenied</Code>" in refused.text and "Request has expired" in refused.text
    url = plain.generate_presigned_url("get_object", Params={"Bucket": bucket, "Key": "k"})
    altered = requests.get(url.replace("/k?", "/other?"))
    assert altered.status_code == 403 and "<Code>SignatureDoesNotMatch</Code>" in altered.text
    unknown = requests.get(url.replace("AWSAccessKeyId=", "AWSAccessKeyId=X"))
    assert unknown.status_code == 403 and "<Code>InvalidAccessKeyId</Code>" in unknown.text


def test_sigv2_header_signatures(server, bucket):
    v2 = server.client("s3", signature_version="s3")
    v2.put_object(Bucket=bucket, Key="h", Body=b"header-signed", Metadata={"owner": "me"})
    got = v2.get_object(Bucket=bucket, Key="h")
    assert got["Body"].read() == b"header-signed" and got["Metadata"] == {"owner": "me"}
    assert [o["Key"] for o in v2.list_objects(Bucket=bucket)["Contents"]] == ["h"]
    wrong = boto3.client("s3", endpoint_url=server.endpoint, region_name="us-east-1",
                         aws_access_key_id=server.credentials()["aws_access_key_id"], aws_secret_access_key="nope",
                         config=Config(signature_version="s3", s3={"addressing_style": "path"}))
    with pytest.raises(ClientError) as err:
        wrong.get_object(Bucket=bucket, Key="h")
    assert err.value.response["Error"]["Code"] == "SignatureDoesNotMatch"


@pytest.mark.parametrize("signature_version", ["s3v4", "s3"])
def test_presigned_post_upload(server, s3, bucket, signature_version):
    signer = server.client("s3", signature_version=signature_version)
    post = signer.generate_presigned_post(
        bucket, "uploads/${filename}",
        Fields={"Content-Type": "text/csv", "x-amz-meta-source": "browser", "success_action_status": "201"},
        Conditions=[{"Content-Type": "text/csv"}, {"x-amz-meta-source": "browser"},
                    {"success_action_status": "201"}, ["content-length-range", 1, 1024]])
    done = requests.post(post["url"], data=post["fields"], files={"file": ("data.csv", b"a,b\n1,2\n")})
    assert done.status_code == 201, done.text
    assert "<Key>uploads/data.csv</Key>" in done.text and f"<Bucket>{bucket}</Bucket>" in done.text
    head = s3.head_object(Bucket=bucket, Key="uploads/data.csv")
    assert head["ContentType"] == "text/csv" and head["Metadata"] == {"source": "browser"}
    assert head["ContentLength"] == 8 and done.headers["ETag"] == head["ETag"]
    assert s3.get_object(Bucket=bucket, Key="uploads/data.csv")["Body"].read() == b"a,b\n1,2\n"


def test_post_policy_conditions_are_enforced(server, s3, bucket):
    post = s3.generate_presigned_post(bucket, "in/${filename}", Conditions=[["content-length-range", 2, 10]])
    fields = post["fields"]

    def send(data=None, content=b"12345", name="f.bin"):
        return requests.post(post["url"], data=data or fields, files={"file": (name, content)})

    assert send().status_code == 204
    assert s3.get_object(Bucket=bucket, Key="in/f.bin")["Body"].read() == b"12345"
    too_big = send(content=b"x" * 11)
    assert too_big.status_code == 400 and "<Code>EntityTooLarge</Code>" in too_big.text
    too_small = send(content=b"x")
    assert too_small.status_code == 400 and "<Code>EntityTooSmall</Code>" in too_small.text
    elsewhere = send(data={**fields, "key": "out/f.bin"})
    assert elsewhere.status_code == 403 and "Policy Condition failed" in elsewhere.text
    extra = send(data={**fields, "x-amz-meta-extra": "1"})
    assert extra.status_code == 403 and "Extra input fields: x-amz-meta-extra" in extra.text
    ignored = send(data={**fields, "x-ignore-note": "anything"})
    assert ignored.status_code == 204
    signature = "x-amz-signature" if "x-amz-signature" in fields else "signature"
    forged = send(data={**fields, signature: fields[signature][::-1]})
    assert forged.status_code == 403 and "<Code>SignatureDoesNotMatch</Code>" in forged.text
    unsigned = requests.post(post["url"], data={"key": "in/x"}, files={"file": ("x", b"xx")})
    assert unsigned.status_code == 403 and "<Code>AccessDenied</Code>" in unsigned.text
    no_file = requests.post(post["url"], data=fields, files={"other": ("x", b"xx")})
    assert no_file.status_code == 400 and "<Code>InvalidArgument</Code>" in no_file.text
    expired = s3.generate_presigned_post(bucket, "late", ExpiresIn=1)
    time.sleep(2)
    late = requests.post(expired["url"], data=expired["fields"], files={"file": ("x", b"xx")})
    assert late.status_code == 403 and "Policy expired" in late.text
    with pytest.raises(ClientError):
        s3.head_object(Bucket=bucket, Key="out/f.bin")


def test_post_redirect(server, s3, bucket):
    target = "https://app.example.com/done"
    post = s3.generate_presigned_post(bucket, "r.txt", Fields={"success_action_redirect": target},
                                      Conditions=[{"success_action_redirect": target}])
    done = requests.post(post["url"], data=post["fields"], files={"file": ("r.txt", b"r")},
                         allow_redirects=False)
    assert done.status_code == 303
    location = urlsplit(done.headers["Location"])
    assert f"{location.scheme}://{location.netloc}{location.path}" == target
    assert parse_qs(location.query) == {"bucket": [bucket], "key": ["r.txt"],
                                        "etag": [s3.head_object(Bucket=bucket, Key="r.txt")["ETag"]]}
