"""S3 payload signing variants and checksums: signed payloads, aws-chunked (signed chunks, trailers), digests."""

from __future__ import annotations

import base64
import hashlib
import hmac
import io
import uuid
from email.utils import parsedate_to_datetime

import pytest
import urllib3
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from botocore.exceptions import ClientError
from botocore.httpchecksum import AwsChunkedWrapper, CrtCrc32Checksum, CrtCrc64NvmeChecksum

EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()
http = urllib3.PoolManager()


@pytest.fixture(scope="module")
def s3(server):
    return server.client("s3")


@pytest.fixture(scope="module")
def bucket(s3):
    name = f"sig-{uuid.uuid4().hex[:12]}"
    s3.create_bucket(Bucket=name)
    return name


def _signed_headers(server, method, path, headers):
    """Headers signed with SigV4 for S3, the payload hash taken from X-Amz-Content-SHA256 as given
    (plain SigV4Auth keeps that header; the paths used here need no S3-specific encoding)."""
    creds = server.credentials()
    request = AWSRequest(method=method, url=server.endpoint + path, headers=headers)
    signer = SigV4Auth(Credentials(creds["aws_access_key_id"], creds["aws_secret_access_key"]), "s3", "us-east-1")
    signer.add_auth(request)
    return dict(request.headers), signer, request


def _signing_key(server, date):
    key = ("AWS4" + server.credentials()["aws_secret_access_key"]).encode()
    for part in (date, "us-east-1", "s3", "aws4_request"):
        key = hmac.new(key, part.encode(), hashlib.sha256).digest()
    return key


def _signed_chunks(server, headers, chunks, trailer: bytes | None = None, corrupt_chunk: int | None = None):
    """An aws-chunked body whose chunk signatures chain from the request's seed signature."""
    amz_date = headers.get("X-Amz-Date") or parsedate_to_datetime(headers["Date"]).strftime("%Y%m%dT%H%M%SZ")
    scope = f"{amz_date[:8]}/us-east-1/s3/aws4_request"
    key = _signing_key(server, amz_date[:8])
    previous = headers["Authorization"].rpartition("Signature=")[2]
    out = b""
    for index, data in enumerate(list(chunks) + [b""]):
        text = "\n".join(["AWS4-HMAC-SHA256-PAYLOAD", amz_date, scope, previous, EMPTY_SHA256,
                          hashlib.sha256(data).hexdigest()])
        previous = hmac.new(key, text.encode(), hashlib.sha256).hexdigest()
        shown = "0" * 64 if index == corrupt_chunk else previous
        out += f"{len(data):x};chunk-signature={shown}\r\n".encode() + data + (b"\r\n" if data else b"")
    if trailer is None:
        return out + b"\r\n"
    text = "\n".join(["AWS4-HMAC-SHA256-TRAILER", amz_date, scope, previous, hashlib.sha256(trailer).hexdigest()])
    signature = hmac.new(key, text.encode(), hashlib.sha256).hexdigest()
    return out + trailer.replace(b"\n", b"\r\n") + f"x-amz-trailer-signature:{signature}\r\n\r\n".encode()


def _crc32(data: bytes) -> str:
    digest = CrtCrc32Checksum()
    digest.update(data)
    return digest.b64digest()


@pytest.mark.parametrize("algorithm", ["CRC32", "CRC32C", "CRC64NVME", "SHA1", "SHA256"])
def test_every_checksum_algorithm_is_verified_and_returned(s3, bucket, algorithm):
    data = b"checksum me " * 1000
    put = s3.put_object(Bucket=bucket, Key=f"ck/{algorithm}", Body=data, ChecksumAlgorithm=algorithm)
    member = f"Checksum{algorithm}"
    expected = {"CRC32": _crc32(data), "SHA1": base64.b64encode(hashlib.sha1(data).digest()).decode(),
                "SHA256": base64.b64encode(hashlib.sha256(data).digest()).decode()}
    if algorithm in expected:
        assert put[member] == expected[algorithm]
    got = s3.get_object(Bucket=bucket, Key=f"ck/{algorithm}", ChecksumMode="ENABLED")
    assert got["Body"].read() == data  # botocore validates the returned checksum while reading
    assert got[member] == put[member] and got["ChecksumType"] == "FULL_OBJECT"


