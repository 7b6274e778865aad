"""GetObjectAttributes: what HeadObject and ListParts would tell of an object, in one call.

Each attribute is returned only when asked for, as S3 does. The parts of a
multipart object are listed by number and size, paged by MaxParts and
PartNumberMarker; their own checksums are not kept once an upload completes,
so no part lists one.
"""

from __future__ import annotations

from jobforge.api.s3.common import s3_handler, storage_class, store
from jobforge.core import checksums
from jobforge.core.errors import ServiceError

MAX_PARTS = 1000


def _parts(info, req) -> dict | None:
    if info.parts_count is None:
        return None
    limit = req.get("MaxParts", MAX_PARTS)
    marker = req.get("PartNumberMarker") or 0
    if limit < 0 or marker < 0:
        raise ServiceError("InvalidArgument", "Part number marker and max parts must be non-negative", 400)
    limit = min(limit, MAX_PARTS)
    numbered = list(enumerate(info.segments, start=1))[marker:]
    page = numbered[:limit]
    truncated = len(numbered) > len(page)
    return {"TotalPartsCount": info.parts_count, "PartNumberMarker": marker, "MaxParts": limit,
            "IsTruncated": truncated, "NextPartNumberMarker": page[-1][0] if page else marker,
            "Parts": [{"PartNumber": number, "Size": size} for number, (_, size) in page] or None}


def _checksum(info) -> dict | None:
    if not info.checksum:
        return None
    return {checksums.member(info.checksum["algorithm"]): info.checksum["value"],
            "ChecksumType": info.checksum["type"]}


@s3_handler("GetObjectAttributes")
def get_object_attributes(ctx, req):
    info = store(ctx).head(ctx.account_id, req["Bucket"], req["Key"], req.get("VersionId"))
    wanted = set(req["ObjectAttributes"])
    out = {"LastModified": info.last_modified, "VersionId": info.shown_version_id}
    if "ETag" in wanted:
        out["ETag"] = info.etag  # unquoted, unlike HeadObject's
    if "Checksum" in wanted:
        out["Checksum"] = _checksum(info)
    if "ObjectParts" in wanted:
        out["ObjectParts"] = _parts(info, req)
    if "StorageClass" in wanted:
        out["StorageClass"] = storage_class(info.headers)
    if "ObjectSize" in wanted:
        out["ObjectSize"] = info.size
    return out
