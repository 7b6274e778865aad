"""Lifecycle rules applied by the sweep over a real object store: Days rounded to midnight UTC, Date,
filters (prefix, tags, sizes), disabled rules, and incomplete multipart uploads aborted."""

from __future__ import annotations

import datetime as dt

import pytest
import sqlalchemy as sa

from jobforge.core import bucket_settings, checksums
from jobforge.core.blobs import open_blobs
from jobforge.core.lifecycle import DAY, sweep
from jobforge.core.object_tables import s3_objects, s3_uploads
from jobforge.core.objects import ObjectStore
from jobforge.core.store import open_store

ACCOUNT = "123456789012"
NOON = dt.datetime(2030, 6, 15, 12, tzinfo=dt.timezone.utc).timestamp()


@pytest.fixture
def objects(tmp_path):
    store = ObjectStore(open_store(f"sqlite:///{tmp_path / 'db.sqlite'}"), open_blobs(None, tmp_path))
    store.create_bucket(ACCOUNT, "life", "us-east-1")
    return store


def _put(store: ObjectStore, key: str, written: float, data: bytes = b"x", tags: dict | None = None) -> None:
    with store.staged([data], [checksums.DEFAULT]) as body:
        store.put(ACCOUNT, "life", key, body, headers={}, user_metadata={}, tags=tags or {}, checksum=None)
    with store.engine.begin() as conn:
        conn.execute(s3_objects.update().where(s3_objects.c.key == key).values(last_modified=written))


def _keys(store: ObjectStore) -> list[str]:
    return [info.key for info in store.list(ACCOUNT, "life").contents]


def _rules(store: ObjectStore, *rules: dict) -> None:
    bucket_settings.put(store.engine, store.bucket(ACCOUNT, "life"), bucket_settings.LIFECYCLE, list(rules))


def test_days_expire_at_the_midnight_after(objects):
    _put(objects, "logs/a", NOON)
    _rules(objects, {"ID": "r", "Status": "Enabled", "Filter": {"Prefix": "logs/"}, "Expiration": {"Days": 1}})
    midnight_after = (NOON // DAY + 2) * DAY  # written at noon + 1 day, rounded up to the next midnight
    assert sweep(objects, now=midnight_after - 1) == (0, 0)
    assert _keys(objects) == ["logs/a"]
    assert sweep(objects, now=midnight_after) == (1, 0)
    assert _keys(objects) == []


def test_filters_select_what_expires(objects):
    _put(objects, "tmp/tagged", NOON, tags={"scratch": "yes"})
    _put(objects, "tmp/untagged", NOON)
    _put(objects, "tmp/big", NOON, data=b"x" * 100, tags={"scratch": "yes"})
    _put(objects, "keep/tagged", NOON, tags={"scratch": "yes"})
    _rules(objects, {"ID": "r", "Status": "Enabled", "Expiration": {"Date": NOON - 1},
                     "Filter": {"And": {"Prefix": "tmp/", "Tags": [{"Key": "scratch", "Value": "yes"}],
                                        "ObjectSizeLessThan": 10}}},
           {"ID": "off", "Status": "Disabled", "Filter": {"Prefix": "keep/"}, "Expiration": {"Date": NOON - 1}})
    assert sweep(objects, now=NOON) == (1, 0)
    assert _keys(objects) == ["keep/tagged", "tmp/big", "tmp/untagged"]


def test_a_date_expires_objects_written_after_it(objects):
    _rules(objects, {"ID": "r", "Status": "Enabled", "Filter": {}, "Expiration": {"Date": NOON - DAY}})
    _put(objects, "late", NOON)
    assert sweep(objects, now=NOON) == (1, 0)
    assert _keys(objects) == []


def test_incomplete_uploads_are_aborted(objects):
    old = objects.create_upload(ACCOUNT, "p", "life", "big/old", headers={}, user_metadata={}, tags={},
                                algorithm=None, checksum_type=None)
    fresh = objects.create_upload(ACCOUNT, "p", "life", "big/fresh", headers={}, user_metadata={}, tags={},
                                  algorithm=None, checksum_type=None)
    with objects.engine.begin() as conn:
        conn.execute(s3_uploads.update().where(s3_uploads.c.upload_id == old).values(initiated=NOON - 10 * DAY))
        conn.execute(s3_uploads.update().where(s3_uploads.c.upload_id == fresh).values(initiated=NOON))
    _rules(objects, {"ID": "r", "Status": "Enabled", "Filter": {"Prefix": "big/"},
                     "AbortIncompleteMultipartUpload": {"DaysAfterInitiation": 7}})
    assert sweep(objects, now=NOON) == (0, 1)
    with objects.engine.connect() as conn:
        assert [row.upload_id for row in conn.execute(sa.select(s3_uploads))] == [fresh]


def test_rules_of_a_deleted_bucket_are_not_applied_to_its_successor(objects):
    _rules(objects, {"ID": "r", "Status": "Enabled", "Filter": {}, "Expiration": {"Date": NOON - DAY}})
    objects.delete_bucket(ACCOUNT, "life")  # its documents stay behind, as after a deletion cut short
    objects.create_bucket(ACCOUNT, "life", "us-east-1")
    _put(objects, "new", NOON)
    assert sweep(objects, now=NOON) == (0, 0)
    assert _keys(objects) == ["new"]


def test_expiry_in_a_versioned_bucket_leaves_a_delete_marker(objects):
    objects.set_versioning(ACCOUNT, "life", "Enabled")
    _put(objects, "kept", NOON)
    _rules(objects, {"ID": "r", "Status": "Enabled", "Filter": {}, "Expiration": {"Date": NOON - DAY}})
    assert sweep(objects, now=NOON) == (1, 0)
    assert _keys(objects) == []
    versions = objects.list_versions(ACCOUNT, "life").versions
    assert len(versions) == 2  # the expired version stays, behind the delete marker that is now the latest

