"""Shared fixtures: a real server on a free port, a fresh PostgreSQL database."""

from __future__ import annotations

import os
import uuid

import pytest

from jobforge.testing_server import ServerProcess
from selftest_kind import SELFTEST_ENV

POSTGRES_URL = os.environ.get("JOBFORGE_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres")


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    srv = ServerProcess(tmp_path_factory.mktemp("server") / "data", env=SELFTEST_ENV).start()
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def account_id(server):
    return server.client("sts").get_caller_identity()["Account"]


@pytest.fixture(scope="module")
def role_arn(account_id):
    return f"arn:aws:iam::{account_id}:role/JobforgeExecutionRole"


@pytest.fixture
def postgres_url():
    """A fresh database on the PostgreSQL server, dropped afterwards."""
    import sqlalchemy as sa

    admin_url = POSTGRES_URL.replace("postgresql://", "postgresql+psycopg://", 1)
    try:
        admin = sa.create_engine(admin_url, isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            name = f"jobforge_test_{uuid.uuid4().hex[:12]}"
            conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    except Exception as err:
        if os.environ.get("CI"):
            raise
        pytest.skip(f"PostgreSQL is not reachable: {err}")
    yield POSTGRES_URL.rsplit("/", 1)[0] + "/" + name
    with admin.connect() as conn:
        conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()
