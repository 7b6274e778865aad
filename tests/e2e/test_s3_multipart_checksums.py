"""Whole-object checksums of multipart uploads, and a repeated CompleteMultipartUpload, through boto3."""

from __future__ import annotations

import base64
import uuid

import pytest
from boto3.exceptions import S3UploadFailedError
from boto3.s3.transfer import TransferConfig
from botocore.exceptions import ClientError
from botocore.httpchecksum import Crc32Checksum, CrtCrc32cChecksum, CrtCrc64NvmeChecksum, Sha256Checksum

MIB = 1024 * 1024
CHECKSUMS = {"CRC32": Crc32Checksum, "CRC32C": CrtCrc32cChecksum, "CRC64NVME": CrtCrc64NvmeChecksum,
             "SHA256": Sha256Checksum}


def _checksum(algorithm: str, *chunks: bytes) -> str:
    """The checksum botocore itself computes, base64 as S3 carries it."""
    digest = CHECKSUMS[algorithm]()
    for chunk in chunks:
        digest.update(chunk)
    return digest.b64digest()


def _code(err: ClientError) -> str:
    return err.response["Error"]["Code"]


@pytest.fixture(scope="module")
def s3(server):
    return server.client("s3")


@pytest.fixture
def bucket(s3):
    name = f"mpc-{uuid.uuid4().hex[:12]}"
    s3.create_bucket(Bucket=name)
    return name


def _upload_parts(s3, bucket, key, upload_id, chunks, algorithm):
    parts = []
    for number, chunk in enumerate(chunks, 1):
        part = s3.upload_part(Bucket=bucket, Key=key, UploadId=upload_id, PartNumber=number, Body=chunk,
                              ChecksumAlgorithm=algorithm)
        member = f"Checksum{algorithm}"
        assert part[member] == _checksum(algorithm, chunk)
        parts.append({"PartNumber": number, "ETag": part["ETag"], member: part[member]})
    return parts


@pytest.mark.parametrize("algorithm", ["CRC32", "CRC32C", "CRC64NVME"])
def test_full_object_checksum_round_trip(s3, bucket, algorithm):
    chunks = [bytes(range(256)) * (20 * 1024), b"tail of the object" * 100]  # 5 MiB, then a small last part
    whole = _checksum(algorithm, *chunks)
    member = f"Checksum{algorithm}"
    created = s3.create_multipart_upload(Bucket=bucket, Key="obj", ChecksumAlgorithm=algorithm,
                                         ChecksumType="FULL_OBJECT")
    assert (created["ChecksumAlgorithm"], created["ChecksumType"]) == (algorithm, "FULL_OBJECT")
    upload = created["UploadId"]
    parts = _upload_parts(s3, bucket, "obj", upload, chunks, algorithm)
    listed = s3.list_parts(Bucket=bucket, Key="obj", UploadId=upload)
    assert [p[member] for p in listed["Parts"]] == [p[member] for p in parts]
    assert listed["ChecksumType"] == "FULL_OBJECT"
    wrong = _checksum(algorithm, b"other bytes")
    with pytest.raises(ClientError) as err:
        s3.complete_multipart_upload(Bucket=bucket, Key="obj", UploadId=upload, MultipartUpload={"Parts": parts},
                                     ChecksumType="FULL_OBJECT", **{member: wrong})
    assert _code(err.value) == "BadDigest"
    with pytest.raises(ClientError) as err:
        s3.complete_multipart_upload(Bucket=bucket, Key="obj", UploadId=upload, MultipartUpload={"Parts": parts},
                                     ChecksumType="COMPOSITE", **{member: whole})
    assert _code(err.value) == "InvalidRequest"
    with pytest.raises(ClientError) as err:
        s3.complete_multipart_upload(Bucket=bucket, Key="obj", UploadId=upload, MultipartUpload={"Parts": parts},
                                     MpuObjectSize=sum(map(len, chunks)) + 1, **{member: whole})
    assert _code(err.value) == "InvalidRequest"
    done = s3.complete_multipart_upload(Bucket=bucket, Key="obj", UploadId=upload, MultipartUpload={"Parts": parts},
                                        ChecksumType="FULL_OBJECT", MpuObjectSize=sum(map(len, chunks)),
                                        **{member: whole})
    assert done[member] == whole and done["ChecksumType"] == "FULL_OBJECT"
    for read in (s3.head_object, s3.get_object):
        got = read(Bucket=bucket, Key="obj", ChecksumMode="ENABLED")
        assert got[member] == whole and got["ChecksumType"] == "FULL_OBJECT"
    assert s3.get_object(Bucket=bucket, Key="obj", ChecksumMode="ENABLED")["Body"].read() == b"".join(chunks)
    # a retried Complete of the finished upload answers as the first did; another part list does not
    again = s3.complete_multipart_upload(Bucket=bucket, Key="obj", UploadId=upload, MultipartUpload={"Parts": parts},
                                         ChecksumType="FULL_OBJECT", **{member: whole})
    assert (again["ETag"], again[member], again["ChecksumType"]) == (done["ETag"], whole, "FULL_OBJECT")
    with pytest.raises(s3.exceptions.NoSuchUpload):
        s3.complete_multipart_upload(Bucket=bucket, Key="obj", UploadId=upload,
                                     MultipartUpload={"Parts": parts[:1]})
    with pytest.raises(s3.exceptions.NoSuchUpload):
        s3.complete_multipart_upload(Bucket=bucket, Key="elsewhere", UploadId=upload,
                                     MultipartUpload={"Parts": parts})


