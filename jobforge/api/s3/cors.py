"""A bucket's CORS configuration: Put/Get/DeleteBucketCors, and the rules applied to browsers' requests.

S3 answers a preflight (OPTIONS with Origin and Access-Control-Request-Method)
from the first rule whose origin, method and every requested header match,
and adds the Access-Control-* headers of the first rule matching origin and
method to the response of any other request that names an Origin.
"""

from __future__ import annotations

from dataclasses import dataclass

from jobforge.api.s3.common import s3_handler, store
from jobforge.core import bucket_settings
from jobforge.core.errors import ServiceError

METHODS = ("GET", "PUT", "HEAD", "POST", "DELETE")
VARY = "Origin, Access-Control-Request-Headers, Access-Control-Request-Method"
NOT_ALLOWED = ("CORSResponse: This CORS request is not allowed. This is usually because the evalution of Origin, "
               "request method / Access-Control-Request-Method or Access-Control-Request-Headers are not "
               "whitelisted by the resource's CORS spec.")


def _check_rule(rule: dict) -> None:
    for method in rule["AllowedMethods"]:
        if method not in METHODS:
            raise ServiceError("InvalidRequest", f"Found unsupported HTTP method in CORS config. Unsupported method "
                               f"is {method}", 400)
    for member, name in (("AllowedOrigins", "AllowedOrigin"), ("AllowedHeaders", "AllowedHeader")):
        for value in rule.get(member) or []:
            if value.count("*") > 1:
                raise ServiceError("InvalidRequest", f'{name} "{value}" can not have more than one wildcard.', 400)


@s3_handler("PutBucketCors")
def put_bucket_cors(ctx, req):
    rules = req["CORSConfiguration"]["CORSRules"]
    for rule in rules:
        _check_rule(rule)
    bucket_settings.put(ctx.engine, store(ctx).bucket(ctx.account_id, req["Bucket"]), bucket_settings.CORS, rules)
    return {}


@s3_handler("GetBucketCors")
def get_bucket_cors(ctx, req):
    rules = bucket_settings.get(ctx.engine, store(ctx).bucket(ctx.account_id, req["Bucket"]), bucket_settings.CORS)
    if rules is None:
        raise ServiceError("NoSuchCORSConfiguration", "The CORS configuration does not exist", 404,
                           BucketName=req["Bucket"])
    return {"CORSRules": rules}


@s3_handler("DeleteBucketCors")
def delete_bucket_cors(ctx, req):
    bucket_settings.delete(ctx.engine, store(ctx).bucket(ctx.account_id, req["Bucket"]), bucket_settings.CORS)
    return {}


# -- applying the rules ------------------------------------------------------------


@dataclass(frozen=True)
class BrowserRequest:
    """What a browser's request tells CORS: the bucket, its origin, the method and the headers it asks for."""
    bucket: str
    origin: str
    method: str
    headers: tuple[str, ...] = ()  # Access-Control-Request-Headers of a preflight, lower-case


def _wildcard(pattern: str, value: str) -> bool:
    """S3's patterns: literal text with at most one "*", which stands for any run of characters."""
    head, star, tail = pattern.partition("*")
    if not star:
        return pattern == value
    return len(value) >= len(head) + len(tail) and value.startswith(head) and value.endswith(tail)


def _matching_rule(rules: list[dict], request: BrowserRequest) -> dict | None:
    for rule in rules:
        if not any(_wildcard(origin, request.origin) for origin in rule["AllowedOrigins"]):
            continue
        if request.method not in rule["AllowedMethods"]:
            continue
        allowed = [header.lower() for header in rule.get("AllowedHeaders") or []]
        if all(any(_wildcard(pattern, header) for pattern in allowed) for header in request.headers):
            return rule
    return None


def _allow_headers(rule: dict, request: BrowserRequest) -> list[tuple[str, str]]:
    wildcard_origin = "*" in rule["AllowedOrigins"]
    headers = [("Access-Control-Allow-Origin", "*" if wildcard_origin else request.origin),
               ("Access-Control-Allow-Methods", ", ".join(rule["AllowedMethods"]))]
    if not wildcard_origin:
        headers.append(("Access-Control-Allow-Credentials", "true"))
    if rule.get("ExposeHeaders"):
        headers.append(("Access-Control-Expose-Headers", ", ".join(rule["ExposeHeaders"])))
    if rule.get("MaxAgeSeconds") is not None:
        headers.append(("Access-Control-Max-Age", str(rule["MaxAgeSeconds"])))
    return headers


def preflight(engine, request: BrowserRequest, resource_type: str) -> list[tuple[str, str]]:
    """The headers of S3's answer to a preflight, or its refusal."""
    found = bucket_settings.of_bucket_named(engine, request.bucket, bucket_settings.CORS)
    if found is None:
        raise ServiceError("NoSuchBucket", "The specified bucket does not exist", 404, BucketName=request.bucket)
    rules = found[1]
    if rules is None:
        raise ServiceError("AccessForbidden", "CORSResponse: CORS is not enabled for this bucket.", 403,
                           Method=request.method, ResourceType=resource_type)
    rule = _matching_rule(rules, request)
    if rule is None:
        raise ServiceError("AccessForbidden", NOT_ALLOWED, 403, Method=request.method, ResourceType=resource_type)
    headers = _allow_headers(rule, request)
    if request.headers:
        headers.append(("Access-Control-Allow-Headers", ", ".join(request.headers)))
    return headers + [("Vary", VARY)]


def response_headers(engine, request: BrowserRequest) -> list[tuple[str, str]]:
    """The Access-Control-* headers S3 adds to its response to a request from a browser (none when no rule
    allows its origin and method)."""
    found = bucket_settings.of_bucket_named(engine, request.bucket, bucket_settings.CORS)
    rule = _matching_rule(found[1], request) if found is not None and found[1] else None
    return [] if rule is None else _allow_headers(rule, request) + [("Vary", VARY)]