def test_wrong_checksum_header_is_bad_digest(s3, bucket):
    with pytest.raises(ClientError) as err:
        s3.put_object(Bucket=bucket, Key="bad-crc", Body=b"data", ChecksumCRC32="AAAAAA==")
    assert err.value.response["Error"]["Code"] == "BadDigest"
    with pytest.raises(ClientError) as err:
        s3.put_object(Bucket=bucket, Key="bad-md5", Body=b"data",
                      ContentMD5=base64.b64encode(hashlib.md5(b"other").digest()).decode())
    assert err.value.response["Error"]["Code"] == "BadDigest"
    with pytest.raises(s3.exceptions.NoSuchKey):
        s3.get_object(Bucket=bucket, Key="bad-crc")


def test_signed_payload_must_match_its_sha256(server, bucket):
    body = b"the real body"
    headers, _, _ = _signed_headers(server, "PUT", f"/{bucket}/sha",
                                    {"X-Amz-Content-SHA256": hashlib.sha256(b"another body").hexdigest()})
    response = http.request("PUT", f"{server.endpoint}/{bucket}/sha", body=body, headers=headers)
    assert response.status == 400 and b"<Code>XAmzContentSHA256Mismatch</Code>" in response.data
    headers, _, _ = _signed_headers(server, "PUT", f"/{bucket}/sha",
                                    {"X-Amz-Content-SHA256": hashlib.sha256(body).hexdigest()})
    assert http.request("PUT", f"{server.endpoint}/{bucket}/sha", body=body, headers=headers).status == 200


def test_unsigned_payload(server, s3, bucket):
    headers, _, _ = _signed_headers(server, "PUT", f"/{bucket}/unsigned", {"X-Amz-Content-SHA256": "UNSIGNED-PAYLOAD"})
    assert http.request("PUT", f"{server.endpoint}/{bucket}/unsigned", body=b"free", headers=headers).status == 200
    assert s3.get_object(Bucket=bucket, Key="unsigned")["Body"].read() == b"free"


def test_unsigned_trailer_as_botocore_encodes_it(server, s3, bucket):
    data = b"x" * (3 * 1024 * 1024 + 17)
    encoded = AwsChunkedWrapper(io.BytesIO(data), CrtCrc64NvmeChecksum, "x-amz-checksum-crc64nvme").read()
    fields = {"X-Amz-Content-SHA256": "STREAMING-UNSIGNED-PAYLOAD-TRAILER", "Content-Encoding": "aws-chunked",
              "X-Amz-Trailer": "x-amz-checksum-crc64nvme", "X-Amz-Decoded-Content-Length": str(len(data)),
              "X-Amz-Sdk-Checksum-Algorithm": "CRC64NVME"}
    headers, _, _ = _signed_headers(server, "PUT", f"/{bucket}/trailer", fields)
    response = http.request("PUT", f"{server.endpoint}/{bucket}/trailer", body=encoded, headers=headers)
    assert response.status == 200, response.data
    digest = CrtCrc64NvmeChecksum()
    digest.update(data)
    assert response.headers["x-amz-checksum-crc64nvme"] == digest.b64digest()
    got = s3.get_object(Bucket=bucket, Key="trailer")
    assert got["Body"].read() == data and "ContentEncoding" not in got
    wrong = encoded.replace(digest.b64digest().encode(), b"AAAAAAAAAAA=")
    headers, _, _ = _signed_headers(server, "PUT", f"/{bucket}/trailer-bad", fields)
    response = http.request("PUT", f"{server.endpoint}/{bucket}/trailer-bad", body=wrong, headers=headers)
    assert response.status == 400 and b"<Code>BadDigest</Code>" in response.data


