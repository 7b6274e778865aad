"""SageMaker's tagging operations: AddTags, ListTags, DeleteTags on every SageMaker resource the server keeps.

A resource is found by its ARN in the caller's account and region (``jobforge.core.sagemaker_tags``); any
other ARN, another account's included, is a ValidationException, as SageMaker answers for a resource it
cannot find.
"""

from __future__ import annotations

import sqlalchemy as sa

from jobforge.api.base import RequestContext, handler
from jobforge.core import paging, sagemaker_tags, tags
from jobforge.core.errors import validation_error
from jobforge.core.store import reading, tags as tags_table

DEFAULT_PAGE = sagemaker_tags.MAX_TAGS


def _tag_list(found: dict[str, str]) -> list[dict]:
    return [{"Key": key, "Value": value} for key, value in found.items()]


def _require(conn: sa.Connection, ctx: RequestContext, arn: str, *, lock: bool = False) -> None:
    if not sagemaker_tags.exists(conn, ctx.account_id, ctx.region, arn, lock=lock):
        raise sagemaker_tags.not_found(arn)


@handler("sagemaker", "AddTags")
def add_tags(ctx: RequestContext, req: dict) -> dict:
    arn = req["ResourceArn"]
    new = sagemaker_tags.requested(req["Tags"])
    with ctx.engine.begin() as conn:
        _require(conn, ctx, arn, lock=True)
        tags.put(conn, ctx.account_id, arn, new, limit=sagemaker_tags.MAX_TAGS, too_many=lambda: validation_error(
            f"Adding these tags would give {arn} more than {sagemaker_tags.MAX_TAGS} tags, the most a SageMaker "
            "resource can have."))
    return {"Tags": _tag_list(new)}


@handler("sagemaker", "DeleteTags")
def delete_tags(ctx: RequestContext, req: dict) -> dict:
    arn = req["ResourceArn"]
    keys = [sagemaker_tags.check_key(key) for key in req["TagKeys"]]
    with ctx.engine.begin() as conn:
        _require(conn, ctx, arn, lock=True)
        tags.remove(conn, arn, keys)
    return {}


@handler("sagemaker", "ListTags")
def list_tags(ctx: RequestContext, req: dict) -> dict:
    arn = req["ResourceArn"]
    with reading(ctx.engine) as conn:
        _require(conn, ctx, arn)
    query = sa.select(tags_table.c.key, tags_table.c.value).where(tags_table.c.resource_arn == arn)
    page = paging.keyset_page(ctx.engine, query, tags_table.c.key, tags_table.c.key, True,
                              req.get("MaxResults", DEFAULT_PAGE), req.get("NextToken"), {"arn": arn},
                              validation_error)
    out = {"Tags": [{"Key": row.key, "Value": row.value} for row in page.rows]}
    if page.next_token:
        out["NextToken"] = page.next_token
    return out
