"""Object operations: put, get (ranges, conditions), head, delete, copy, tagging; each of a key's latest
version or of the version a request names."""

from __future__ import annotations

import math
import re
from email.utils import formatdate
from urllib.parse import parse_qs, unquote

from jobforge.api.s3.common import (DEFAULT_STORAGE_CLASS, check_header_value, checksum_members, content_headers,
                                    object_headers, parse_tagging, s3_handler, store, tag_dict, user_metadata)
from jobforge.core import checksums
from jobforge.core.blobs import BlockingBody
from jobforge.core.errors import ServiceError
from jobforge.core.object_versions import no_such_version
from jobforge.core.objects import ObjectInfo, OpenObject, malformed_xml, precondition_failed, quoted

_RANGE = re.compile(r"bytes=(\d*)-(\d*)")
_COPY_RANGE = re.compile(r"bytes=(\d+)-(\d+)")
# Query parameter member → (the header it replaces, the parameter's name).
RESPONSE_OVERRIDES = {"ResponseContentType": ("ContentType", "response-content-type"),
                      "ResponseContentDisposition": ("ContentDisposition", "response-content-disposition"),
                      "ResponseContentEncoding": ("ContentEncoding", "response-content-encoding"),
                      "ResponseContentLanguage": ("ContentLanguage", "response-content-language"),
                      "ResponseCacheControl": ("CacheControl", "response-cache-control"),
                      "ResponseExpires": ("Expires", "response-expires")}
MAX_DELETE = 1000


def object_checksum(body) -> dict:
    """The checksum stored with a new object: the one the client sent, else S3's default."""
    algorithm = next(iter(body.checksums))
    return {"algorithm": algorithm, "value": body.checksums[algorithm], "type": "FULL_OBJECT"}


def byte_range(header: str | None, size: int) -> tuple[int, int] | None:
    """(start, length) of a Range header; None for the whole object (S3 ignores ranges it cannot parse)."""
    found = _RANGE.fullmatch((header or "").strip())
    if found is None or not (found[1] or found[2]):
        return None
    if found[1]:
        start = int(found[1])
        end = min(int(found[2]), size - 1) if found[2] else size - 1
        if found[2] and int(found[2]) < start:
            return None
    else:
        start, end = max(size - int(found[2]), 0), size - 1
        if int(found[2]) == 0:
            start = size
    if start >= size:
        raise ServiceError("InvalidRange", "The requested range is not satisfiable", 416,
                           RangeRequested=header, ActualObjectSize=size)
    return start, end - start + 1


def copy_range(header: str | None, size: int) -> tuple[int, int]:
    """(start, length) of x-amz-copy-source-range: only "bytes=first-last" inside the source is valid."""
    if header is None:
        return 0, size
    found = _COPY_RANGE.fullmatch(header.strip())
    if found is None or int(found[1]) > int(found[2]) or int(found[2]) >= size:
        raise ServiceError("InvalidArgument", f"Range specified is not valid for source object of size: {size}", 400,
                           ArgumentName="x-amz-copy-source-range", ArgumentValue=header)
    return int(found[1]), int(found[2]) - int(found[1]) + 1


def _etag_matches(condition: str, etag: str) -> bool:
    return any(item.strip() in ("*", quoted(etag), etag) for item in condition.split(","))


def check_read_conditions(info: ObjectInfo, req: dict, prefix: str = "") -> None:
    """If-Match / If-Unmodified-Since fail with 412, If-None-Match / If-Modified-Since with 304 (RFC 7232 order)."""
    modified = math.floor(info.last_modified)
    if_match, if_none_match = req.get(prefix + "IfMatch"), req.get(prefix + "IfNoneMatch")
    unmodified_since, modified_since = req.get(prefix + "IfUnmodifiedSince"), req.get(prefix + "IfModifiedSince")
    # S3 describes the object it did not send, as a GET would (never the copy source)
    described = {} if prefix else {"ETag": quoted(info.etag),
                                   "Last-Modified": formatdate(info.last_modified, usegmt=True)}
    failed = precondition_failed(headers=described)
    not_modified = ServiceError("NotModified", "Not Modified", 304, headers=described) if not prefix else failed
    if if_match is not None:
        if not _etag_matches(if_match, info.etag):
            raise failed
    elif unmodified_since is not None and modified > unmodified_since.timestamp():
        raise failed
    if if_none_match is not None:
        if _etag_matches(if_none_match, info.etag):
            raise not_modified
    elif modified_since is not None and modified <= modified_since.timestamp():
        raise not_modified


