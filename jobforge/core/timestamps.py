"""Times as the store keeps them (epoch seconds) and as handlers return them (UTC datetimes)."""

from __future__ import annotations

import datetime as dt


def from_epoch(epoch: float | None) -> dt.datetime | None:
    """The UTC datetime of an epoch time; None for a time not set (stored as None or 0)."""
    return dt.datetime.fromtimestamp(epoch, dt.timezone.utc) if epoch else None
