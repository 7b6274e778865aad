"""Bucket policies: Put/Get/DeleteBucketPolicy and GetBucketPolicyStatus.

A policy is checked as S3 checks it (``MalformedPolicy`` saying what is
wrong), stored as sent and returned as sent. It is not enforced: a jobforge
bucket is only ever used by the account that owns it (the README says so).
"""

from __future__ import annotations

import json
import re

from jobforge.api.s3.common import s3_handler, store
from jobforge.core import bucket_settings
from jobforge.core.errors import ServiceError
from jobforge.core.policy_documents import (CONDITION_OPERATORS, STATEMENT_ELEMENTS, TOP_ELEMENTS, VERSIONS,
                                            base_operator, read_statements)
from jobforge.core.policy_evaluation import wildcard_match

MAX_POLICY_BYTES = 20 * 1024
BUCKET_ARN = "arn:aws:s3:::"
PRINCIPAL_TYPES = {"AWS", "Service", "CanonicalUser", "Federated"}
_AWS_PRINCIPAL = re.compile(r"\*|\d{12}|arn:aws:iam::\d{12}:(root|(user|role|assumed-role)/.+)")
# Condition keys that tie a grant to fixed callers or sources: with one of them (and no wildcard in its value),
# a statement open to every principal is not public, as S3 judges policy status.
FIXED_SOURCE_KEYS = {"aws:sourcearn", "aws:sourcevpc", "aws:sourcevpce", "aws:sourceaccount", "aws:sourceowner",
                     "aws:principalorgid", "aws:principalaccount", "aws:principalarn", "aws:userid",
                     "aws:sourceip", "aws:principalorgpaths", "aws:principalservicename"}


def malformed(message: str) -> ServiceError:
    return ServiceError("MalformedPolicy", message, 400)


def _strings(value, missing: str) -> list[str]:
    if value is None:
        raise malformed(f"Missing required field {missing}")
    values = [value] if isinstance(value, str) else value
    if not isinstance(values, list) or not values or not all(isinstance(v, str) for v in values):
        raise malformed(f"Policy has invalid {missing.lower()}")
    return values


def _check_principal(principal) -> None:
    if principal == "*":
        return
    if not isinstance(principal, dict) or not principal or not set(principal) <= PRINCIPAL_TYPES:
        raise malformed("Invalid principal in policy")
    for kind, value in principal.items():
        values = [value] if isinstance(value, str) else value
        if not isinstance(values, list) or not values or not all(isinstance(v, str) and v for v in values):
            raise malformed("Invalid principal in policy")
        if kind == "AWS" and not all(_AWS_PRINCIPAL.fullmatch(v) for v in values):
            raise malformed("Invalid principal in policy")


def _check_statement(statement, bucket: str) -> None:
    if not isinstance(statement, dict):
        raise malformed("Statement is not well formatted.")
    for name in statement:
        if name not in STATEMENT_ELEMENTS:
            raise malformed(f"Unknown field {name}")
    if "Effect" not in statement:
        raise malformed("Missing required field Effect")
    if statement["Effect"] not in ("Allow", "Deny"):
        raise malformed(f"Invalid effect: {statement['Effect']}")
    if "Principal" not in statement and "NotPrincipal" not in statement:
        raise malformed("Missing required field Principal")
    _check_principal(statement.get("Principal", statement.get("NotPrincipal")))
    for action in _strings(statement.get("Action", statement.get("NotAction")), "Action"):
        vendor, colon, name = action.partition(":")
        if action != "*" and (vendor.lower() != "s3" or not colon or not name):
            raise malformed("Policy has invalid action")
    for resource in _strings(statement.get("Resource", statement.get("NotResource")), "Resource"):
        named = resource[len(BUCKET_ARN):].split("/", 1)[0] if resource.startswith(BUCKET_ARN) else None
        if resource != "*" and (named is None or not wildcard_match(named, bucket)):
            raise malformed("Policy has invalid resource")
    conditions = statement.get("Condition", {})
    if not isinstance(conditions, dict):
        raise malformed("Condition is not well formatted.")
    for operator in conditions:
        if base_operator(operator) not in CONDITION_OPERATORS or not isinstance(conditions[operator], dict):
            raise malformed(f"Invalid Condition type : {operator}")


def check_policy(text: str, bucket: str) -> None:
    """S3's checks of a bucket policy, each answered with its ``MalformedPolicy`` message."""
    if len(text.encode("utf-8", "surrogateescape")) > MAX_POLICY_BYTES:
        raise malformed("Policies must be less than 20 KB")
    try:
        document = json.loads(text) if text.lstrip().startswith("{") else None
    except ValueError:
        document = None
    if not isinstance(document, dict):
        raise malformed("Policies must be valid JSON and the first byte must be '{'")
    for name in document:
        if name not in TOP_ELEMENTS:
            raise malformed(f"Unknown field {name}")
    if "Version" in document and document["Version"] not in VERSIONS:
        raise malformed("The policy must contain a valid version string")
    statements = document.get("Statement")
    statements = [statements] if isinstance(statements, dict) else statements
    if not statements:
        raise malformed("Missing required field Statement")
    if not isinstance(statements, list):
        raise malformed("Statement is not well formatted.")
    for statement in statements:
        _check_statement(statement, bucket)


def is_public(text: str) -> bool:
    """Whether the policy grants access to anyone, as S3's policy status judges it: an Allow statement open
    to every principal that no condition ties to fixed callers or sources."""
    for statement in read_statements(text):
        if statement.effect != "Allow" or not _open_to_everyone(statement.principal):
            continue
        fixed = any(key.lower() in FIXED_SOURCE_KEYS and "*" not in json.dumps(value)
                    for block in statement.conditions.values() for key, value in block.items())
        if not fixed:
            return True
    return False


def _open_to_everyone(principal) -> bool:
    if principal == "*":
        return True
    aws = principal.get("AWS") if isinstance(principal, dict) else None
    return aws == "*" or isinstance(aws, list) and "*" in aws


def _policy(ctx, req) -> str:
    policy = bucket_settings.get(ctx.engine, store(ctx).bucket(ctx.account_id, req["Bucket"]),
                                 bucket_settings.POLICY)
    if policy is None:
        raise ServiceError("NoSuchBucketPolicy", "The bucket policy does not exist", 404, BucketName=req["Bucket"])
    return policy


@s3_handler("PutBucketPolicy")
def put_bucket_policy(ctx, req):
    bucket = store(ctx).bucket(ctx.account_id, req["Bucket"])
    check_policy(req.get("Policy") or "", req["Bucket"])
    bucket_settings.put(ctx.engine, bucket, bucket_settings.POLICY, req["Policy"])
    return {}


@s3_handler("GetBucketPolicy")
def get_bucket_policy(ctx, req):
    return {"Policy": _policy(ctx, req)}


@s3_handler("GetBucketPolicyStatus")
def get_bucket_policy_status(ctx, req):
    return {"PolicyStatus": {"IsPublic": is_public(_policy(ctx, req))}}


@s3_handler("DeleteBucketPolicy")
def delete_bucket_policy(ctx, req):
    bucket_settings.delete(ctx.engine, store(ctx).bucket(ctx.account_id, req["Bucket"]), bucket_settings.POLICY)
    return {}
