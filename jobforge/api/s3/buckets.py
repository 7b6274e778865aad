"""Bucket operations: create, head, list (paged), delete, location."""

from __future__ import annotations

from jobforge.api.s3.bucket_tagging import bucket_tags
from jobforge.api.s3.common import owner, s3_handler, store
from jobforge.core import bucket_settings
from jobforge.core.errors import ServiceError
from jobforge.core.objects import decode_resume, encode_resume

LEGACY_REGION = "us-east-1"  # S3 reports it as an empty LocationConstraint
MAX_BUCKETS = 10000


@s3_handler("CreateBucket")
def create_bucket(ctx, req):
    configuration = req.get("CreateBucketConfiguration") or {}
    region = configuration.get("LocationConstraint") or ctx.region
    tags = bucket_tags(configuration["Tags"]) if configuration.get("Tags") else {}
    objects = store(ctx)
    try:
        objects.create_bucket(ctx.account_id, req["Bucket"], region)
    except ServiceError as err:
        # S3 documents that re-creating a bucket one owns in us-east-1 answers 200, for legacy compatibility.
        if err.code != "BucketAlreadyOwnedByYou" or region != LEGACY_REGION \
                or objects.bucket(ctx.account_id, req["Bucket"]).region != LEGACY_REGION:
            raise
        return {"Location": f"/{req['Bucket']}"}
    if tags:
        bucket_settings.set_tags(ctx.engine, objects.bucket(ctx.account_id, req["Bucket"]), tags)
    return {"Location": f"/{req['Bucket']}"}


@s3_handler("HeadBucket")
def head_bucket(ctx, req):
    row = store(ctx).bucket(ctx.account_id, req["Bucket"])
    return {"BucketRegion": row.region}


@s3_handler("GetBucketLocation")
def get_bucket_location(ctx, req):
    row = store(ctx).bucket(ctx.account_id, req["Bucket"])
    return {"LocationConstraint": "" if row.region == LEGACY_REGION else row.region}


@s3_handler("ListBuckets")
def list_buckets(ctx, req):
    """The account's buckets by name; a page of MaxBuckets of them when asked, resumed by ContinuationToken."""
    limit = req.get("MaxBuckets")
    if limit is not None and not 1 <= limit <= MAX_BUCKETS:
        raise ServiceError("InvalidArgument", f"Argument max-buckets must be an integer between 1 and "
                           f"{MAX_BUCKETS}", 400, ArgumentName="max-buckets", ArgumentValue=str(limit))
    after = decode_resume(req["ContinuationToken"])[0] if req.get("ContinuationToken") else ""
    prefix, region = req.get("Prefix") or "", req.get("BucketRegion")
    rows = [row for row in store(ctx).list_buckets(ctx.account_id)
            if row.name > after and row.name.startswith(prefix) and region in (None, row.region)]
    page = rows[:limit] if limit is not None else rows
    return {"Buckets": [{"Name": row.name, "CreationDate": row.created_at, "BucketRegion": row.region}
                        for row in page],
            "Owner": owner(ctx.account_id), "Prefix": req.get("Prefix"),
            "ContinuationToken": encode_resume(page[-1].name, False) if len(rows) > len(page) else None}


@s3_handler("DeleteBucket")
def delete_bucket(ctx, req):
    store(ctx).delete_bucket(ctx.account_id, req["Bucket"])
    bucket_settings.forget_bucket(ctx.engine, req["Bucket"])
    return {}