def _read_overrides(req: dict) -> dict:
    """The headers a GET or HEAD's response-* parameters replace, each a value a header can carry."""
    if req.get("PartNumber") is not None and req.get("Range") is not None:
        raise ServiceError("InvalidRequest", "Cannot specify both Range header and partNumber query parameter", 400)
    out = {}
    for member, (name, parameter) in RESPONSE_OVERRIDES.items():
        value = req.get(member)
        if value is None:
            continue
        if isinstance(value, str):  # response-expires is a timestamp, written by the server
            check_header_value(parameter, value)
        out[name] = value
    return out


def _read_view(info: ObjectInfo, req: dict, overrides: dict) -> tuple[dict, tuple[int, int]]:
    """The response members describing the bytes asked for, and (start, length) of those bytes."""
    part = req.get("PartNumber")
    check_read_conditions(info, req)
    if part is not None:
        selected = info.part_range(part)
    else:
        selected = byte_range(req.get("Range"), info.size)
    whole = selected is None or (part is not None and info.parts_count is None)
    out = object_headers(info, with_checksum=whole and req.get("ChecksumMode") == "ENABLED")
    start, length = selected if selected is not None else (0, info.size)
    out["ContentLength"] = length
    out["VersionId"] = info.shown_version_id
    if selected is not None and not (part is not None and info.parts_count is None):
        out["ContentRange"] = f"bytes {start}-{start + length - 1}/{info.size}"
    out.update(overrides)
    return out, (start, length)


@s3_handler("GetObject")
def get_object(ctx, req):
    overrides = _read_overrides(req)
    opened = store(ctx).open(ctx.account_id, req["Bucket"], req["Key"], req.get("VersionId"))
    try:
        out, (start, length) = _read_view(opened.info, req, overrides)
    except BaseException:
        opened.close()
        raise
    # The stream holds the version it started with: an overwrite or delete meanwhile does not cut it short.
    out["Body"] = BlockingBody(opened.read(start, length), close=opened.close)
    return out


@s3_handler("HeadObject")
def head_object(ctx, req):
    overrides = _read_overrides(req)
    return _read_view(store(ctx).head(ctx.account_id, req["Bucket"], req["Key"], req.get("VersionId")), req,
                      overrides)[0]


@s3_handler("PutObject")
def put_object(ctx, req):
    body = req["Body"]
    info = store(ctx).put(ctx.account_id, req["Bucket"], req["Key"], body, headers=content_headers(req),
                          user_metadata=user_metadata(req), tags=parse_tagging(req.get("Tagging")),
                          checksum=object_checksum(body), if_match=req.get("IfMatch"),
                          if_none_match=req.get("IfNoneMatch"))
    return {"ETag": quoted(info.etag), "Size": info.size, "VersionId": info.shown_version_id,
            **checksum_members(info.checksum)}


@s3_handler("DeleteObject")
def delete_object(ctx, req):
    deletion = store(ctx).delete(ctx.account_id, req["Bucket"], req["Key"], version_id=req.get("VersionId"),
                                 if_match=req.get("IfMatch"), if_modified_at=req.get("IfMatchLastModifiedTime"),
                                 if_size=req.get("IfMatchSize"))
    return {"DeleteMarker": deletion.delete_marker or None, "VersionId": deletion.version_id}


def _deleted(item: dict, deletion) -> dict:
    """A DeleteObjects entry: the version removed, or the delete marker written (or removed)."""
    entry = {"Key": item["Key"], "VersionId": item.get("VersionId")}
    if deletion.delete_marker:
        entry.update(DeleteMarker=True, DeleteMarkerVersionId=deletion.version_id)
    return entry


@s3_handler("DeleteObjects")
def delete_objects(ctx, req):
    request = req["Delete"]
    objects = request.get("Objects") or []
    if len(objects) > MAX_DELETE:
        raise malformed_xml()
    objects_store = store(ctx)
    objects_store.bucket(ctx.account_id, req["Bucket"])
    deleted, errors = [], []
    for item in objects:
        try:
            deletion = objects_store.delete(ctx.account_id, req["Bucket"], item["Key"],
                                            version_id=item.get("VersionId"), if_match=item.get("ETag"),
                                            if_modified_at=item.get("LastModifiedTime"), if_size=item.get("Size"))
            deleted.append(_deleted(item, deletion))
        except ServiceError as err:
            if err.code == "InvalidArgument" and item.get("VersionId") is not None:
                err = no_such_version(item["Key"], item["VersionId"])  # as S3 answers it in DeleteObjects
            errors.append({"Key": item["Key"], "VersionId": item.get("VersionId"), "Code": err.code,
                           "Message": err.message})
    return {"Deleted": None if request.get("Quiet") else deleted or None, "Errors": errors or None}


