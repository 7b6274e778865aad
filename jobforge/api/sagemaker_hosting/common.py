"""What the hosting handlers share: the listing of records, and the names and ARNs they accept."""

from __future__ import annotations

import sqlalchemy as sa

from jobforge.api.base import RequestContext
from jobforge.core import hosting, paging
from jobforge.core.errors import validation_error

SORT_COLUMNS = {"Name": "name", "CreationTime": "created_at", "Status": "status"}


def name_of(identifier: str) -> str:
    """A name, or the name in an ARN (SageMaker accepts either where it names a model)."""
    return identifier.rsplit("/", 1)[-1] if identifier.startswith("arn:") else identifier


def list_records(ctx: RequestContext, req: dict, table_name: str, summary, member: str, extra=()) -> dict:
    """One page of the caller's records of a kind in its region, filtered and sorted as the List operations
    say; ``extra`` adds (request member, column, comparison) filters."""
    table = hosting.listing(table_name)
    query = sa.select(table).where(table.c.account_id == ctx.account_id, table.c.region == ctx.region)
    bind = {"table": table_name}
    if req.get("NameContains"):
        query = query.where(table.c.name.contains(req["NameContains"], autoescape=True))
    filters = [("CreationTimeAfter", "created_at", "gt"), ("CreationTimeBefore", "created_at", "lt"), *extra]
    for key, column, how in filters:
        if key in req:
            value = req[key].timestamp() if hasattr(req[key], "timestamp") else req[key]
            query = query.where(getattr(table.c[column], f"__{how}__")(value))
    for key in ("NameContains", *(key for key, _, _ in filters)):
        if key in req:
            bind[key] = str(req[key])
    sort = SORT_COLUMNS.get(req.get("SortBy", "CreationTime"), "created_at")
    ascending = req.get("SortOrder", "Descending") == "Ascending"
    bind.update(sort=sort, ascending=ascending)
    page = paging.keyset_page(ctx.engine, query, table.c[sort], table.c.id, ascending, req.get("MaxResults", 10),
                              req.get("NextToken"), bind, validation_error)
    out = {member: [summary(row) for row in page.rows]}
    if page.next_token:
        out["NextToken"] = page.next_token
    return out
