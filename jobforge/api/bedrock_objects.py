"""Reading S3 from Bedrock handlers: dataset checks at create time and model
directories for inference, both with the caller's own credentials, so a
request can read exactly what its account may."""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
import threading
from pathlib import Path
from urllib.parse import urlparse

from jobforge.api.base import RequestContext
from jobforge.core.errors import ServiceError, validation_error

_download_lock = threading.Lock()


def split(uri: str) -> tuple[str, str]:
    parsed = urlparse(uri)
    return parsed.netloc, parsed.path.lstrip("/")


def client(ctx: RequestContext):
    import boto3
    from botocore.config import Config

    credential = ctx.runtime.keys.get(ctx.access_key_id)
    if credential is None:
        raise ServiceError("AccessDeniedException", "The request's credentials are no longer valid.")
    return boto3.client("s3", endpoint_url=ctx.settings.endpoint_url, region_name=ctx.region,
                        aws_access_key_id=credential.access_key_id, aws_secret_access_key=credential.secret_key,
                        aws_session_token=credential.session_token,
                        config=Config(s3={"addressing_style": "path"}, retries={"max_attempts": 2}))


def read_head(ctx: RequestContext, uri: str, max_bytes: int) -> bytes:
    """The first bytes of an object; the Bedrock error when it cannot be read."""
    from botocore.exceptions import ClientError

    bucket, key = split(uri)
    try:
        return client(ctx).get_object(Bucket=bucket, Key=key, Range=f"bytes=0-{max_bytes - 1}")["Body"].read()
    except ClientError as err:
        code = err.response.get("Error", {}).get("Code", "")
        if code in ("NoSuchKey", "NoSuchBucket", "404", "InvalidRange"):
            if code == "InvalidRange":
                return b""
            raise validation_error(f"Provided S3 location is invalid: {uri}. The object does not exist.") from None
        raise validation_error(f"Could not read {uri}: {code or err}") from None


def model_dir(ctx: RequestContext, location: str) -> Path:
    """A local directory holding the model at location (a path, or an S3 prefix downloaded once)."""
    if not location.startswith("s3://"):
        return Path(location)
    cache = ctx.settings.data_dir / "model-cache" / hashlib.sha256(location.encode()).hexdigest()[:24]
    if (cache / "config.json").is_file():
        return cache
    with _download_lock:
        if not (cache / "config.json").is_file():
            _download_prefix(ctx, location, cache)
    return cache


def _download_prefix(ctx: RequestContext, location: str, target: Path) -> None:
    from botocore.exceptions import ClientError

    bucket, prefix = split(location.rstrip("/") + "/")
    s3 = client(ctx)
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".download-", dir=target.parent))
    try:
        found = False
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
            for item in page.get("Contents", []):
                relative = item["Key"][len(prefix):]
                if not relative or relative.startswith("adapter/"):
                    continue
                path = staging / relative
                path.parent.mkdir(parents=True, exist_ok=True)
                s3.download_file(bucket, item["Key"], str(path))
                found = True
        if not found or not (staging / "config.json").is_file():
            raise validation_error(f"No Hugging Face model (config.json) under {location}.")
        os.replace(staging, target)  # visible only once complete
    except ClientError as err:
        raise validation_error(f"Could not read the model at {location}: {err}") from None
    finally:
        shutil.rmtree(staging, ignore_errors=True)