def copy_source(ctx, header: str) -> OpenObject:
    """The object named by x-amz-copy-source ("bucket/key", URL-encoded, optionally "?versionId=…"), held open."""
    path, _, query = header.partition("?")
    bucket, _, key = unquote(path).lstrip("/").partition("/")
    if not bucket or not key:
        raise ServiceError("InvalidArgument", "Copy Source must mention the source bucket and key: "
                           "sourcebucket/sourcekey", 400)
    version_id = parse_qs(query, keep_blank_values=True).get("versionId", [None])[-1]
    try:
        return store(ctx).open(ctx.account_id, bucket, key, version_id)
    except ServiceError as err:
        if err.code == "MethodNotAllowed":
            raise ServiceError("InvalidRequest", "The source of a copy request may not specifically refer to a "
                               "delete marker by version id.", 400) from None
        raise


def _copy_checksum(source: OpenObject, req: dict) -> dict | None:
    """The source's checksum, or a full-object checksum of the algorithm the copy asks for, over the data."""
    checksum = source.info.checksum
    if not req.get("ChecksumAlgorithm"):
        return checksum
    algorithm = checksums.algorithm_of(req["ChecksumAlgorithm"])
    if checksum and checksum["algorithm"] == algorithm and checksum["type"] == "FULL_OBJECT":
        return checksum
    return {"algorithm": algorithm, "value": source.digest(algorithm), "type": "FULL_OBJECT"}


@s3_handler("CopyObject")
def copy_object(ctx, req):
    with copy_source(ctx, req["CopySource"]) as source:
        info = _copy(ctx, source, req)
    result = {"ETag": quoted(info.etag), "LastModified": info.last_modified}
    if info.checksum:
        result[checksums.member(info.checksum["algorithm"])] = info.checksum["value"]
        result["ChecksumType"] = info.checksum["type"]
    return {"CopyObjectResult": result, "CopySourceVersionId": source.info.shown_version_id,
            "VersionId": info.shown_version_id}


def _copy(ctx, opened: OpenObject, req: dict) -> ObjectInfo:
    source = opened.info
    check_read_conditions(source, req, prefix="CopySource")
    replace = req.get("MetadataDirective", "COPY") == "REPLACE"
    if (source.bucket, source.key) == (req["Bucket"], req["Key"]) and source.is_latest and not replace \
            and not req.get("StorageClass"):
        raise ServiceError("InvalidRequest", "This copy request is illegal because it is trying to copy an object "
                           "to itself without changing the object's metadata, storage class, website redirect "
                           "location or encryption attributes.", 400)
    headers = content_headers(req) if replace else {name: value for name, value in source.headers.items()
                                                    if name != "StorageClass"}  # a copy is STANDARD unless asked
    if not replace and req.get("StorageClass") not in (None, DEFAULT_STORAGE_CLASS):
        headers["StorageClass"] = req["StorageClass"]
    metadata = user_metadata(req) if replace else source.user_metadata
    tags = parse_tagging(req.get("Tagging")) if req.get("TaggingDirective") == "REPLACE" else source.tags
    return store(ctx).copy(ctx.account_id, opened, req["Bucket"], req["Key"], headers=headers,
                           user_metadata=metadata, tags=tags, checksum=_copy_checksum(opened, req),
                           if_match=req.get("IfMatch"), if_none_match=req.get("IfNoneMatch"))


@s3_handler("GetObjectTagging")
def get_object_tagging(ctx, req):
    info = store(ctx).head(ctx.account_id, req["Bucket"], req["Key"], req.get("VersionId"))
    return {"TagSet": [{"Key": key, "Value": value} for key, value in info.tags.items()],
            "VersionId": info.shown_version_id}


@s3_handler("PutObjectTagging")
def put_object_tagging(ctx, req):
    tags = tag_dict([(tag["Key"], tag["Value"]) for tag in req["Tagging"].get("TagSet") or []])
    info = store(ctx).set_tags(ctx.account_id, req["Bucket"], req["Key"], tags, req.get("VersionId"))
    return {"VersionId": info.shown_version_id}


@s3_handler("DeleteObjectTagging")
def delete_object_tagging(ctx, req):
    info = store(ctx).set_tags(ctx.account_id, req["Bucket"], req["Key"], {}, req.get("VersionId"))
    return {"VersionId": info.shown_version_id}
