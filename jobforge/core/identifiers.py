"""AWS names a resource by its ARN or by its name: one lookup for both."""

from __future__ import annotations

import sqlalchemy as sa


def name_or_arn(table: sa.Table, identifier: str) -> sa.ColumnElement[bool]:
    """The condition that finds a row of ``table`` (with ``arn`` and ``name`` columns) by either."""
    column = table.c.arn if identifier.startswith("arn:") else table.c.name
    return column == identifier