def test_transfer_manager_sends_the_whole_object_checksum(s3, bucket, tmp_path):
    """upload_file with a full-object checksum: s3transfer creates a FULL_OBJECT upload and completes it
    with that checksum, which jobforge checks against the parts'."""
    data = bytes(range(251)) * (50 * 1024)  # about 12 MiB: three parts of 5 MiB
    path = tmp_path / "data.bin"
    path.write_bytes(data)
    config = TransferConfig(multipart_threshold=5 * MIB, multipart_chunksize=5 * MIB)
    for algorithm in ("CRC32", "CRC64NVME"):
        whole = _checksum(algorithm, data)
        s3.upload_file(str(path), bucket, f"file-{algorithm}", Config=config,
                       ExtraArgs={f"Checksum{algorithm}": whole})
        head = s3.head_object(Bucket=bucket, Key=f"file-{algorithm}", ChecksumMode="ENABLED")
        assert head[f"Checksum{algorithm}"] == whole and head["ChecksumType"] == "FULL_OBJECT"
        assert head["ETag"].endswith('-3"')
    with pytest.raises(S3UploadFailedError) as err:
        s3.upload_file(str(path), bucket, "file-wrong", Config=config,
                       ExtraArgs={"ChecksumCRC32": _checksum("CRC32", b"not the file")})
    assert "BadDigest" in str(err.value)
    with pytest.raises(ClientError):
        s3.head_object(Bucket=bucket, Key="file-wrong")


def test_composite_and_default_checksums_at_complete(s3, bucket):
    chunks = [b"a" * 5 * MIB, b"b" * 10]
    upload = s3.create_multipart_upload(Bucket=bucket, Key="composite", ChecksumAlgorithm="SHA256")["UploadId"]
    parts = _upload_parts(s3, bucket, "composite", upload, chunks, "SHA256")
    composite = Sha256Checksum()
    for part in parts:
        composite.update(base64.b64decode(part["ChecksumSHA256"]))
    expected = f"{composite.b64digest()}-2"
    with pytest.raises(ClientError) as err:  # the whole object's SHA-256 is not what a composite upload checks
        s3.complete_multipart_upload(Bucket=bucket, Key="composite", UploadId=upload,
                                     MultipartUpload={"Parts": parts}, ChecksumSHA256=_checksum("SHA256", *chunks))
    assert _code(err.value) == "BadDigest"
    done = s3.complete_multipart_upload(Bucket=bucket, Key="composite", UploadId=upload,
                                        MultipartUpload={"Parts": parts}, ChecksumSHA256=expected)
    assert done["ChecksumSHA256"] == expected and done["ChecksumType"] == "COMPOSITE"
    head = s3.head_object(Bucket=bucket, Key="composite", ChecksumMode="ENABLED")
    assert head["ChecksumSHA256"] == expected and head["ChecksumType"] == "COMPOSITE"
    # an upload created without an algorithm gets S3's default, a full-object CRC64NVME, checked the same way
    upload = s3.create_multipart_upload(Bucket=bucket, Key="default")["UploadId"]
    parts = [{"PartNumber": n, "ETag": s3.upload_part(Bucket=bucket, Key="default", UploadId=upload, PartNumber=n,
                                                      Body=chunk)["ETag"]} for n, chunk in enumerate(chunks, 1)]
    with pytest.raises(ClientError) as err:
        s3.complete_multipart_upload(Bucket=bucket, Key="default", UploadId=upload, MultipartUpload={"Parts": parts},
                                     ChecksumCRC32=_checksum("CRC32", *chunks))
    assert _code(err.value) == "InvalidRequest"
    done = s3.complete_multipart_upload(Bucket=bucket, Key="default", UploadId=upload,
                                        MultipartUpload={"Parts": parts},
                                        ChecksumCRC64NVME=_checksum("CRC64NVME", *chunks))
    assert done["ChecksumCRC64NVME"] == _checksum("CRC64NVME", *chunks)
