"""Upgrading a database whose jobs recorded a pid: the pid becomes a local executor's handle."""

from __future__ import annotations

from pathlib import Path

import sqlalchemy as sa
from alembic import command
from alembic.config import Config

import jobforge.core.store as store
from jobforge.core.store import create_engine, migrate
from jobforge.execution.local import local_pid


def test_a_recorded_pid_becomes_a_local_handle(tmp_path):
    engine = create_engine(f"sqlite:///{tmp_path / 'old.db'}")
    config = Config()
    config.set_main_option("script_location", str(Path(store.__file__).with_name("migrations")))
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        command.upgrade(config, "0001")  # the jobs table as servers before handles wrote it
        for job_id, pid in (("running", 4242), ("queued", None)):
            connection.execute(sa.text(
                "INSERT INTO jobs (id, account_id, family, name, arn, state, workload, spec, result, resources, "
                "transitions, attempt, pid, created_at, updated_at) VALUES (:id, 'a', 'f', :id, :id, 'RUNNING', "
                "'w', '{}', '{}', '{}', '[]', 1, :pid, 0, 0)"), {"id": job_id, "pid": pid})
    migrate(engine)
    with engine.connect() as connection:
        handles = dict(connection.execute(sa.text("SELECT id, handle FROM jobs")).all())
        columns = {column["name"] for column in sa.inspect(connection).get_columns("jobs")}
    assert handles == {"running": "local:4242", "queued": None}
    assert local_pid(handles["running"]) == 4242
    assert "pid" not in columns
