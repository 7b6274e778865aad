"""S3 POST form uploads (a browser's upload): the signed policy's conditions, the object stored, S3's answer.

A form carries the object's key and headers as fields, a policy (base64
JSON: an expiration and conditions), its signature (checked by the server's
verifier), and the file last. As on S3, every field but the signature's,
the policy, the file and ``x-ignore-*`` ones must be named by a condition;
conditions are exact matches (``{"field": value}`` or ``["eq", "$field",
value]``), ``["starts-with", "$field", prefix]`` and ``["content-length-range",
min, max]``. The answer is a 303 to ``success_action_redirect``, or the
``success_action_status`` asked (204 by default; 201 with a PostResponse
document).
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import functools
import json
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from urllib.parse import quote, urlencode, urlsplit
from xml.etree import ElementTree
from xml.sax.saxutils import escape

from jobforge.api.s3.common import check_header_value, content_headers, tag_dict, user_metadata
from jobforge.api.s3.protection import check_protections
from jobforge.core import checksums, service_models
from jobforge.core.blobs import StagedBody
from jobforge.core.errors import ServiceError
from jobforge.core.objects import ObjectStore, malformed_xml, quoted

# Fields of the signature itself, which no condition names.
UNCONDITIONED = {"policy", "signature", "x-amz-signature", "awsaccesskeyid", "file"}
ACTION_FIELDS = ("success_action_redirect", "redirect", "success_action_status")
METADATA_PREFIX = "x-amz-meta-"
NAMESPACE = "http://s3.amazonaws.com/doc/2006-03-01/"


@functools.cache
def _put_object_fields() -> dict[str, str]:
    """Form field (a PutObject header's name, lower-case) → PutObject input member; S3 names the ACL "acl"."""
    shape = service_models.operation("s3", "PutObject").input_shape
    fields = {member.serialization["name"].lower(): name for name, member in shape.members.items()
              if member.serialization.get("location") == "header" and not name.startswith("Checksum")}
    fields["acl"] = "ACL"
    return fields


def _invalid_policy(message: str) -> ServiceError:
    return ServiceError("InvalidPolicyDocument", f"Invalid Policy: {message}", 400)


def _denied(message: str) -> ServiceError:
    return ServiceError("AccessDenied", f"Invalid according to Policy: {message}", 403)


def _expiration(text) -> dt.datetime:
    try:
        when = dt.datetime.fromisoformat(str(text).replace("Z", "+00:00"))
    except ValueError:
        raise _invalid_policy(f"Invalid 'expiration' value: '{text}'") from None
    return when if when.tzinfo is not None else when.replace(tzinfo=dt.timezone.utc)


def _policy_document(policy: str) -> dict:
    try:
        document = json.loads(base64.b64decode(policy, validate=True))
    except (binascii.Error, ValueError):
        raise _invalid_policy("Invalid JSON.") from None
    if not isinstance(document, dict):
        raise _invalid_policy("Invalid JSON.")
    if "expiration" not in document:
        raise _invalid_policy("Policy missing expiration.")
    if not isinstance(document.get("conditions"), list):
        raise _invalid_policy("Policy missing conditions.")
    return document


@dataclass(frozen=True)
class Condition:
    operator: str  # "eq", "starts-with" or "content-length-range"
    field: str  # lower-case, without "$"
    values: tuple
    written: str  # as the policy has it, for the error

    def holds(self, fields: dict[str, str], bucket: str) -> bool:
        actual = bucket if self.field == "bucket" else fields.get(self.field)
        if self.operator == "eq":
            return actual == self.values[0]
        return (actual or "").startswith(self.values[0])


def _condition(item) -> Condition:
    written = json.dumps(item)
    if isinstance(item, dict) and len(item) == 1:
        (name, value), = item.items()
        return Condition("eq", name.lower().lstrip("$"), (value,), written)
    if isinstance(item, list) and len(item) == 3 and isinstance(item[0], str):
        operator = item[0].lower()
        if operator == "content-length-range" and all(isinstance(v, int) and v >= 0 for v in item[1:]):
            return Condition(operator, "", (item[1], item[2]), written)
        if operator in ("eq", "starts-with") and isinstance(item[1], str) and item[1].startswith("$") \
                and isinstance(item[2], str):
            return Condition(operator, item[1][1:].lower(), (item[2],), written)
    raise _invalid_policy(f"Invalid Condition: {written}")


@dataclass(frozen=True)
class FormPolicy:
    """What a signed policy still has to check once the file is staged: its size range."""
    size_range: tuple[int, int] | None


def check_fields(policy: str | None, fields: dict[str, str], bucket: str, now: dt.datetime) -> FormPolicy:
    """The policy's checks that need only the fields (run before any of the file is staged); None as policy
    for an upload nobody signed (a server without authentication)."""
    if "key" not in fields:
        raise ServiceError("InvalidArgument", "Bucket POST must contain a field named 'key'.  If it is specified, "
                           "please check the order of the fields.", 400, ArgumentName="key", ArgumentValue="")
    if policy is None:
        return FormPolicy(None)
    document = _policy_document(policy)
    if now > _expiration(document["expiration"]):
        raise _denied("Policy expired.")
    conditions = [_condition(item) for item in document["conditions"]]
    size_range = None
    for condition in conditions:
        if condition.operator == "content-length-range":
            size_range = condition.values
        elif not condition.holds(fields, bucket):
            raise _denied(f"Policy Condition failed: {condition.written}")
    named = {condition.field for condition in conditions}
    extra = [name for name in fields if name not in named and name not in UNCONDITIONED
             and not name.startswith("x-ignore-")]
    if extra:
        raise _denied(f"Extra input fields: {', '.join(extra)}")
    return FormPolicy(size_range)


def staging_algorithms(fields: dict[str, str]) -> list[str]:
    """The checksums to compute while the file is staged: those the form gives values for, else S3's default."""
    named = [name[len("x-amz-checksum-"):].upper() for name in fields if name.startswith("x-amz-checksum-")]
    return [name for name in checksums.ALGORITHMS if name in named] or [checksums.DEFAULT]


def _tags(text: str | None) -> dict:
    """The ``tagging`` field: a Tagging document, as PutObjectTagging takes it."""
    if not text:
        return {}
    if "<!DOCTYPE" in text or "<!ENTITY" in text:
        raise malformed_xml()
    try:
        root = ElementTree.fromstring(text)
    except ElementTree.ParseError:
        raise malformed_xml() from None
    pairs = []
    for tag in root.iter():
        if tag.tag.rsplit("}", 1)[-1] == "Tag":
            values = {child.tag.rsplit("}", 1)[-1]: child.text or "" for child in tag}
            if "Key" not in values or "Value" not in values:
                raise malformed_xml()
            pairs.append((values["Key"], values["Value"]))
    return tag_dict(pairs)


def _request(fields: dict[str, str]) -> dict:
    """The form's fields as the PutObject members they stand for."""
    members = _put_object_fields()
    req = {"Metadata": {name[len(METADATA_PREFIX):]: value for name, value in fields.items()
                        if name.startswith(METADATA_PREFIX)}}
    for name, value in fields.items():
        member = members.get(name)
        if name.startswith(METADATA_PREFIX):
            check_header_value(name, value)
        if member is None or member == "Metadata":
            continue
        if member == "Expires":
            try:
                req[member] = parsedate_to_datetime(value)
            except (TypeError, ValueError):
                raise ServiceError("InvalidArgument", f"Invalid Expires field: {value}", 400) from None
        else:
            check_header_value(name, value)
            req[member] = value
    return req


def _checksum(body: StagedBody, fields: dict[str, str]) -> dict:
    algorithm = staging_algorithms(fields)[0]
    given = fields.get(checksums.header(algorithm))
    if given is not None:
        checksums.check(algorithm, given, body.checksums[algorithm])
    return {"algorithm": algorithm, "value": body.checksums[algorithm], "type": "FULL_OBJECT"}


def store_upload(objects: ObjectStore, account_id: str, bucket: str, fields: dict[str, str], file_name: str,
                 body: StagedBody, policy: FormPolicy):
    """The form's object, stored; its ObjectInfo."""
    if policy.size_range is not None:
        low, high = policy.size_range
        if body.size > high:
            raise ServiceError("EntityTooLarge", "Your proposed upload exceeds the maximum allowed size", 400,
                               ProposedSize=body.size, MaxSizeAllowed=high)
        if body.size < low:
            raise ServiceError("EntityTooSmall", "Your proposed upload is smaller than the minimum allowed size",
                               400, ProposedSize=body.size, MinSizeAllowed=low)
    req = _request(fields)
    check_protections("PutObject", req, account_id)
    key = fields["key"].replace("${filename}", file_name)
    return objects.put(account_id, bucket, key, body, headers=content_headers(req), user_metadata=user_metadata(req),
                       tags=_tags(fields.get("tagging")), checksum=_checksum(body, fields))


@dataclass(frozen=True)
class PostAnswer:
    status: int
    headers: list[tuple[str, str]]
    body: bytes = b""


def answer(fields: dict[str, str], info, location: str) -> PostAnswer:
    """S3's answer to a stored upload; ``location`` is the object's URL."""
    etag = quoted(info.etag)
    headers = [("ETag", etag), ("Location", location)]
    redirect = fields.get("success_action_redirect") or fields.get("redirect")
    if redirect and urlsplit(redirect).scheme in ("http", "https"):
        query = urlencode({"bucket": info.bucket, "key": info.key, "etag": etag})
        headers[1] = ("Location", f"{redirect}{'&' if '?' in redirect else '?'}{query}")
        return PostAnswer(303, headers)
    status = fields.get("success_action_status")
    if status == "201":
        document = (f'<?xml version="1.0" encoding="UTF-8"?>\n<PostResponse xmlns="{NAMESPACE}">'
                    f"<Location>{escape(location)}</Location><Bucket>{escape(info.bucket)}</Bucket>"
                    f"<Key>{escape(info.key)}</Key><ETag>{escape(etag)}</ETag></PostResponse>").encode()
        return PostAnswer(201, headers + [("Content-Type", "application/xml")], document)
    return PostAnswer(200 if status == "200" else 204, headers)


def object_url(base: str, bucket: str, key: str, virtual_host: bool) -> str:
    """The URL of an object under ``base`` (scheme and host as the client addressed the server)."""
    path = quote(key, safe="/~") if virtual_host else f"{bucket}/{quote(key, safe='/~')}"
    return f"{base}/{path}"
