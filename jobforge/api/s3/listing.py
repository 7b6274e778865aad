"""ListObjectsV2 and ListObjects (v1)."""

from __future__ import annotations

from jobforge.api.s3.common import checksum_members, owner, s3_handler, storage_class, store, url_encoded
from jobforge.core.objects import encode_resume, quoted
from jobforge.core.errors import ServiceError

MAX_KEYS = 1000


def _max_keys(req) -> int:
    value = req.get("MaxKeys", MAX_KEYS)
    if value < 0:
        raise ServiceError("InvalidArgument", "maxKeys should be non-negative", 400)
    return min(value, MAX_KEYS)


def _entry(info, encoding, fetch_owner: bool, account_id: str) -> dict:
    entry = {"Key": url_encoded(info.key, encoding), "LastModified": info.last_modified,
             "ETag": quoted(info.etag), "Size": info.size,
             "StorageClass": storage_class(info.headers)}
    if info.checksum:
        entry["ChecksumAlgorithm"] = [info.checksum["algorithm"]]
        entry["ChecksumType"] = checksum_members(info.checksum)["ChecksumType"]
    if fetch_owner:
        entry["Owner"] = owner(account_id)
    return entry


@s3_handler("ListObjectsV2")
def list_objects_v2(ctx, req):
    encoding = req.get("EncodingType")
    prefix, delimiter = req.get("Prefix") or "", req.get("Delimiter") or ""
    max_keys = _max_keys(req)
    listing = store(ctx).list(ctx.account_id, req["Bucket"], prefix=prefix, delimiter=delimiter,
                              after=req.get("StartAfter") or "", resume=req.get("ContinuationToken"),
                              max_keys=max_keys)
    return {
        "Name": req["Bucket"], "Prefix": url_encoded(prefix, encoding),
        "Delimiter": url_encoded(delimiter or None, encoding), "MaxKeys": max_keys,
        "EncodingType": encoding, "KeyCount": len(listing.contents) + len(listing.common_prefixes),
        "IsTruncated": listing.truncated, "ContinuationToken": req.get("ContinuationToken"),
        "NextContinuationToken": listing.resume, "StartAfter": url_encoded(req.get("StartAfter"), encoding),
        "Contents": [_entry(info, encoding, req.get("FetchOwner", False), ctx.account_id)
                     for info in listing.contents] or None,
        "CommonPrefixes": [{"Prefix": url_encoded(p, encoding)} for p in listing.common_prefixes] or None,
    }


@s3_handler("ListObjects")
def list_objects(ctx, req):
    encoding = req.get("EncodingType")
    prefix, delimiter, marker = req.get("Prefix") or "", req.get("Delimiter") or "", req.get("Marker") or ""
    resume = None
    if marker and delimiter and marker.endswith(delimiter) and marker.startswith(prefix):
        resume = encode_resume(marker, True)  # a marker that is a common prefix skips every key under it
    max_keys = _max_keys(req)
    listing = store(ctx).list(ctx.account_id, req["Bucket"], prefix=prefix, delimiter=delimiter,
                              after="" if resume else marker, resume=resume, max_keys=max_keys)
    last = max([info.key for info in listing.contents] + listing.common_prefixes, default=None)
    return {
        "Name": req["Bucket"], "Prefix": url_encoded(prefix, encoding), "Marker": url_encoded(marker, encoding),
        "Delimiter": url_encoded(delimiter or None, encoding), "MaxKeys": max_keys, "EncodingType": encoding,
        "IsTruncated": listing.truncated,
        "NextMarker": url_encoded(last, encoding) if listing.truncated and delimiter else None,
        "Contents": [_entry(info, encoding, True, ctx.account_id) for info in listing.contents] or None,
        "CommonPrefixes": [{"Prefix": url_encoded(p, encoding)} for p in listing.common_prefixes] or None,
    }
