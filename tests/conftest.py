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


@pytest.fixture
def external_s3(tmp_path):
    """An S3 service of another implementation (moto's server, in a process of its own) with a bucket
    ``jobforge-shared``: yields the --object-store URL of a prefix in it and the credentials to reach it with."""
    import subprocess
    import sys
    import time

    import boto3

    from jobforge.testing_server import free_port

    port = free_port()
    endpoint = f"http://127.0.0.1:{port}"
    with open(tmp_path / "moto.log", "wb") as log:
        process = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                                   stdout=log, stderr=subprocess.STDOUT)
    credentials = {"AWS_ACCESS_KEY_ID": "moto", "AWS_SECRET_ACCESS_KEY": "moto-secret"}
    s3 = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1",
                      aws_access_key_id="moto", aws_secret_access_key="moto-secret")
    deadline = time.time() + 30
    while True:
        try:
            s3.create_bucket(Bucket="jobforge-shared")
            break
        except Exception:
            if time.time() > deadline or process.poll() is not None:
                raise
            time.sleep(0.2)
    yield {"url": f"s3://jobforge-shared/jobforge?endpoint={endpoint}&region=us-east-1", "endpoint": endpoint,
           "env": credentials, "client": s3}
    process.terminate()
    process.wait(timeout=10)
