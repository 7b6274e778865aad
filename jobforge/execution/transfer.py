"""Moving job inputs and outputs between S3 URIs and the job's disk.

Only through the S3 API, with the job's own temporary credentials and the
endpoint it was given (from the environment), so a job reads and writes
exactly what its role may and never touches the server's files.
"""

from __future__ import annotations

import os
from pathlib import Path

from jobforge.execution.context import NoSuchData, WorkloadError, split_s3_uri
from jobforge.execution.local_paths import UnsafePath, path_for_key

MISSING = ("404", "NoSuchKey", "NoSuchBucket")
_session = None  # one per process, so that botocore parses S3's model once


def preload() -> None:
    """Parse what an S3 client needs now: the fork server does, and every worker it forks starts with it."""
    _boto3_session().client("s3", region_name="us-east-1", aws_access_key_id="preload",
                            aws_secret_access_key="preload")


def _boto3_session():
    global _session
    if _session is None:
        import boto3

        _session = boto3.session.Session()
    return _session


class S3Transfer:
    def __init__(self):
        self._client = None

    @property
    def client(self):
        if self._client is None:
            from botocore.config import Config

            # The credentials of the environment as it is now, not as the shared session may have cached them.
            self._client = _boto3_session().client(
                "s3", aws_access_key_id=os.environ.get("AWS_ACCESS_KEY_ID"),
                aws_secret_access_key=os.environ.get("AWS_SECRET_ACCESS_KEY"),
                aws_session_token=os.environ.get("AWS_SESSION_TOKEN"),
                config=Config(s3={"addressing_style": "path"}, retries={"mode": "standard"}))
        return self._client

    def download(self, uri: str, path: Path, key_prefix: bool = False) -> Path:
        """One object to path, or, for a URI ending in '/', every object under it into the folder path.

        With ``key_prefix``, every object whose key starts with the URI's key goes into the folder path, at its
        key relative to the key's last '/' (how SageMaker and Braket place an S3Prefix channel's objects).
        """
        from botocore.exceptions import ClientError

        bucket, key = split_s3_uri(uri)
        try:
            if key_prefix or uri.endswith("/") or not key:
                files = self._files_under(uri, bucket, key, path, key[:key.rfind("/") + 1] if key_prefix else key)
                for name, target in files:
                    target.parent.mkdir(parents=True, exist_ok=True)
                    self.client.download_file(bucket, name, str(target))
                return path
            path.parent.mkdir(parents=True, exist_ok=True)
            self.client.download_file(bucket, key, str(path))
            return path
        except ClientError as err:
            kind = NoSuchData if err.response.get("Error", {}).get("Code") in MISSING else WorkloadError
            raise kind(f"Could not read {uri}: {err}") from None
        except OSError as err:  # e.g. one key is a file and another a folder at the same path
            raise WorkloadError(f"Could not write {uri} to the job's disk: {err}") from None

    def _files_under(self, uri: str, bucket: str, prefix: str, root: Path, relative_to: str) -> list[tuple[str, Path]]:
        """(key, local path) of every object under the prefix, all checked before any is written."""
        files = []
        for page in self.client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
            for item in page.get("Contents", []):
                try:
                    target = path_for_key(root, item["Key"], relative_to)
                except UnsafePath as err:
                    raise WorkloadError(f"Could not read {uri}: the object key {err.name!r} cannot be a local "
                                        f"file name: it {err.reason}.") from None
                if target is not None:
                    files.append((item["Key"], target))
        if not files:
            raise NoSuchData(f"No objects under {uri}")
        return files

    def upload(self, path: Path, uri: str) -> None:
        from boto3.exceptions import S3UploadFailedError
        from botocore.exceptions import ClientError

        bucket, key = split_s3_uri(uri)
        if path.is_dir():
            prefix = key if key.endswith("/") or not key else key + "/"
            files = [(file, prefix + file.relative_to(path).as_posix())
                     for file in sorted(p for p in path.rglob("*") if p.is_file())]
        else:
            files = [(path, key)]
        try:
            for file, name in files:
                # One open file, its size and bytes read through it: upload_file takes the size from the path
                # and then opens it, so a checkpoint the job replaced in between (os.replace) was stored torn.
                with open(file, "rb") as body:
                    self.client.upload_fileobj(body, bucket, name)
        except (ClientError, S3UploadFailedError) as err:
            raise WorkloadError(f"Could not write {uri}: {err}") from None

    def delete(self, uri: str) -> None:
        from botocore.exceptions import ClientError

        bucket, key = split_s3_uri(uri)
        try:
            self.client.delete_object(Bucket=bucket, Key=key)
        except ClientError as err:
            raise WorkloadError(f"Could not delete {uri}: {err}") from None
