"""Bucket operations: create, head, list, delete, location."""

from __future__ import annotations

from jobforge.api.s3.common import owner, s3_handler, store

LEGACY_REGION = "us-east-1"  # S3 reports it as an empty LocationConstraint


@s3_handler("CreateBucket")
def create_bucket(ctx, req):
    region = (req.get("CreateBucketConfiguration") or {}).get("LocationConstraint") or ctx.region
    store(ctx).create_bucket(ctx.account_id, req["Bucket"], region)
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
    prefix = req.get("Prefix") or ""
    rows = [row for row in store(ctx).list_buckets(ctx.account_id) if row.name.startswith(prefix)]
    return {"Buckets": [{"Name": row.name, "CreationDate": row.created_at, "BucketRegion": row.region}
                        for row in rows],
            "Owner": owner(ctx.account_id), "Prefix": req.get("Prefix")}


@s3_handler("DeleteBucket")
def delete_bucket(ctx, req):
    store(ctx).delete_bucket(ctx.account_id, req["Bucket"])
    return {}
