"""Object version ids and the answers S3 gives about versions.

A bucket that never had versioning keeps one version of each key, whose id is
"null"; so does a bucket whose versioning is suspended, beside the versions it
kept while versioning was enabled. Version ids jobforge gives are 32 URL-safe
characters, never starting with '-' (nor do its multipart upload ids); anything else (but "null") is not a
version id at all.
"""

from __future__ import annotations

import re
import secrets
from email.utils import formatdate

from jobforge.core.errors import ServiceError

NULL_VERSION = "null"
ENABLED = "Enabled"
_VERSION_ID = re.compile(r"[A-Za-z0-9_-]{32}")


def cli_safe_token(nbytes: int) -> str:
    """A URL-safe random id that never starts with '-', which a command line would read as an option
    (``aws s3api get-object --version-id -x...`` fails to parse)."""
    token = secrets.token_urlsafe(nbytes)
    return "_" + token[1:] if token.startswith("-") else token


def new_version_id() -> str:
    return cli_safe_token(24)


def check_version_id(version_id: str) -> None:
    if version_id == "":
        raise ServiceError("InvalidArgument", "Version id cannot be the empty string", 400,
                           ArgumentName="versionId", ArgumentValue="")
    if version_id != NULL_VERSION and not _VERSION_ID.fullmatch(version_id):
        raise ServiceError("InvalidArgument", "Invalid version id specified", 400, ArgumentName="versionId",
                           ArgumentValue=version_id)


def no_such_version(key: str, version_id: str) -> ServiceError:
    return ServiceError("NoSuchVersion", "The specified version does not exist.", 404, Key=key,
                        VersionId=version_id)


def deleted_key(key: str, marker) -> ServiceError:
    """A read of a key whose latest version is a delete marker: the key is gone, as S3 says with the marker."""
    return ServiceError("NoSuchKey", "The specified key does not exist.", 404,
                        headers={"x-amz-delete-marker": "true", "x-amz-version-id": marker.version_id}, Key=key)


def marker_addressed(marker) -> ServiceError:
    """A request naming a delete marker's version id for what only data versions have."""
    return ServiceError("MethodNotAllowed", "The specified method is not allowed against this resource.", 405,
                        headers={"x-amz-delete-marker": "true", "x-amz-version-id": marker.version_id,
                                 "Last-Modified": formatdate(marker.last_modified, usegmt=True)},
                        ResourceType="DeleteMarker")
