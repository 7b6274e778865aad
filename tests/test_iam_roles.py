"""IAM roles: names not distinguished by case, and role tags — end to end through boto3,
and the store's unique index on both SQLite and PostgreSQL."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import pytest
import sqlalchemy as sa
from botocore.exceptions import ClientError

from conftest import TEST_CATEGORY

POLICY = json.dumps({"Version": "2012-10-17", "Statement": [{
    "Effect": "Allow", "Principal": {"Service": "sagemaker.amazonaws.com"}, "Action": "sts:AssumeRole"}]})


def _error(excinfo) -> tuple[str, int, str]:
    err = excinfo.value.response
    return err["Error"]["Code"], err["ResponseMetadata"]["HTTPStatusCode"], err["Error"]["Message"]


@pytest.fixture(scope="module")
def iam(server):
    return server.client("iam")


# --- 1. role names are not distinguished by case -------------------------------------------------

def test_create_role_refuses_a_name_differing_only_in_case(iam):
    created = iam.create_role(RoleName="r1", AssumeRolePolicyDocument=POLICY)["Role"]
    with pytest.raises(ClientError) as err:
        iam.create_role(RoleName="R1", AssumeRolePolicyDocument=POLICY)
    assert _error(err) == ("EntityAlreadyExists", 409, "Role with name R1 already exists.")
    with pytest.raises(ClientError) as err:  # another path does not make it another role either
        iam.create_role(RoleName="R1", Path="/other/", AssumeRolePolicyDocument=POLICY)
    assert _error(err)[0] == "EntityAlreadyExists"
    names = [r["RoleName"] for r in iam.list_roles()["Roles"]]
    assert "r1" in names and "R1" not in names
    got = iam.get_role(RoleName="R1")["Role"]
    assert got["RoleName"] == "r1" and got["Arn"] == created["Arn"] and got["RoleId"] == created["RoleId"]
    iam.delete_role(RoleName="R1")
    with pytest.raises(ClientError) as err:
        iam.get_role(RoleName="r1")
    assert _error(err) == ("NoSuchEntity", 404, "The role with name r1 cannot be found.")
    again = iam.create_role(RoleName="R1", AssumeRolePolicyDocument=POLICY)["Role"]  # the name is free again
    assert again["RoleName"] == "R1" and iam.get_role(RoleName="r1")["Role"]["RoleName"] == "R1"
    iam.delete_role(RoleName="r1")


def test_concurrent_creates_in_different_cases_leave_one_role(iam):
    names = [("race-role".upper() if i % 2 else "Race-Role") if i % 3 else "race-role" for i in range(12)]
    results = []

    def attempt(name):
        try:
            iam.create_role(RoleName=name, AssumeRolePolicyDocument=POLICY)
            results.append("ok")
        except ClientError as err:
            results.append(err.response["Error"]["Code"])

    threads = [threading.Thread(target=attempt, args=(n,)) for n in names]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results.count("ok") == 1 and results.count("EntityAlreadyExists") == 11
    assert sum(r["RoleName"].lower() == "race-role" for r in iam.list_roles()["Roles"]) == 1
    iam.delete_role(RoleName="RACE-ROLE")


def test_a_jobs_role_arn_is_found_whatever_the_case(server, iam, account_id):
    iam.create_role(RoleName="CaseJobRole", Path="/teams/", AssumeRolePolicyDocument=POLICY)
    sm = server.client("sagemaker")

    def create(name, arn, **document):
        return sm.create_job(JobName=name, RoleArn=arn, JobCategory=TEST_CATEGORY, JobConfigSchemaVersion="1.0.0",
                             JobConfigDocument=json.dumps(document or {"Steps": 1}))

    create("case-role-job", f"arn:aws:iam::{account_id}:role/teams/casejobrole",
           Steps=200, SleepSeconds=0.1)
    with pytest.raises(ClientError) as err:  # the path is still the role's own
        create("case-role-wrong-path", f"arn:aws:iam::{account_id}:role/casejobrole")
    assert _error(err)[0] == "ResourceNotFound"
    with pytest.raises(ClientError) as err:
        create("case-role-missing", f"arn:aws:iam::{account_id}:role/teams/NoSuchCaseRole")
    assert _error(err)[0] == "ResourceNotFound"
    with pytest.raises(ClientError) as err:  # the running job names the role in another case
        iam.delete_role(RoleName="CASEJOBROLE")
    assert _error(err)[0] == "DeleteConflict"
    sm.stop_job(JobName="case-role-job", JobCategory=TEST_CATEGORY)
    deadline = time.time() + 60
    while sm.describe_job(JobName="case-role-job", JobCategory=TEST_CATEGORY)["JobStatus"] not in (
            "Stopped", "Completed", "Failed"):
        assert time.time() < deadline
        time.sleep(0.2)
    iam.delete_role(RoleName="casejobrole")
    with pytest.raises(ClientError):
        iam.get_role(RoleName="CaseJobRole")


@pytest.fixture(params=["sqlite", "postgresql"])
def store_url(request, tmp_path):
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'store.db'}"
    return request.getfixturevalue("postgres_url")


def test_store_index_keeps_one_name_per_account_under_concurrency(store_url):
    from jobforge.core.accounts import find_role, role_row
    from jobforge.core.store import open_store, roles

    engine = open_store(store_url)
    try:
        barrier = threading.Barrier(10)
        results = []

        def insert(name):
            barrier.wait()
            try:
                with engine.begin() as conn:
                    conn.execute(roles.insert().values(role_row("111111111111", name, "/", POLICY, None, 3600, 0.0)))
                results.append(name)
            except sa.exc.IntegrityError:
                results.append(None)

        threads = [threading.Thread(target=insert, args=(n,))
                   for n in ["Shared", "SHARED", "shared", "sHaReD", "SharED"] * 2]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        winners = [r for r in results if r]
        assert len(winners) == 1
        with engine.begin() as conn:  # another account may use the name
            conn.execute(roles.insert().values(role_row("222222222222", "shared", "/", POLICY, None, 3600, 0.0)))
        found = find_role(engine, "111111111111", "arn:aws:iam::111111111111:role/SHARED")
        assert found is not None and found.role_name == winners[0]
        assert find_role(engine, "111111111111", "arn:aws:iam::111111111111:role/x/shared") is None
        assert find_role(engine, "333333333333", "arn:aws:iam::333333333333:role/shared") is None
    finally:
        engine.dispose()


def test_migration_refuses_names_differing_only_in_case_then_adds_the_index(store_url):
    from alembic import command
    from alembic.config import Config

    from jobforge.core.accounts import role_row
    from jobforge.core import store
    from jobforge.core.store import create_engine, migrate, open_store, roles

    engine = open_store(store_url)
    try:
        config = Config()
        config.set_main_option("script_location", str(Path(store.__file__).with_name("migrations")))
        with engine.begin() as connection:  # back to the schema before this revision
            config.attributes["connection"] = connection
            command.downgrade(config, "0004_roles_ci@-1")
        engine.dispose()
        engine = create_engine(store_url)
        with engine.begin() as conn:
            for name in ("Dup", "dup"):
                conn.execute(roles.insert().values(role_row("111111111111", name, "/", POLICY, None, 3600, 0.0)))
        with pytest.raises(RuntimeError, match="differ only in case"):
            migrate(engine)
        with engine.begin() as conn:
            conn.execute(roles.delete().where(roles.c.role_name == "dup"))
        migrate(engine)
        with pytest.raises(sa.exc.IntegrityError):
            with engine.begin() as conn:
                conn.execute(roles.insert().values(role_row("111111111111", "DUP", "/", POLICY, None, 3600, 0.0)))
    finally:
        engine.dispose()
