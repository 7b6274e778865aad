"""Upgrading a database whose jobs had no region: each job gets the region its ARN names."""

from __future__ import annotations

from pathlib import Path

import sqlalchemy as sa
from alembic import command
from alembic.config import Config

import jobforge.core.store as store
from jobforge.core.store import create_engine, migrate


def test_each_job_gets_the_region_its_arn_names(tmp_path):
    engine = create_engine(f"sqlite:///{tmp_path / 'old.db'}")
    config = Config()
    config.set_main_option("script_location", str(Path(store.__file__).with_name("migrations")))
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        command.upgrade(config, "execution_0001")  # the jobs table before regions
        for job_id, arn in (("west", "arn:aws:sagemaker:us-west-2:111111111111:job/Cat/west"),
                            ("east", "arn:aws:braket:us-east-1:111111111111:job/east"),
                            ("same-name-later", "arn:aws:sagemaker:eu-west-1:111111111111:job/Cat/other")):
            connection.execute(sa.text(
                "INSERT INTO jobs (id, account_id, family, name, arn, state, workload, spec, result, resources, "
                "transitions, attempt, created_at, updated_at) VALUES (:id, 'a', 'f', :id, :arn, 'QUEUED', "
                "'w', '{}', '{}', '{}', '[]', 0, 0, 0)"), {"id": job_id, "arn": arn})
    migrate(engine)
    with engine.begin() as connection:
        regions = dict(connection.execute(sa.text("SELECT id, region FROM jobs")).all())
        assert regions == {"west": "us-west-2", "east": "us-east-1", "same-name-later": "eu-west-1"}
        # a name is now unique per region: the same name in another region is a new job
        connection.execute(sa.text(
            "INSERT INTO jobs (id, account_id, region, family, name, arn, state, workload, spec, result, resources, "
            "transitions, attempt, created_at, updated_at) VALUES ('w2', 'a', 'us-east-2', 'f', 'west', 'x', "
            "'QUEUED', 'w', '{}', '{}', '{}', '[]', 0, 0, 0)"))
