"""Records an account owns in one region and names by name or ARN: the reads and writes every such table needs.

A table of them has ``id``, ``account_id``, ``region``, ``name``, ``arn`` and ``created_at`` columns, and each row
becomes a dataclass of the same fields. Lookups never cross an account or a region, as on AWS.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from jobforge.core import idempotency, paging
from jobforge.core.errors import ServiceError
from jobforge.core.identifiers import name_or_arn
from jobforge.core.idempotency import ClientToken
from jobforge.core.store import reading


@dataclass(frozen=True)
class RegionalTable:
    table: sa.Table
    record: type  # the dataclass a row becomes
    label: str  # how a not-found message names one: "Custom model deployment", …

    def _owned(self, account_id: str, region: str) -> tuple:
        return self.table.c.account_id == account_id, self.table.c.region == region

    def select(self, engine: sa.Engine, account_id: str, region: str, *conditions) -> list[Any]:
        """The account's records in the region that meet the conditions, oldest first."""
        with reading(engine) as conn:
            rows = conn.execute(sa.select(self.table).where(*self._owned(account_id, region), *conditions)
                                .order_by(self.table.c.created_at, self.table.c.id)).all()
        return [self.record(**row._mapping) for row in rows]

    def find(self, engine: sa.Engine, account_id: str, region: str, identifier: str) -> Any | None:
        """The record a name or ARN names, or None."""
        found = self.select(engine, account_id, region, name_or_arn(self.table, identifier))
        return found[0] if found else None

    def get(self, engine: sa.Engine, account_id: str, region: str, identifier: str) -> Any:
        """The record a name or ARN names; else ResourceNotFoundException."""
        found = self.find(engine, account_id, region, identifier)
        if found is None:
            raise ServiceError("ResourceNotFoundException", f"{self.label} {identifier} not found.")
        return found

    def insert(self, engine: sa.Engine, record: Any, token: ClientToken | None, taken: ServiceError) -> Any:
        """Store a new record and the request's client token in one transaction; ``taken`` when its name is."""
        try:
            with engine.begin() as conn:
                conn.execute(self.table.insert().values(vars(record)))
                idempotency.remember(conn, token, record.arn)
        except sa.exc.IntegrityError:
            raise taken from None
        return record

    def delete(self, engine: sa.Engine, record: Any) -> None:
        with engine.begin() as conn:
            conn.execute(self.table.delete().where(self.table.c.id == record.id))

    def page(self, engine: sa.Engine, account_id: str, region: str, *, conditions: list, ascending: bool,
             limit: int, token: str | None, bind: dict, bad_token, sort: str = "created_at") -> paging.Page:
        """One page of the account's records in the region, by creation time (or the ``sort`` column)."""
        query = sa.select(self.table).where(*self._owned(account_id, region), *conditions)
        found = paging.keyset_page(engine, query, self.table.c[sort], self.table.c.id, ascending, limit, token,
                                   dict(bind, region=region, sort=sort), bad_token)
        found.rows = [self.record(**row._mapping) for row in found.rows]
        return found
