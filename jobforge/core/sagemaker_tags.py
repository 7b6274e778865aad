"""Which SageMaker resources carry tags, found by ARN, and SageMaker's rules for tags.

Each module that keeps a kind of SageMaker resource registers the table holding it under the resource type
its ARNs name (``arn:aws:sagemaker:<region>:<account>:<type>/...``); AddTags, ListTags and DeleteTags find a
resource through these registrations alone. The tags themselves live in the tags table of every service
(``jobforge.core.tags``), keyed by ARN: a resource's create request writes them there with the resource, its
deletion removes them with it.
"""

from __future__ import annotations

from dataclasses import dataclass

import sqlalchemy as sa

from jobforge.core.errors import validation_error

MAX_TAGS = 50  # per resource
RESERVED_PREFIX = "aws:"  # keys AWS keeps for itself, in any case


@dataclass(frozen=True)
class _Holder:
    table: sa.Table  # with arn, account_id and region columns
    conditions: tuple


_HOLDERS: dict[str, list[_Holder]] = {}


def register(resource_type: str, table: sa.Table, *conditions: sa.ColumnElement[bool]) -> None:
    """Resources whose ARNs name ``resource_type`` may be rows of ``table`` that meet ``conditions``."""
    _HOLDERS.setdefault(resource_type, []).append(_Holder(table, conditions))


def resource_type(arn: str) -> str:
    """``pipeline`` for ``arn:aws:sagemaker:us-east-1:111122223333:pipeline/p/execution/x``."""
    return arn.split(":", 5)[-1].split("/", 1)[0]


def exists(conn: sa.Connection, account_id: str, region: str, arn: str, *, lock: bool = False) -> bool:
    """Whether the ARN names a resource of this account and region. ``lock`` holds its row until the
    transaction ends (on PostgreSQL), so that a deletion waits for tags being added and then removes them."""
    for holder in _HOLDERS.get(resource_type(arn), ()):
        table = holder.table
        query = sa.select(table.c.arn).where(table.c.arn == arn, table.c.account_id == account_id,
                                             table.c.region == region, *holder.conditions)
        if conn.execute(query.with_for_update() if lock else query).first() is not None:
            return True
    return False


def not_found(arn: str) -> Exception:
    return validation_error(f"Could not find resource {arn}: no SageMaker resource of this account and region "
                            "has this ARN.")


def check_key(key: str) -> str:
    if key[:len(RESERVED_PREFIX)].lower() == RESERVED_PREFIX:
        raise validation_error(f"Tag key {key} is reserved: keys beginning with {RESERVED_PREFIX} (in any case) "
                               "are for AWS's use.")
    return key


def requested(tag_list: list[dict] | None) -> dict[str, str]:
    """The tags of a request (a create request's Tags, AddTags's) as key → value; ValidationException for a key
    given twice or a reserved one. Lengths, characters and the 50 of one request are the model's constraints,
    checked with the rest of the request."""
    found: dict[str, str] = {}
    for tag in tag_list or ():
        if tag["Key"] in found:
            raise validation_error(f"Duplicate tag key: {tag['Key']} is given more than once.")
        found[check_key(tag["Key"])] = tag["Value"]
    return found
