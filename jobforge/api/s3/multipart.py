"""Multipart uploads: create, upload part (or copy a range into one), list, complete, abort."""

from __future__ import annotations

from jobforge.api.s3.common import (checksum_members, content_headers, owner, parse_tagging, s3_handler,
                                    storage_class, store, url_encoded, user_metadata)
from jobforge.api.s3.objects import check_read_conditions, copy_range, copy_source
from jobforge.core import checksums
from jobforge.core.errors import ServiceError
from jobforge.core.objects import quoted

MAX_LISTED = 1000


@s3_handler("CreateMultipartUpload")
def create_multipart_upload(ctx, req):
    algorithm = checksums.algorithm_of(req["ChecksumAlgorithm"]) if req.get("ChecksumAlgorithm") else None
    upload_id = store(ctx).create_upload(
        ctx.account_id, ctx.principal_arn, req["Bucket"], req["Key"], headers=content_headers(req),
        user_metadata=user_metadata(req), tags=parse_tagging(req.get("Tagging")), algorithm=algorithm,
        checksum_type=req.get("ChecksumType"))
    upload = store(ctx).upload(ctx.account_id, req["Bucket"], req["Key"], upload_id)
    return {"Bucket": req["Bucket"], "Key": req["Key"], "UploadId": upload_id,
            "ChecksumAlgorithm": upload.checksum_algorithm, "ChecksumType": upload.checksum_type}


def _part_result(part: dict, algorithm: str | None) -> dict:
    """A part's ETag and checksum: the upload's algorithm, else what the client sent (else S3's default)."""
    result = {"ETag": quoted(part["etag"])}
    sent = [name for name in part["checksums"] if name != checksums.DEFAULT] or [checksums.DEFAULT]
    for name, value in part["checksums"].items():
        if name == algorithm or (algorithm is None and name in sent):
            result[checksums.member(name)] = value
    return result


@s3_handler("UploadPart")
def upload_part(ctx, req):
    objects = store(ctx)
    upload = objects.upload(ctx.account_id, req["Bucket"], req["Key"], req["UploadId"])
    part = objects.put_part(ctx.account_id, req["Bucket"], req["Key"], req["UploadId"], req["PartNumber"],
                            req["Body"])
    return _part_result(part, upload.checksum_algorithm)


@s3_handler("UploadPartCopy")
def upload_part_copy(ctx, req):
    objects = store(ctx)
    upload = objects.upload(ctx.account_id, req["Bucket"], req["Key"], req["UploadId"])
    algorithms = [upload.checksum_algorithm or checksums.DEFAULT]
    with copy_source(ctx, req["CopySource"]) as source:
        check_read_conditions(source.info, req, prefix="CopySource")
        selected = copy_range(req.get("CopySourceRange"), source.info.size)
        with objects.staged(source.read(*selected), algorithms) as body:
            part = objects.put_part(ctx.account_id, req["Bucket"], req["Key"], req["UploadId"], req["PartNumber"],
                                    body)
    result = _part_result(part, upload.checksum_algorithm)
    result["LastModified"] = part["last_modified"]
    return {"CopyPartResult": result, "CopySourceVersionId": source.info.shown_version_id}


@s3_handler("CompleteMultipartUpload")
def complete_multipart_upload(ctx, req):
    parts = (req.get("MultipartUpload") or {}).get("Parts") or []
    whole = {algorithm: req[checksums.member(algorithm)] for algorithm in checksums.ALGORITHMS
             if req.get(checksums.member(algorithm))}
    done = store(ctx).complete(ctx.account_id, req["Bucket"], req["Key"], req["UploadId"], parts,
                               whole_checksum=whole, checksum_type=req.get("ChecksumType"),
                               object_size=req.get("MpuObjectSize"), if_match=req.get("IfMatch"),
                               if_none_match=req.get("IfNoneMatch"))
    return {"Location": f"/{req['Bucket']}/{req['Key']}", "Bucket": req["Bucket"], "Key": req["Key"],
            "ETag": quoted(done.etag), "VersionId": done.version_id, **checksum_members(done.checksum)}


