"""Bucket tags: PutBucketTagging, GetBucketTagging, DeleteBucketTagging (and the tags of CreateBucket)."""

from __future__ import annotations

from jobforge.api.s3.common import s3_handler, store, tag_dict
from jobforge.core import bucket_settings
from jobforge.core.errors import ServiceError

MAX_BUCKET_TAGS = 50
SYSTEM_PREFIX = "aws:"


def bucket_tags(tag_set: list[dict]) -> dict:
    """A bucket's tags from a TagSet, as S3 accepts them."""
    tags = tag_dict([(tag["Key"], tag["Value"]) for tag in tag_set],
                    ServiceError("InvalidTag", f"Bucket tag count cannot be greater than {MAX_BUCKET_TAGS}", 400),
                    MAX_BUCKET_TAGS)
    if any(key.lower().startswith(SYSTEM_PREFIX) for key in tags):
        raise ServiceError("InvalidTag", "System tags cannot be added/updated by requester", 400)
    return tags


@s3_handler("PutBucketTagging")
def put_bucket_tagging(ctx, req):
    tags = bucket_tags(req["Tagging"].get("TagSet") or [])
    bucket_settings.set_tags(ctx.engine, store(ctx).bucket(ctx.account_id, req["Bucket"]), tags)
    return {}


@s3_handler("GetBucketTagging")
def get_bucket_tagging(ctx, req):
    tags = bucket_settings.tags(store(ctx).bucket(ctx.account_id, req["Bucket"]))
    if not tags:
        raise ServiceError("NoSuchTagSet", "The TagSet does not exist", 404, BucketName=req["Bucket"])
    return {"TagSet": [{"Key": key, "Value": value} for key, value in tags.items()]}


@s3_handler("DeleteBucketTagging")
def delete_bucket_tagging(ctx, req):
    bucket_settings.set_tags(ctx.engine, store(ctx).bucket(ctx.account_id, req["Bucket"]), {})
    return {}
