"""CloudWatch metric data: one row per metric, unit and minute, holding that minute's statistic set.

A metric is its namespace, name and dimensions within an account and region, as CloudWatch keys it. Each
row keeps the sample count, sum, minimum and maximum of the values of one minute: every statistic
CloudWatch serves other than percentiles can be computed from those for any period of whole minutes, so no
single value is stored. Writers add statistic sets (``add``); a row already present is merged with them.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite

from jobforge.core.store import metadata, reading

MINUTE = 60

metric_data = sa.Table(
    "metric_data", metadata,
    sa.Column("account_id", sa.String(12), primary_key=True),
    sa.Column("region", sa.String(32), primary_key=True),
    sa.Column("namespace", sa.String(255), primary_key=True),
    sa.Column("metric_name", sa.String(255), primary_key=True),
    sa.Column("series", sa.String(64), primary_key=True),  # the SHA-256 of the dimensions below
    sa.Column("unit", sa.String(32), primary_key=True),
    sa.Column("minute", sa.BigInteger, primary_key=True),  # epoch seconds at the minute's start
    sa.Column("dimensions", sa.Text, nullable=False),  # JSON [[name, value], ...] sorted by name
    sa.Column("sample_count", sa.Float, nullable=False),
    sa.Column("total", sa.Float, nullable=False),
    sa.Column("minimum", sa.Float, nullable=False),
    sa.Column("maximum", sa.Float, nullable=False),
)


@dataclass
class StatisticSet:
    sample_count: float
    total: float
    minimum: float
    maximum: float

    @classmethod
    def of(cls, value: float) -> StatisticSet:
        return cls(1.0, value, value, value)

    def add(self, other: StatisticSet) -> None:
        self.sample_count += other.sample_count
        self.total += other.total
        self.minimum = min(self.minimum, other.minimum)
        self.maximum = max(self.maximum, other.maximum)


@dataclass(frozen=True)
class MetricKey:
    account_id: str
    region: str
    namespace: str
    metric_name: str
    dimensions: tuple[tuple[str, str], ...]  # sorted by name
    unit: str


def dimensions_of(pairs) -> tuple[tuple[str, str], ...]:
    """Dimensions as a metric's identity: sorted by name (CloudWatch treats their order as insignificant)."""
    return tuple(sorted((str(name), str(value)) for name, value in pairs))


def _dimensions_text(dimensions: tuple[tuple[str, str], ...]) -> str:
    return json.dumps([list(pair) for pair in dimensions], separators=(",", ":"), ensure_ascii=False)


def _series(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def minute_of(epoch: float) -> int:
    return int(epoch // MINUTE) * MINUTE


def add(engine: sa.Engine, sets: dict[tuple[MetricKey, int], StatisticSet]) -> None:
    """Merge statistic sets, keyed by (metric key, minute), into the stored ones, in one transaction."""
    if not sets:
        return
    rows = []
    for (key, minute), stats in sets.items():
        text = _dimensions_text(key.dimensions)
        rows.append({"account_id": key.account_id, "region": key.region, "namespace": key.namespace,
                     "metric_name": key.metric_name, "series": _series(text), "unit": key.unit, "minute": minute,
                     "dimensions": text, "sample_count": stats.sample_count, "total": stats.total,
                     "minimum": stats.minimum, "maximum": stats.maximum})
    dialect = postgresql if engine.dialect.name == "postgresql" else sqlite
    statement = dialect.insert(metric_data)
    c, new = metric_data.c, statement.excluded
    statement = statement.on_conflict_do_update(
        index_elements=[col.name for col in metric_data.primary_key.columns],
        set_={"sample_count": c.sample_count + new.sample_count, "total": c.total + new.total,
              "minimum": sa.case((new.minimum < c.minimum, new.minimum), else_=c.minimum),
              "maximum": sa.case((new.maximum > c.maximum, new.maximum), else_=c.maximum)})
    with engine.begin() as conn:
        conn.execute(statement, rows)


def minutes(engine: sa.Engine, account_id: str, region: str, namespace: str, metric_name: str,
            dimensions: tuple[tuple[str, str], ...], start: int, end: int, unit: str | None
            ) -> list[tuple[int, str, StatisticSet]]:
    """(minute, unit, statistic set) of one metric for the minutes in [start, end), oldest first."""
    c = metric_data.c
    query = sa.select(c.minute, c.unit, c.sample_count, c.total, c.minimum, c.maximum).where(
        c.account_id == account_id, c.region == region, c.namespace == namespace, c.metric_name == metric_name,
        c.series == _series(_dimensions_text(dimensions)), c.minute >= start, c.minute < end)
    if unit is not None:
        query = query.where(c.unit == unit)
    with reading(engine) as conn:
        found = conn.execute(query.order_by(c.minute)).all()
    return [(row.minute, row.unit, StatisticSet(row.sample_count, row.total, row.minimum, row.maximum))
            for row in found]


def metrics(engine: sa.Engine, account_id: str, region: str, namespace: str | None, metric_name: str | None,
            since: int) -> list[tuple[str, str, tuple[tuple[str, str], ...]]]:
    """(namespace, metric name, dimensions) of every metric with data since that minute, in a stable order."""
    c = metric_data.c
    query = sa.select(c.namespace, c.metric_name, c.dimensions).distinct().where(
        c.account_id == account_id, c.region == region, c.minute >= since)
    if namespace is not None:
        query = query.where(c.namespace == namespace)
    if metric_name is not None:
        query = query.where(c.metric_name == metric_name)
    with reading(engine) as conn:
        found = conn.execute(query.order_by(c.namespace, c.metric_name, c.dimensions)).all()
    return [(row.namespace, row.metric_name, tuple(tuple(pair) for pair in json.loads(row.dimensions)))
            for row in found]
