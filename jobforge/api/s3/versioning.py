"""Bucket versioning: its status, and the listing of every version and delete marker of a bucket."""

from __future__ import annotations

from jobforge.api.s3.common import checksum_members, owner, s3_handler, storage_class, store, url_encoded
from jobforge.core.errors import ServiceError
from jobforge.core.objects import quoted

MAX_KEYS = 1000


@s3_handler("PutBucketVersioning")
def put_bucket_versioning(ctx, req):
    configuration = req.get("VersioningConfiguration") or {}
    if configuration.get("MFADelete") == "Enabled" or req.get("MFA") is not None:
        raise ServiceError("NotImplemented", "A header you provided implies functionality that is not "
                           "implemented: jobforge has no MFA devices, so MFA delete cannot be enabled", 501)
    status = configuration.get("Status")
    if status is None:
        if configuration.get("MFADelete") is not None:
            return {}  # MFA delete disabled, as it always is: nothing changes
        raise ServiceError("IllegalVersioningConfigurationException", "The Versioning element must be specified",
                           400)
    store(ctx).set_versioning(ctx.account_id, req["Bucket"], status)
    return {}


@s3_handler("GetBucketVersioning")
def get_bucket_versioning(ctx, req):
    return {"Status": store(ctx).versioning(ctx.account_id, req["Bucket"])}


def _version_entry(info, encoding: str | None, account_id: str) -> dict:
    entry = {"Key": url_encoded(info.key, encoding), "VersionId": info.version_id, "IsLatest": info.is_latest,
             "LastModified": info.last_modified, "Owner": owner(account_id)}
    if info.delete_marker:
        return entry
    entry.update(ETag=quoted(info.etag), Size=info.size, StorageClass=storage_class(info.headers))
    if info.checksum:
        entry["ChecksumAlgorithm"] = [info.checksum["algorithm"]]
        entry["ChecksumType"] = checksum_members(info.checksum)["ChecksumType"]
    return entry


@s3_handler("ListObjectVersions")
def list_object_versions(ctx, req):
    encoding = req.get("EncodingType")
    max_keys = req.get("MaxKeys", MAX_KEYS)
    if max_keys < 0:
        raise ServiceError("InvalidArgument", "maxKeys should be non-negative", 400)
    max_keys = min(max_keys, MAX_KEYS)
    listing = store(ctx).list_versions(
        ctx.account_id, req["Bucket"], prefix=req.get("Prefix") or "", delimiter=req.get("Delimiter") or "",
        key_marker=req.get("KeyMarker") or "", version_id_marker=req.get("VersionIdMarker") or "", limit=max_keys)
    next_key, next_version_id = listing.last if listing.truncated else (None, None)
    entries = [_version_entry(info, encoding, ctx.account_id) for info in listing.versions]
    return {
        "Name": req["Bucket"], "Prefix": url_encoded(req.get("Prefix"), encoding),
        "Delimiter": url_encoded(req.get("Delimiter"), encoding), "MaxKeys": max_keys, "EncodingType": encoding,
        "KeyMarker": url_encoded(req.get("KeyMarker") or "", encoding),
        "VersionIdMarker": req.get("VersionIdMarker") or "",
        "IsTruncated": listing.truncated, "NextKeyMarker": url_encoded(next_key, encoding),
        "NextVersionIdMarker": next_version_id,
        "Versions": [entry for entry, info in zip(entries, listing.versions) if not info.delete_marker] or None,
        "DeleteMarkers": [entry for entry, info in zip(entries, listing.versions) if info.delete_marker] or None,
        "CommonPrefixes": [{"Prefix": url_encoded(p, encoding)} for p in listing.common_prefixes] or None,
    }
