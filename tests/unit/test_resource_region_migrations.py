"""Upgrading a database whose Bedrock records, quantum tasks, Logs Insights queries and client tokens had no
region: each record gets the region its ARN names (us-east-1 where none does), on SQLite and PostgreSQL."""

from __future__ import annotations

from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic import command
from alembic.config import Config

import jobforge.core.store as store
from jobforge.core.store import create_engine, migrate

ACCOUNT = "111111111111"
BEFORE_REGIONS = ("bedrock_0003", "0003_braket", "logs_0002", "regions_0001")


@pytest.fixture(params=["sqlite", "postgresql"])
def old_engine(request, tmp_path):
    """A database at the revisions before the regional ones, with a record of each kind in it."""
    url = f"sqlite:///{tmp_path / 'old.db'}" if request.param == "sqlite" else request.getfixturevalue("postgres_url")
    engine = create_engine(url)
    config = Config()
    config.set_main_option("script_location", str(Path(store.__file__).with_name("migrations")))
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        for revision in BEFORE_REGIONS:
            command.upgrade(config, revision)
        _insert_old_records(connection)
    yield engine
    engine.dispose()


def _insert(connection, table: str, **row) -> None:
    columns = ", ".join(row)
    connection.execute(sa.text(f"INSERT INTO {table} ({columns}) VALUES ({', '.join(':' + c for c in row)})"), row)


def _insert_old_records(connection) -> None:
    for model_id, region in (("west", "us-west-2"), ("east", "us-east-1")):
        _insert(connection, "custom_models", id=model_id, account_id=ACCOUNT, name=f"model-{model_id}",
                arn=f"arn:aws:bedrock:{region}:{ACCOUNT}:custom-model/imported/{model_id}",
                customization_type="IMPORTED", location="s3://b/m/", status="Active", details="{}", created_at=1.0)
    _insert(connection, "model_deployments", id="dep", account_id=ACCOUNT, name="dep",
            arn=f"arn:aws:bedrock:eu-west-1:{ACCOUNT}:custom-model-deployment/dep", model_arn="arn:m",
            status="Active", created_at=1.0, updated_at=1.0)
    _insert(connection, "provisioned_models", id="pt", account_id=ACCOUNT, name="pt",
            arn=f"arn:aws:bedrock:ap-south-1:{ACCOUNT}:provisioned-model/pt", model_arn="arn:m",
            desired_model_arn="arn:m", foundation_model_arn="arn:f", model_units=1, desired_model_units=1,
            status="InService", created_at=1.0, updated_at=1.0)
    _insert(connection, "invocation_logging", account_id=ACCOUNT, config='{"s3Config": {"bucketName": "logs"}}',
            updated_at=1.0)
    for task_id, arn in (("t-west", f"arn:aws:braket:us-west-2:{ACCOUNT}:quantum-task/t-west"),
                         ("t-none", "no-region-named")):
        _insert(connection, "braket_quantum_tasks", id=task_id, arn=arn, account_id=ACCOUNT, status="COMPLETED",
                device_arn="arn:d", shots=1, action="{}", action_type="t", output_bucket="b", output_prefix="p",
                output_directory="p/t", extra="{}", created_at=1.0)
    _insert(connection, "log_queries", query_id="q", account_id=ACCOUNT, spec="{}", status="Complete",
            created_at=1.0)
    _insert(connection, "idempotency", account_id=ACCOUNT, scope="braket-quantum-task:create", token="tok",
            request_hash="h", resource_arn=f"arn:aws:braket:eu-north-1:{ACCOUNT}:quantum-task/t", created_at=1.0)


def _regions(connection, table: str, key: str = "id") -> dict:
    return dict(connection.execute(sa.text(f"SELECT {key}, region FROM {table}")).all())


def test_each_record_gets_the_region_its_arn_names(old_engine):
    migrate(old_engine)
    with old_engine.begin() as connection:
        assert _regions(connection, "custom_models") == {"west": "us-west-2", "east": "us-east-1"}
        assert _regions(connection, "model_deployments") == {"dep": "eu-west-1"}
        assert _regions(connection, "provisioned_models") == {"pt": "ap-south-1"}
        assert _regions(connection, "braket_quantum_tasks") == {"t-west": "us-west-2", "t-none": "us-east-1"}
        # what has no ARN was made where the server's default region is
        assert _regions(connection, "invocation_logging", "account_id") == {ACCOUNT: "us-east-1"}
        assert _regions(connection, "log_queries", "query_id") == {"q": "us-east-1"}
        # a client token now names the region of what it created
        assert connection.execute(sa.text("SELECT scope FROM idempotency")).scalar_one() == \
            "eu-north-1/braket-quantum-task:create"


def test_names_and_logging_configurations_are_per_region_after_the_upgrade(old_engine):
    migrate(old_engine)
    with old_engine.begin() as connection:
        _insert(connection, "custom_models", id="west2", account_id=ACCOUNT, region="eu-west-1", name="model-west",
                arn=f"arn:aws:bedrock:eu-west-1:{ACCOUNT}:custom-model/imported/west2",
                customization_type="IMPORTED", location="s3://b/m/", status="Active", details="{}", created_at=1.0)
        _insert(connection, "invocation_logging", account_id=ACCOUNT, region="eu-west-1", config="{}",
                updated_at=1.0)
    with pytest.raises(sa.exc.IntegrityError), old_engine.begin() as connection:  # the same name, same region
        _insert(connection, "custom_models", id="west3", account_id=ACCOUNT, region="us-west-2", name="model-west",
                arn=f"arn:aws:bedrock:us-west-2:{ACCOUNT}:custom-model/imported/west3",
                customization_type="IMPORTED", location="s3://b/m/", status="Active", details="{}", created_at=1.0)
