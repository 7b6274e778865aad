"""Upgrading an object store from before versions: each object becomes its key's "null" version."""

from __future__ import annotations

from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic import command
from alembic.config import Config

import jobforge.core.store as store
from jobforge.core.blobs import LocalBlobs
from jobforge.core.objects import ObjectStore
from jobforge.core.store import create_engine, migrate


def _config(connection) -> Config:
    config = Config()
    config.set_main_option("script_location", str(Path(store.__file__).with_name("migrations")))
    config.attributes["connection"] = connection
    return config


def test_objects_become_null_versions_and_downgrade_waits_for_versions_to_go(tmp_path):
    engine = create_engine(f"sqlite:///{tmp_path / 'old.db'}")
    with engine.begin() as connection:
        command.upgrade(_config(connection), "0002_s3")  # the object store before versions
        connection.execute(sa.text("INSERT INTO s3_buckets (name, account_id, region, tags, created_at) "
                                   "VALUES ('data', '111111111111', 'us-east-1', '{}', 0)"))
        for key in ("a", "b/c"):
            connection.execute(sa.text(
                "INSERT INTO s3_objects (bucket, key, size, etag, segments, headers, user_metadata, checksum, tags, "
                "last_modified) VALUES ('data', :key, 0, 'd41d8cd98f00b204e9800998ecf8427e', '[]', '{}', '{}', "
                "NULL, '{}', 5)"), {"key": key})
    migrate(engine)
    objects = ObjectStore(engine, LocalBlobs(tmp_path / "objects"))
    assert objects.versioning("111111111111", "data") is None
    info = objects.head("111111111111", "data", "b/c")
    assert (info.version_id, info.is_latest, info.delete_marker, info.shown_version_id) == ("null", True, False, None)
    listed = objects.list_versions("111111111111", "data")
    assert [(v.key, v.version_id, v.is_latest) for v in listed.versions] == [("a", "null", True), ("b/c", "null", True)]

    objects.set_versioning("111111111111", "data", "Enabled")
    objects.delete("111111111111", "data", "a")  # a delete marker: a version the old schema cannot hold
    with engine.begin() as connection, pytest.raises(RuntimeError, match="delete them before downgrading"):
        command.downgrade(_config(connection), "0002_s3")
    objects.delete("111111111111", "data", "a", version_id=objects.list_versions("111111111111", "data")
                   .versions[0].version_id)
    with engine.begin() as connection:
        command.downgrade(_config(connection), "0002_s3")
        assert connection.execute(sa.text("SELECT key FROM s3_objects ORDER BY key")).scalars().all() == ["a", "b/c"]
