"""Braket tags: TagResource, UntagResource, ListTagsForResource on hybrid jobs and quantum tasks."""

from __future__ import annotations

import sqlalchemy as sa

from jobforge.api.base import RequestContext, handler
from jobforge.api.braket import hybrid_jobs
from jobforge.core.quantum_tasks import quantum_tasks
from jobforge.core import tags
from jobforge.core.errors import ServiceError
from jobforge.core.store import jobs_table, reading


def _require_resource(ctx: RequestContext, arn: str) -> None:
    if ":job/" in arn:
        table, condition = jobs_table, jobs_table.c.family == hybrid_jobs.KIND.name
    elif ":quantum-task/" in arn:
        table, condition = quantum_tasks, sa.true()
    else:
        raise ServiceError("ValidationException", f"{arn} is not the ARN of a Braket hybrid job or quantum task.")
    with reading(ctx.engine) as conn:
        found = conn.execute(sa.select(table.c.arn).where(table.c.arn == arn, table.c.account_id == ctx.account_id,
                                                          table.c.region == ctx.region, condition)).first()
    if found is None:
        raise ServiceError("ResourceNotFoundException", f"Resource {arn} not found.")


@handler("braket", "TagResource")
def tag_resource(ctx: RequestContext, req: dict) -> dict:
    _require_resource(ctx, req["resourceArn"])
    tags.put(ctx.engine, ctx.account_id, req["resourceArn"], req["tags"])
    return {}


@handler("braket", "UntagResource")
def untag_resource(ctx: RequestContext, req: dict) -> dict:
    _require_resource(ctx, req["resourceArn"])
    tags.remove(ctx.engine, req["resourceArn"], req["tagKeys"])
    return {}


@handler("braket", "ListTagsForResource")
def list_tags_for_resource(ctx: RequestContext, req: dict) -> dict:
    _require_resource(ctx, req["resourceArn"])
    return {"tags": tags.of(ctx.engine, req["resourceArn"])}
