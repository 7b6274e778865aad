"""Reading S3 from Bedrock handlers: dataset checks at create time and model
directories for inference, straight from jobforge's object store with the
caller's account, so a request reads exactly what its account may."""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
import threading
from pathlib import Path
from urllib.parse import urlparse

from jobforge.api.base import RequestContext
from jobforge.core import objects
from jobforge.core.errors import ServiceError, validation_error

_download_lock = threading.Lock()


def split(uri: str) -> tuple[str, str]:
    parsed = urlparse(uri)
    return parsed.netloc, parsed.path.lstrip("/")


def store(ctx: RequestContext) -> objects.ObjectStore:
    return objects.object_store(ctx.settings, ctx.engine)


def read_head(ctx: RequestContext, uri: str, max_bytes: int) -> bytes:
    """The first bytes of an object; Bedrock's error when it cannot be read."""
    bucket, key = split(uri)
    source = store(ctx)
    try:
        info = source.head(ctx.account_id, bucket, key)
    except ServiceError as err:
        if err.code in ("NoSuchKey", "NoSuchBucket"):
            raise validation_error(f"Provided S3 location is invalid: {uri}. The object does not exist.") from None
        raise validation_error(f"Could not read {uri}: {err.message}") from None
    return b"".join(source.read(info, 0, min(max_bytes, info.size)))


def check_output_location(ctx: RequestContext, uri: str) -> None:
    """An output S3 URI must name a bucket of the caller's account, checked before the job is created."""
    bucket, _ = split(uri)
    try:
        store(ctx).bucket(ctx.account_id, bucket)
    except ServiceError as err:
        if err.code == "NoSuchBucket":
            raise validation_error(f"Provided S3 location is invalid: {uri}. The bucket {bucket} does not "
                                   "exist.") from None
        raise validation_error(f"Provided S3 location is invalid: {uri}. Access to the bucket {bucket} is "
                               "denied.") from None


def model_dir(ctx: RequestContext, location: str) -> Path:
    """A local directory holding the model at location (a path, or an S3 prefix copied once)."""
    if not location.startswith("s3://"):
        return Path(location)
    cache = ctx.settings.data_dir / "model-cache" / hashlib.sha256(
        f"{ctx.account_id}:{location}".encode()).hexdigest()[:24]
    if (cache / "config.json").is_file():
        return cache
    with _download_lock:
        if not (cache / "config.json").is_file():
            _copy_prefix(ctx, location, cache)
    return cache


def _copy_prefix(ctx: RequestContext, location: str, target: Path) -> None:
    bucket, prefix = split(location.rstrip("/") + "/")
    source = store(ctx)
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".copy-", dir=target.parent))
    try:
        resume = None
        while True:
            listing = source.list(ctx.account_id, bucket, prefix=prefix, resume=resume)
            for info in listing.contents:
                relative = info.key[len(prefix):]
                if not relative or relative.startswith("adapter/"):
                    continue
                path = staging / relative
                path.parent.mkdir(parents=True, exist_ok=True)
                with open(path, "wb") as handle:
                    for chunk in source.read(info, 0, info.size):
                        handle.write(chunk)
            if not listing.truncated:
                break
            resume = listing.resume
        if not (staging / "config.json").is_file():
            raise validation_error(f"No Hugging Face model (config.json) under {location}.")
        os.replace(staging, target)  # visible only once complete
    except ServiceError as err:
        if err.code == "ValidationException":
            raise
        raise validation_error(f"Could not read the model at {location}: {err.message}") from None
    finally:
        shutil.rmtree(staging, ignore_errors=True)
