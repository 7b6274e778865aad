"""Moving job inputs and outputs between S3 URIs and the job's disk.

Uses boto3 with the job's own temporary credentials and endpoint (from the
environment), so a job reads and writes exactly what its role may. When the
server keeps objects in a local directory on this machine, files are copied
to and from that directory directly instead, through the same object store
code and the same ownership checks as the S3 API, with the account of the
job's own access key.
"""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

from jobforge.engine.context import WorkloadError, split_s3_uri

COPY_CHUNK = 8 * 1024 * 1024


class LocalObjects:
    """Direct access to a co-located local object store, as the account of one access key."""

    def __init__(self, store, account_id: str):
        self.store = store
        self.account_id = account_id

    @classmethod
    def open(cls, data_dir: Path, access_key_id: str | None) -> "LocalObjects | None":
        """None unless the server's objects are local files here and the key is live in its database."""
        import sqlalchemy as sa

        from jobforge.core.blobs import LocalBlobs, backend_of
        from jobforge.core.objects import ObjectStore
        from jobforge.core.store import access_keys, create_engine, reading

        database = Path(data_dir) / "jobforge.db"
        if not access_key_id or not database.exists() or backend_of(data_dir) != "local":
            return None
        engine = create_engine(f"sqlite:///{database}")
        with reading(engine) as conn:
            key = conn.execute(sa.select(access_keys).where(access_keys.c.access_key_id == access_key_id)).first()
        # The job's key is in the database only if it is the live server's: anything else uses the API.
        if key is None or (key.expires_at is not None and key.expires_at < time.time()):
            engine.dispose()
            return None
        return cls(ObjectStore(engine, LocalBlobs(Path(data_dir) / "objects")), key.account_id)

    def download(self, bucket: str, key: str, path: Path) -> None:
        info = self.store.head(self.account_id, bucket, key)
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_name(path.name + ".partial")
        with open(partial, "wb") as target:
            for blob, _ in info.segments:
                with open(self.store.blobs.path(blob), "rb") as source:
                    shutil.copyfileobj(source, target, COPY_CHUNK)
        os.replace(partial, path)

    def keys(self, bucket: str, prefix: str) -> list[str]:
        keys, resume = [], None
        while True:
            listing = self.store.list(self.account_id, bucket, prefix=prefix, resume=resume)
            keys += [info.key for info in listing.contents]
            if not listing.truncated:
                return keys
            resume = listing.resume

    def upload(self, path: Path, bucket: str, key: str) -> None:
        from jobforge.core import checksums
        from jobforge.core.objects import full_object_checksum

        with open(path, "rb") as source, \
                self.store.staged(iter(lambda: source.read(COPY_CHUNK), b""), [checksums.DEFAULT]) as body:
            self.store.put(self.account_id, bucket, key, body, headers={"ContentType": "binary/octet-stream"},
                           user_metadata={}, tags={}, checksum=full_object_checksum(body))


class S3Transfer:
    def __init__(self, data_dir: Path):
        self.data_dir = data_dir
        self._client = None
        self._local: LocalObjects | None | bool = False  # False: not looked for yet

    @property
    def client(self):
        if self._client is None:
            import boto3
            from botocore.config import Config

            self._client = boto3.client("s3", config=Config(s3={"addressing_style": "path"},
                                                            retries={"mode": "standard"}))
        return self._client

    @property
    def local(self) -> LocalObjects | None:
        if self._local is False:
            self._local = LocalObjects.open(self.data_dir, os.environ.get("AWS_ACCESS_KEY_ID"))
        return self._local

    def download(self, uri: str, path: Path) -> Path:
        bucket, key = split_s3_uri(uri)
        if self.local is not None:
            try:
                return self._download_local(uri, bucket, key, path)
            except FileNotFoundError:
                pass  # an object replaced while being copied: read it through the API
        return self._download_api(uri, bucket, key, path)

    def _download_local(self, uri: str, bucket: str, key: str, path: Path) -> Path:
        from jobforge.core.errors import ServiceError

        try:
            if uri.endswith("/") or not key:
                keys = self.local.keys(bucket, key)
                if not keys:
                    raise WorkloadError(f"No objects under {uri}")
                for name in keys:
                    self.local.download(bucket, name, path / name[len(key):])
                return path
            self.local.download(bucket, key, path)
            return path
        except ServiceError as err:
            raise WorkloadError(f"Could not read {uri}: {err.code}: {err.message}") from None

    def _download_api(self, uri: str, bucket: str, key: str, path: Path) -> Path:
        from botocore.exceptions import ClientError

        try:
            if uri.endswith("/") or not key:
                paginator = self.client.get_paginator("list_objects_v2")
                found = False
                for page in paginator.paginate(Bucket=bucket, Prefix=key):
                    for item in page.get("Contents", []):
                        found = True
                        target = path / item["Key"][len(key):]
                        target.parent.mkdir(parents=True, exist_ok=True)
                        self.client.download_file(bucket, item["Key"], str(target))
                if not found:
                    raise WorkloadError(f"No objects under {uri}")
                return path
            path.parent.mkdir(parents=True, exist_ok=True)
            self.client.download_file(bucket, key, str(path))
            return path
        except ClientError as err:
            raise WorkloadError(f"Could not read {uri}: {err}") from None

    def upload(self, path: Path, uri: str) -> None:
        bucket, key = split_s3_uri(uri)
        if path.is_dir():
            prefix = key if key.endswith("/") or not key else key + "/"
            files = [(file, prefix + file.relative_to(path).as_posix())
                     for file in sorted(p for p in path.rglob("*") if p.is_file())]
        else:
            files = [(path, key)]
        if self.local is not None:
            from jobforge.core.errors import ServiceError

            try:
                for file, name in files:
                    self.local.upload(file, bucket, name)
                return
            except ServiceError as err:
                raise WorkloadError(f"Could not write {uri}: {err.code}: {err.message}") from None
        from botocore.exceptions import ClientError

        try:
            for file, name in files:
                self.client.upload_file(str(file), bucket, name)
        except ClientError as err:
            raise WorkloadError(f"Could not write {uri}: {err}") from None
