"""Moving job inputs and outputs between S3 URIs and the job's disk.

Uses boto3 with the job's own temporary credentials and endpoint (from the
environment), so a job reads and writes exactly what its role may.
"""

from __future__ import annotations

from pathlib import Path

from jobforge.engine.context import WorkloadError, split_s3_uri


class S3Transfer:
    def __init__(self, data_dir: Path):
        self.data_dir = data_dir
        self._client = None

    @property
    def client(self):
        if self._client is None:
            import boto3
            from botocore.config import Config

            self._client = boto3.client("s3", config=Config(s3={"addressing_style": "path"},
                                                            retries={"mode": "standard"}))
        return self._client

    def download(self, uri: str, path: Path) -> Path:
        from botocore.exceptions import ClientError

        bucket, key = split_s3_uri(uri)
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
        from botocore.exceptions import ClientError

        bucket, key = split_s3_uri(uri)
        try:
            if path.is_dir():
                prefix = key if key.endswith("/") or not key else key + "/"
                for file in sorted(p for p in path.rglob("*") if p.is_file()):
                    self.client.upload_file(str(file), bucket, prefix + file.relative_to(path).as_posix())
            else:
                self.client.upload_file(str(path), bucket, key)
        except ClientError as err:
            raise WorkloadError(f"Could not write {uri}: {err}") from None
