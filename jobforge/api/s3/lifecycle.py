"""A bucket's lifecycle configuration: Put/Get/DeleteBucketLifecycle(Configuration).

Expiration of current objects (Days or Date) and AbortIncompleteMultipartUpload
are applied for real by the server's periodic sweep (``core/lifecycle.py``);
every other action is refused with NotImplemented naming it, never stored and
ignored.
"""

from __future__ import annotations

import secrets

from jobforge.api.s3.common import s3_handler, store
from jobforge.core import bucket_settings
from jobforge.core.errors import ServiceError
from jobforge.core.objects import malformed_xml

MAX_RULES = 1000
MAX_ID_CHARS = 255
# Rule members naming actions jobforge does not take → why.
REFUSED_ACTIONS = {
    "Transitions": "jobforge keeps every object in one storage class, so it has nothing to transition to",
    "NoncurrentVersionTransitions": "jobforge keeps every object in one storage class, so it has nothing to "
                                    "transition to",
    "NoncurrentVersionExpiration": "jobforge's lifecycle rules expire current objects only",
}
FILTER_MEMBERS = ("Prefix", "Tag", "ObjectSizeGreaterThan", "ObjectSizeLessThan", "And")


def _invalid(message: str) -> ServiceError:
    return ServiceError("InvalidArgument", message, 400)


def _not_implemented(rule_id: str, action: str, why: str) -> ServiceError:
    return ServiceError("NotImplemented", f"The lifecycle action {action} (rule {rule_id!r}) is not implemented: "
                        f"{why}. jobforge applies Expiration (Days or Date) and AbortIncompleteMultipartUpload.",
                        501)


def _check_filter(rule: dict) -> dict:
    """The rule's conditions, checked: (Prefix, Tags, sizes) as one And-shaped dict."""
    if "Prefix" in rule and "Filter" in rule:
        raise malformed_xml()
    given = rule.get("Filter") or {}
    if sum(member in given for member in FILTER_MEMBERS) > 1:
        raise malformed_xml()  # two conditions must be joined by And
    conditions = given.get("And") or given
    greater, less = conditions.get("ObjectSizeGreaterThan"), conditions.get("ObjectSizeLessThan")
    if any(size is not None and size < 0 for size in (greater, less)):
        raise _invalid("Object size filters must be non-negative")
    if greater is not None and less is not None and greater >= less:
        raise ServiceError("InvalidRequest", "ObjectSizeGreaterThan must be less than ObjectSizeLessThan", 400)
    tags = conditions.get("Tags") or ([given["Tag"]] if "Tag" in given else [])
    if len({tag["Key"] for tag in tags}) != len(tags):
        raise _invalid("Duplicate Tag Keys are not allowed.")
    return {"tags": tags, "sizes": greater is not None or less is not None}


def _expiration(rule: dict, rule_id: str) -> dict:
    expiration = dict(rule["Expiration"])
    given = [name for name in ("Date", "Days", "ExpiredObjectDeleteMarker") if expiration.get(name) is not None]
    if len(given) != 1:
        raise malformed_xml()
    if given == ["ExpiredObjectDeleteMarker"]:
        raise _not_implemented(rule_id, "Expiration/ExpiredObjectDeleteMarker",
                               "jobforge's lifecycle rules expire current objects only")
    if given == ["Days"] and expiration["Days"] <= 0:
        raise _invalid("'Days' for Expiration action must be a positive integer")
    if given == ["Date"]:
        date = expiration["Date"]
        if (date.hour, date.minute, date.second, date.microsecond) != (0, 0, 0, 0):
            raise _invalid("'Date' must be at midnight GMT")
        expiration["Date"] = date.timestamp()
    return expiration


def _checked_rule(rule: dict) -> dict:
    rule = dict(rule)
    rule_id = rule.setdefault("ID", secrets.token_urlsafe(36))  # S3 names a rule sent without one
    if len(rule_id) > MAX_ID_CHARS:
        raise _invalid(f"ID length should not exceed allowed limit of {MAX_ID_CHARS}")
    for member, why in REFUSED_ACTIONS.items():
        if rule.get(member):
            raise _not_implemented(rule_id, member, why)
    conditions = _check_filter(rule)
    if not rule.get("Expiration") and not rule.get("AbortIncompleteMultipartUpload"):
        raise ServiceError("InvalidRequest", "At least one action needs to be specified in a rule", 400)
    if rule.get("Expiration"):
        rule["Expiration"] = _expiration(rule, rule_id)
    abort = rule.get("AbortIncompleteMultipartUpload")
    if abort:
        if conditions["tags"] or conditions["sizes"]:
            raise ServiceError("InvalidRequest", "AbortIncompleteMultipartUpload cannot be specified with Tags "
                               "or object size filters.", 400)
        if (abort.get("DaysAfterInitiation") or 0) <= 0:
            raise _invalid("'DaysAfterInitiation' for AbortIncompleteMultipartUpload action must be a positive "
                           "integer")
    return rule


@s3_handler("PutBucketLifecycleConfiguration")
def put_bucket_lifecycle_configuration(ctx, req):
    bucket = store(ctx).bucket(ctx.account_id, req["Bucket"])
    rules = (req.get("LifecycleConfiguration") or {}).get("Rules") or []
    if not rules or len(rules) > MAX_RULES:
        raise malformed_xml()
    checked = [_checked_rule(rule) for rule in rules]
    ids = [rule["ID"] for rule in checked]
    if len(set(ids)) != len(ids):
        raise _invalid("Rule ID must be unique. Found same ID for more than one rule")
    bucket_settings.put(ctx.engine, bucket, bucket_settings.LIFECYCLE, checked)
    return {}


@s3_handler("GetBucketLifecycleConfiguration")
def get_bucket_lifecycle_configuration(ctx, req):
    rules = bucket_settings.get(ctx.engine, store(ctx).bucket(ctx.account_id, req["Bucket"]),
                                bucket_settings.LIFECYCLE)
    if rules is None:
        raise ServiceError("NoSuchLifecycleConfiguration", "The lifecycle configuration does not exist", 404,
                           BucketName=req["Bucket"])
    return {"Rules": rules}


@s3_handler("DeleteBucketLifecycle")
def delete_bucket_lifecycle(ctx, req):
    bucket_settings.delete(ctx.engine, store(ctx).bucket(ctx.account_id, req["Bucket"]),
                           bucket_settings.LIFECYCLE)
    return {}
