"""Large transfers through boto3's transfer manager, and the AWS CLI's `aws s3` commands."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
import urllib3
from boto3.s3.transfer import TransferConfig

AWS = str(Path(sys.executable).with_name("aws"))


def _md5(path: Path) -> str:
    digest = hashlib.md5()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


@pytest.fixture(scope="module")
def big_file(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("big") / "dataset.bin"
    block = os.urandom(1 << 20)
    with open(path, "wb") as handle:
        for i in range(100):
            handle.write(hashlib.sha256(block + bytes([i])).digest() * (1 << 15))  # 100 MiB, no repeats per MiB
        handle.write(b"tail")
    return path


@pytest.mark.parametrize("algorithm", ["CRC32", "CRC64NVME"])
def test_upload_and_download_file_multipart(server, big_file, tmp_path, algorithm):
    s3 = server.client("s3")
    bucket = f"tm-{uuid.uuid4().hex[:10]}"
    s3.create_bucket(Bucket=bucket)
    config = TransferConfig(multipart_threshold=8 << 20, multipart_chunksize=8 << 20, max_concurrency=8)
    s3.upload_file(str(big_file), bucket, "data/dataset.bin", Config=config,
                   ExtraArgs={"ChecksumAlgorithm": algorithm})
    head = s3.head_object(Bucket=bucket, Key="data/dataset.bin", ChecksumMode="ENABLED")
    assert head["ContentLength"] == big_file.stat().st_size
    parts = -(-big_file.stat().st_size // (8 << 20))
    assert head["ETag"].endswith(f'-{parts}"') and head["PartsCount"] == parts
    assert head[f"Checksum{algorithm}"]
    target = tmp_path / "copy.bin"
    s3.download_file(bucket, "data/dataset.bin", str(target), Config=config)
    assert _md5(target) == _md5(big_file)
    # a whole-object GET checks the stored checksum while reading (botocore validates full-object CRCs)
    body = s3.get_object(Bucket=bucket, Key="data/dataset.bin", ChecksumMode="ENABLED")["Body"]
    digest = hashlib.md5()
    for chunk in body.iter_chunks(1 << 20):
        digest.update(chunk)
    assert digest.hexdigest() == _md5(big_file)
    assert s3.list_multipart_uploads(Bucket=bucket).get("Uploads") is None


def _aws(server, *args, check=True):
    # The CLI presigns with SigV2 unless the profile asks for s3v4; these tests presign with SigV4.
    config = server.data_dir.parent / "cli-config"
    config.write_text("[default]\nregion = us-east-1\ns3 =\n    addressing_style = path\n"
                      "    signature_version = s3v4\n")
    env = dict(os.environ, AWS_SHARED_CREDENTIALS_FILE=str(server.data_dir / "credentials"),
               AWS_CONFIG_FILE=str(config), AWS_DEFAULT_REGION="us-east-1")
    env.pop("AWS_PROFILE", None)
    result = subprocess.run([AWS, "--endpoint-url", server.endpoint, *args], env=env, capture_output=True,
                            text=True, timeout=120)
    if check:
        assert result.returncode == 0, result.stderr
    return result


def test_aws_cli_mb_cp_sync_ls_rm_presign(server, tmp_path):
    bucket = f"cli-{uuid.uuid4().hex[:10]}"
    _aws(server, "s3", "mb", f"s3://{bucket}")
    source = tmp_path / "dataset"
    (source / "train").mkdir(parents=True)
    (source / "train" / "a.jsonl").write_text('{"x": 1}\n')
    (source / "train" / "b.jsonl").write_text('{"x": 2}\n')
    (source / "weird name+plus.txt").write_text("spaces and plus")
    (source / "large.bin").write_bytes(os.urandom(9 << 20))  # above the CLI's 8 MiB multipart threshold
    _aws(server, "s3", "cp", str(source / "train" / "a.jsonl"), f"s3://{bucket}/single/a.jsonl")
    _aws(server, "s3", "sync", str(source), f"s3://{bucket}/dataset/")
    listing = _aws(server, "s3", "ls", "--recursive", f"s3://{bucket}/dataset/").stdout
    for name in ("dataset/train/a.jsonl", "dataset/train/b.jsonl", "dataset/weird name+plus.txt",
                 "dataset/large.bin"):
        assert name in listing
    top = _aws(server, "s3", "ls", f"s3://{bucket}/dataset/").stdout
    assert "PRE train/" in top
    assert bucket in _aws(server, "s3", "ls").stdout
    second = _aws(server, "s3", "sync", str(source), f"s3://{bucket}/dataset/").stdout
    assert second.strip() == ""  # nothing changed, nothing copied
    back = tmp_path / "back"
    _aws(server, "s3", "sync", f"s3://{bucket}/dataset/", str(back))
    for path in source.rglob("*"):
        if path.is_file():
            assert (back / path.relative_to(source)).read_bytes() == path.read_bytes()
    _aws(server, "s3", "cp", f"s3://{bucket}/single/a.jsonl", str(tmp_path / "a-copy.jsonl"))
    assert (tmp_path / "a-copy.jsonl").read_text() == '{"x": 1}\n'
    url = _aws(server, "s3", "presign", f"s3://{bucket}/single/a.jsonl", "--expires-in", "60").stdout.strip()
    response = urllib3.PoolManager().request("GET", url)
    assert response.status == 200 and response.data == b'{"x": 1}\n'
    _aws(server, "s3", "rm", f"s3://{bucket}/single/a.jsonl")
    _aws(server, "s3", "rm", "--recursive", f"s3://{bucket}/dataset/")
    assert _aws(server, "s3", "ls", "--recursive", f"s3://{bucket}/", check=False).stdout.strip() == ""
    _aws(server, "s3", "rb", f"s3://{bucket}")
    failed = _aws(server, "s3", "ls", f"s3://{bucket}/", check=False)
    assert failed.returncode != 0 and "NoSuchBucket" in failed.stderr