@s3_handler("AbortMultipartUpload")
def abort_multipart_upload(ctx, req):
    store(ctx).abort(ctx.account_id, req["Bucket"], req["Key"], req["UploadId"],
                     if_initiated_at=req.get("IfMatchInitiatedTime"))
    return {}


def _listing_limit(req, member: str, argument: str) -> int:
    value = req.get(member, MAX_LISTED)
    if value < 0:
        raise ServiceError("InvalidArgument", f"Argument {argument} must be an integer between 0 and 2147483647",
                           400, ArgumentName=argument, ArgumentValue=str(value))
    return min(value, MAX_LISTED)


@s3_handler("ListParts")
def list_parts(ctx, req):
    objects = store(ctx)
    upload = objects.upload(ctx.account_id, req["Bucket"], req["Key"], req["UploadId"])
    limit = _listing_limit(req, "MaxParts", "max-parts")
    marker = req.get("PartNumberMarker") or 0
    rows = objects.parts(req["UploadId"], after=marker, limit=limit + 1)
    truncated = len(rows) > limit
    rows = rows[:limit]
    parts = []
    for row in rows:
        part = {"PartNumber": row.part_number, "LastModified": row.last_modified, "ETag": quoted(row.etag),
                "Size": row.size}
        if upload.checksum_algorithm and upload.checksum_algorithm in row.checksums:
            part[checksums.member(upload.checksum_algorithm)] = row.checksums[upload.checksum_algorithm]
        parts.append(part)
    return {"Bucket": req["Bucket"], "Key": req["Key"], "UploadId": req["UploadId"], "PartNumberMarker": marker,
            "NextPartNumberMarker": rows[-1].part_number if truncated and rows else None, "MaxParts": limit,
            "IsTruncated": truncated, "Parts": parts or None,
            "Initiator": {"ID": upload.initiator, "DisplayName": ctx.account_id}, "Owner": owner(ctx.account_id),
            "StorageClass": storage_class(upload.headers), "ChecksumAlgorithm": upload.checksum_algorithm,
            "ChecksumType": upload.checksum_type}


@s3_handler("ListMultipartUploads")
def list_multipart_uploads(ctx, req):
    encoding = req.get("EncodingType")
    limit = _listing_limit(req, "MaxUploads", "max-uploads")
    listing = store(ctx).list_uploads(ctx.account_id, req["Bucket"], prefix=req.get("Prefix") or "",
                                      delimiter=req.get("Delimiter") or "", key_marker=req.get("KeyMarker") or "",
                                      upload_id_marker=req.get("UploadIdMarker") or "", limit=limit)
    next_key, next_upload_id = listing.last if listing.truncated else (None, None)
    return {"Bucket": req["Bucket"], "Prefix": url_encoded(req.get("Prefix"), encoding),
            "Delimiter": url_encoded(req.get("Delimiter"), encoding), "EncodingType": encoding,
            "KeyMarker": url_encoded(req.get("KeyMarker"), encoding), "UploadIdMarker": req.get("UploadIdMarker"),
            "MaxUploads": limit, "IsTruncated": listing.truncated, "NextKeyMarker": url_encoded(next_key, encoding),
            "NextUploadIdMarker": next_upload_id,
            "Uploads": [{"UploadId": row.upload_id, "Key": url_encoded(row.key, encoding), "Initiated": row.initiated,
                         "StorageClass": storage_class(row.headers), "Owner": owner(ctx.account_id),
                         "Initiator": {"ID": row.initiator, "DisplayName": ctx.account_id},
                         "ChecksumAlgorithm": row.checksum_algorithm, "ChecksumType": row.checksum_type}
                        for row in listing.uploads] or None,
            "CommonPrefixes": [{"Prefix": url_encoded(p, encoding)} for p in listing.common_prefixes] or None}
