"""Epoch seconds as the store keeps them, read back as the UTC datetimes handlers return."""

from __future__ import annotations

import datetime as dt

from jobforge.core.timestamps import from_epoch


def test_an_epoch_time_reads_back_in_utc_and_an_unset_one_as_none():
    assert from_epoch(1_700_000_000.25) == dt.datetime(2023, 11, 14, 22, 13, 20, 250000, tzinfo=dt.timezone.utc)
    assert from_epoch(None) is None and from_epoch(0) is None