def test_signed_streaming_chunks(server, s3, bucket):
    chunks = [b"a" * 65536, b"b" * 65536, b"c" * 100]
    data = b"".join(chunks)
    fields = {"X-Amz-Content-SHA256": "STREAMING-AWS4-HMAC-SHA256-PAYLOAD", "Content-Encoding": "aws-chunked",
              "X-Amz-Decoded-Content-Length": str(len(data))}
    headers, _, _ = _signed_headers(server, "PUT", f"/{bucket}/chunked", fields)
    body = _signed_chunks(server, headers, chunks)
    response = http.request("PUT", f"{server.endpoint}/{bucket}/chunked", body=body, headers=headers)
    assert response.status == 200, response.data
    assert s3.get_object(Bucket=bucket, Key="chunked")["Body"].read() == data
    headers, _, _ = _signed_headers(server, "PUT", f"/{bucket}/chunked-bad", fields)
    body = _signed_chunks(server, headers, chunks, corrupt_chunk=1)
    response = http.request("PUT", f"{server.endpoint}/{bucket}/chunked-bad", body=body, headers=headers)
    assert response.status == 403 and b"<Code>SignatureDoesNotMatch</Code>" in response.data
    with pytest.raises(s3.exceptions.NoSuchKey):
        s3.get_object(Bucket=bucket, Key="chunked-bad")


def test_signed_streaming_chunks_of_a_request_dated_by_its_date_header(server, s3, bucket):
    data = b"d" * 70000
    fields = {"X-Amz-Content-SHA256": "STREAMING-AWS4-HMAC-SHA256-PAYLOAD", "Content-Encoding": "aws-chunked",
              "X-Amz-Decoded-Content-Length": str(len(data)), "Date": "replaced when signed"}
    headers, _, _ = _signed_headers(server, "PUT", f"/{bucket}/chunked-dated", fields)
    assert "X-Amz-Date" not in headers  # botocore signs with the Date header when the request has one
    body = _signed_chunks(server, headers, [data])
    response = http.request("PUT", f"{server.endpoint}/{bucket}/chunked-dated", body=body, headers=headers)
    assert response.status == 200, response.data
    assert s3.get_object(Bucket=bucket, Key="chunked-dated")["Body"].read() == data


def test_signed_streaming_with_signed_trailer(server, s3, bucket):
    chunks = [b"q" * 70000, b"r" * 5]
    data = b"".join(chunks)
    fields = {"X-Amz-Content-SHA256": "STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER", "Content-Encoding": "aws-chunked",
              "X-Amz-Decoded-Content-Length": str(len(data)), "X-Amz-Trailer": "x-amz-checksum-crc32"}
    headers, _, _ = _signed_headers(server, "PUT", f"/{bucket}/signed-trailer", fields)
    body = _signed_chunks(server, headers, chunks, trailer=f"x-amz-checksum-crc32:{_crc32(data)}\n".encode())
    response = http.request("PUT", f"{server.endpoint}/{bucket}/signed-trailer", body=body, headers=headers)
    assert response.status == 200, response.data
    got = s3.get_object(Bucket=bucket, Key="signed-trailer", ChecksumMode="ENABLED")
    assert got["Body"].read() == data and got["ChecksumCRC32"] == _crc32(data)
    headers, _, _ = _signed_headers(server, "PUT", f"/{bucket}/signed-trailer-bad", fields)
    body = _signed_chunks(server, headers, chunks, trailer=f"x-amz-checksum-crc32:{_crc32(data)}\n".encode())
    body = body.replace(_crc32(data).encode(), _crc32(b"other").encode())  # trailer no longer matches its signature
    response = http.request("PUT", f"{server.endpoint}/{bucket}/signed-trailer-bad", body=body, headers=headers)
    assert response.status == 403 and b"<Code>SignatureDoesNotMatch</Code>" in response.data
