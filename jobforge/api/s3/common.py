"""What the S3 handlers share: registration, the store, content headers, owners, checksum members."""

from __future__ import annotations

import functools
import hashlib
import re
from urllib.parse import parse_qsl, quote_plus

from jobforge.api.base import handler
from jobforge.api.s3.protection import check_protections
from jobforge.core import checksums
from jobforge.core.blobs import StagedBody
from jobforge.core.errors import ServiceError
from jobforge.core.objects import ObjectInfo, ObjectStore, quoted
from jobforge.core.text import unstorable_text

# Request members kept with an object and returned by GetObject/HeadObject.
CONTENT_HEADERS = ("ContentType", "CacheControl", "ContentDisposition", "ContentEncoding", "ContentLanguage",
                   "WebsiteRedirectLocation")
DEFAULT_CONTENT_TYPE = "binary/octet-stream"
DEFAULT_STORAGE_CLASS = "STANDARD"  # never stored, never sent as x-amz-storage-class
# Classes whose objects AWS serves at once: kept as a label. The archive classes (GLACIER, DEEP_ARCHIVE)
# need RestoreObject before a read, and the rest belong to directory buckets or other hardware.
READABLE_STORAGE_CLASSES = {"STANDARD", "REDUCED_REDUNDANCY", "STANDARD_IA", "ONEZONE_IA", "INTELLIGENT_TIERING",
                            "GLACIER_IR"}
MAX_TAGS = 10
MAX_METADATA_BYTES = 2048
REDIRECT_PREFIXES = ("/", "http://", "https://")
_CONTROL_CHARACTERS = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")


def s3_handler(operation: str):
    """Register an S3 handler (run in a worker thread) behind the protection rules every S3 request meets.

    A staged body the handler did not store (it failed, or the request was refused) is discarded.
    """

    def register(fn):
        @functools.wraps(fn)
        def checked(ctx, req):
            try:
                check_protections(operation, req, ctx.account_id)
                return fn(ctx, req)
            finally:
                if isinstance(req.get("Body"), StagedBody):
                    req["Body"].discard()

        return handler("s3", operation, blocking=True)(checked)

    return register


def store(ctx) -> ObjectStore:
    return ctx.runtime.object_store


def check_header_value(argument: str, value: str) -> None:
    """A value the client asks to be sent back as a header: S3 sends Latin-1 text and refuses the rest."""
    try:
        value.encode("latin-1")
    except UnicodeEncodeError:
        raise ServiceError("InvalidArgument", "Header value cannot be represented using ISO-8859-1.", 400,
                           ArgumentName=argument, ArgumentValue=value) from None
    if _CONTROL_CHARACTERS.search(value):
        raise ServiceError("InvalidArgument", "Header value cannot contain control characters.", 400,
                           ArgumentName=argument, ArgumentValue=value)


def content_headers(req: dict) -> dict:
    headers = {name: req[name] for name in CONTENT_HEADERS if req.get(name) is not None}
    redirect = headers.get("WebsiteRedirectLocation")
    if redirect is not None and not redirect.startswith(REDIRECT_PREFIXES):
        raise ServiceError("InvalidRedirectLocation", "The website redirect location must have a prefix of "
                           "'http://' or 'https://' or '/'.", 400)
    encoding = stored_content_encoding(headers.get("ContentEncoding"))
    if encoding:
        headers["ContentEncoding"] = encoding
    else:
        headers.pop("ContentEncoding", None)
    if req.get("Expires") is not None:
        headers["Expires"] = req["Expires"].timestamp()
    headers.setdefault("ContentType", DEFAULT_CONTENT_TYPE)
    requested = req.get("StorageClass")
    if requested is not None and requested not in READABLE_STORAGE_CLASSES:
        raise ServiceError("InvalidStorageClass", f"The storage class you specified is not valid: jobforge keeps "
                           f"objects readable at once and serves {requested} objects nowhere "
                           f"(use one of {', '.join(sorted(READABLE_STORAGE_CLASSES))})", 400,
                           StorageClassRequested=requested)
    if requested not in (None, DEFAULT_STORAGE_CLASS):
        headers["StorageClass"] = requested  # kept with the headers, returned as they are
    return headers


def stored_content_encoding(value: str | None) -> str | None:
    """Content-Encoding as sent, less aws-chunked (the request's transfer encoding, not the object's)."""
    if value is None:
        return None
    items = value.split(",")
    kept = [item for item in items if item.strip().lower() != "aws-chunked"]
    return value if len(kept) == len(items) else ",".join(kept).strip(" ,")


def storage_class(headers: dict) -> str:
    return headers.get("StorageClass", DEFAULT_STORAGE_CLASS)


def user_metadata(req: dict) -> dict:
    """x-amz-meta-* of a request, at most 2 KB as S3 counts it (UTF-8 bytes of every key and value)."""
    metadata = req.get("Metadata") or {}
    size = sum(len(key.encode()) + len(value.encode()) for key, value in metadata.items())
    if size > MAX_METADATA_BYTES:
        raise ServiceError("MetadataTooLarge", "Your metadata headers exceed the maximum allowed metadata size.", 400,
                           Size=size, MaxSizeAllowed=MAX_METADATA_BYTES)
    return metadata


def owner(account_id: str) -> dict:
    return {"ID": hashlib.sha256(account_id.encode()).hexdigest(), "DisplayName": account_id}


def parse_tagging(text: str | None) -> dict:
    """The x-amz-tagging header: URL-encoded key=value pairs (text that is not UTF-8 is kept, and refused)."""
    if not text:
        return {}
    return tag_dict(parse_qsl(text, keep_blank_values=True, errors="surrogateescape"))


def tag_dict(pairs: list[tuple[str, str]], too_many: ServiceError | None = None, limit: int = MAX_TAGS) -> dict:
    """An object's (or, with its own limit and error, a bucket's) tags from (key, value) pairs, as S3 accepts
    them."""
    tags = dict(pairs)
    if len(tags) != len(pairs):
        raise ServiceError("InvalidTag", "Cannot provide multiple Tags with the same key", 400)
    if len(tags) > limit:
        raise too_many or ServiceError("BadRequest", f"Object tags cannot be greater than {MAX_TAGS}", 400)
    for key, value in tags.items():
        if not 1 <= len(key) <= 128 or unstorable_text(key):
            raise ServiceError("InvalidTag", "The TagKey you have provided is invalid", 400)
        if len(value) > 256 or unstorable_text(value):
            raise ServiceError("InvalidTag", "The TagValue you have provided is invalid", 400)
    return tags


def object_headers(info: ObjectInfo, with_checksum: bool) -> dict:
    """GetObject/HeadObject output members describing a stored object."""
    out = {"ETag": quoted(info.etag), "LastModified": info.last_modified, "AcceptRanges": "bytes",
           "Metadata": info.user_metadata, "StorageClass": None, "PartsCount": info.parts_count,
           "TagCount": len(info.tags) or None}
    for name, value in info.headers.items():
        out[name] = value
    if with_checksum:
        out.update(checksum_members(info.checksum))
    return out


def checksum_members(checksum: dict | None) -> dict:
    if not checksum:
        return {}
    return {checksums.member(checksum["algorithm"]): checksum["value"], "ChecksumType": checksum["type"]}


def url_encoded(value: str | None, encoding_type: str | None) -> str | None:
    """Listing values under EncodingType=url (botocore decodes them with unquote_plus)."""
    if value is None or encoding_type != "url":
        return value
    return quote_plus(value, safe="/")
