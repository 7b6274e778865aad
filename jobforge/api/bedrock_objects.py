"""Reading S3 from Bedrock handlers: dataset checks at create time and model
directories for inference, straight from jobforge's object store with the
caller's account, so a request reads exactly what its account may. A model
directory is an S3 prefix copied into the data dir's model cache (every key
must map to a file under it), or a directory the operator registered for a
foundation model; no other host path is ever read."""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
import threading
from pathlib import Path
from urllib.parse import urlparse

from jobforge.api.base import RequestContext
from jobforge.core import models_catalog, objects
from jobforge.core.errors import ServiceError, validation_error
from jobforge.execution.local_paths import UnsafePath, path_for_key

_download_lock = threading.Lock()


def split(uri: str) -> tuple[str, str]:
    parsed = urlparse(uri)
    return parsed.netloc, parsed.path.lstrip("/")


def store(ctx: RequestContext) -> objects.ObjectStore:
    return ctx.runtime.object_store


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
    """A local directory holding the model at location (a registered directory, or an S3 prefix copied once)."""
    if not location.startswith("s3://"):
        if not any(m.location == location for m in models_catalog.all_models(ctx.engine)):
            raise validation_error(f"The model location {location} is neither an S3 prefix nor a model directory "
                                   "registered on this server.")
        return Path(location)
    cache = ctx.settings.data_dir / "model-cache" / hashlib.sha256(
        f"{ctx.account_id}:{location}".encode()).hexdigest()[:24]
    if (cache / "config.json").is_file():
        return cache
    with _download_lock:
        if not (cache / "config.json").is_file():
            _copy_prefix(ctx, location, cache)
    return cache


def check_model_files(ctx: RequestContext, location: str) -> None:
    """ValidationException, naming the key, when an object under a model prefix cannot be a file of the model."""
    for _ in _model_files(ctx, location, Path("model")):
        pass


def _model_files(ctx: RequestContext, location: str, root: Path):
    """(object info, path under root) of each file of the model at an S3 prefix; the adapter folder is not one."""
    bucket, prefix = split(location.rstrip("/") + "/")
    source = store(ctx)
    resume = None
    while True:
        try:
            listing = source.list(ctx.account_id, bucket, prefix=prefix, resume=resume)
        except ServiceError as err:
            raise validation_error(f"Could not read the model at {location}: {err.message}") from None
        for info in listing.contents:
            try:
                path = path_for_key(root, info.key, prefix)
            except UnsafePath as err:
                raise validation_error(f"The model at {location} cannot be copied: the object key {err.name} "
                                       f"cannot be a local file name: it {err.reason}.") from None
            if path is not None and not info.key[len(prefix):].startswith("adapter/"):
                yield info, path
        if not listing.truncated:
            return
        resume = listing.resume


def _copy_prefix(ctx: RequestContext, location: str, target: Path) -> None:
    source = store(ctx)
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".copy-", dir=target.parent))
    try:
        files = list(_model_files(ctx, location, staging))  # every key checked before any file is written
        for info, path in files:
            try:
                path.parent.mkdir(parents=True, exist_ok=True)
                with open(path, "wb") as handle:
                    for chunk in source.read(info, 0, info.size):
                        handle.write(chunk)
            except OSError as err:  # e.g. one key is a file and another a folder at the same path
                raise validation_error(f"The model at {location} cannot be copied: the object key {info.key} "
                                       f"cannot be written as a local file: {err.strerror or err}.") from None
        if not (staging / "config.json").is_file():
            raise validation_error(f"No Hugging Face model (config.json) under {location}.")
        os.replace(staging, target)  # visible only once complete
    except ServiceError as err:
        if err.code == "ValidationException":
            raise
        raise validation_error(f"Could not read the model at {location}: {err.message}") from None
    finally:
        shutil.rmtree(staging, ignore_errors=True)
