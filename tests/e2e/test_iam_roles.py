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

from selftest_kind import CATEGORY as TEST_CATEGORY

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
            command.downgrade(config, "iam@0001")  # the iam branch, later revisions included
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


# --- 2. role tags ----------------------------------------------------------------------------------

def _tags(*pairs) -> list[dict]:
    return [{"Key": k, "Value": v} for k, v in pairs]


def test_create_role_keeps_its_tags(iam):
    created = iam.create_role(RoleName="TaggedRole", AssumeRolePolicyDocument=POLICY,
                              Tags=_tags(("team", "qa"), ("Cost Center", "41200"), ("empty", "")))["Role"]
    expected = _tags(("Cost Center", "41200"), ("empty", ""), ("team", "qa"))
    assert created["Tags"] == expected
    assert iam.get_role(RoleName="taggedrole")["Role"]["Tags"] == expected
    assert iam.list_role_tags(RoleName="TAGGEDROLE")["Tags"] == expected
    listed = next(r for r in iam.list_roles()["Roles"] if r["RoleName"] == "TaggedRole")
    assert "Tags" not in listed  # ListRoles does not return tags, as in AWS
    plain = iam.create_role(RoleName="UntaggedRole", AssumeRolePolicyDocument=POLICY)["Role"]
    assert "Tags" not in plain and "Tags" not in iam.get_role(RoleName="UntaggedRole")["Role"]
    empty = iam.list_role_tags(RoleName="UntaggedRole")
    assert empty["Tags"] == [] and empty["IsTruncated"] is False
    iam.delete_role(RoleName="TaggedRole")
    iam.delete_role(RoleName="UntaggedRole")
    again = iam.create_role(RoleName="taggedrole", AssumeRolePolicyDocument=POLICY)["Role"]
    assert "Tags" not in again  # the deleted role's tags went with it
    iam.delete_role(RoleName="taggedrole")


def test_tag_keys_are_not_distinguished_by_case(iam):
    with pytest.raises(ClientError) as err:
        iam.create_role(RoleName="DupTagRole", AssumeRolePolicyDocument=POLICY,
                        Tags=_tags(("Department", "a"), ("department", "b")))
    assert _error(err) == ("InvalidInput", 400,
                           "Duplicate tag keys found. Please note that Tag keys are case insensitive.")
    with pytest.raises(ClientError):
        iam.get_role(RoleName="DupTagRole")  # nothing was created
    iam.create_role(RoleName="DupTagRole", AssumeRolePolicyDocument=POLICY, Tags=_tags(("Department", "finance")))
    iam.tag_role(RoleName="duptagrole", Tags=_tags(("department", "hr"), ("Project", "x")))
    assert iam.list_role_tags(RoleName="DupTagRole")["Tags"] == _tags(("Project", "x"), ("department", "hr"))
    with pytest.raises(ClientError) as err:
        iam.tag_role(RoleName="DupTagRole", Tags=_tags(("a", "1"), ("A", "2")))
    assert _error(err)[0:2] == ("InvalidInput", 400)
    iam.untag_role(RoleName="DupTagRole", TagKeys=["DEPARTMENT", "no-such-key"])
    assert iam.get_role(RoleName="DupTagRole")["Role"]["Tags"] == _tags(("Project", "x"))
    iam.untag_role(RoleName="DupTagRole", TagKeys=["project"])
    assert "Tags" not in iam.get_role(RoleName="DupTagRole")["Role"]
    iam.delete_role(RoleName="DupTagRole")


def test_tag_limits_and_validation(server, iam):
    unchecked = server.client("iam", parameter_validation=False)  # what botocore would refuse itself
    iam.create_role(RoleName="LimitRole", AssumeRolePolicyDocument=POLICY,
                    Tags=_tags(*[(f"k{i:02d}", str(i)) for i in range(48)]))
    iam.tag_role(RoleName="LimitRole", Tags=_tags(("k00", "overwritten"), ("K01", "x"), ("n48", ""), ("n49", "")))
    tags = iam.list_role_tags(RoleName="LimitRole")["Tags"]
    assert len(tags) == 50 and {"Key": "k00", "Value": "overwritten"} in tags and {"Key": "K01", "Value": "x"} in tags
    with pytest.raises(ClientError) as err:
        iam.tag_role(RoleName="LimitRole", Tags=_tags(("one-too-many", "v")))
    assert _error(err) == ("LimitExceeded", 409, "Cannot exceed quota for TagsPerRole: 50.")
    assert len(iam.list_role_tags(RoleName="LimitRole")["Tags"]) == 50  # nothing was added
    with pytest.raises(ClientError) as err:
        iam.create_role(RoleName="TooManyTags", AssumeRolePolicyDocument=POLICY,
                        Tags=_tags(*[(f"k{i}", "v") for i in range(51)]))
    code, status, message = _error(err)
    assert (code, status) == ("ValidationError", 400) and "less than or equal to 50" in message
    for bad in (_tags(("k" * 129, "v")), _tags(("k", "v" * 257)), _tags(("", "v")), _tags(("bad*key", "v"))):
        with pytest.raises(ClientError) as err:
            unchecked.tag_role(RoleName="LimitRole", Tags=bad)
        assert _error(err)[0:2] == ("ValidationError", 400)
    iam.tag_role(RoleName="LimitRole", Tags=_tags(("k02", "v" * 256)))  # the longest value there is
    iam.untag_role(RoleName="LimitRole", TagKeys=[f"k{i:02d}" for i in range(2, 48)] + ["n48", "n49"])
    iam.tag_role(RoleName="LimitRole", Tags=_tags(("k" * 128, "")))  # the longest key there is
    assert [t["Key"] for t in iam.list_role_tags(RoleName="LimitRole")["Tags"]] == ["K01", "k00", "k" * 128]
    iam.delete_role(RoleName="LimitRole")


def test_list_role_tags_pages_in_key_order(iam):
    long_key = "\u00e9\u6f22" * 64  # 128 characters that UTF-8 makes 320 bytes
    keys = ["b", "a", "d", "c", "e", long_key, "f"]
    iam.create_role(RoleName="PagedTags", AssumeRolePolicyDocument=POLICY, Tags=_tags(*[(k, k[:3]) for k in keys]))
    seen, marker = [], None
    while True:
        page = iam.list_role_tags(RoleName="PagedTags", MaxItems=2, **({"Marker": marker} if marker else {}))
        seen += [t["Key"] for t in page["Tags"]]
        if not page["IsTruncated"]:
            assert "Marker" not in page
            break
        marker = page["Marker"]
        assert len(marker) <= 320
    assert seen == sorted(keys)
    first = iam.list_role_tags(RoleName="PagedTags", MaxItems=3)
    iam.untag_role(RoleName="PagedTags", TagKeys=["c"])  # the last key handed out goes; the next page still follows
    rest = iam.list_role_tags(RoleName="PagedTags", Marker=first["Marker"])
    assert [t["Key"] for t in rest["Tags"]] == ["d", "e", "f", long_key]
    for bad in ("not a marker", "%%%.abc", first["Marker"][:-1]):  # never a silent restart from the top
        with pytest.raises(ClientError) as err:
            iam.list_role_tags(RoleName="PagedTags", Marker=bad)
        assert _error(err)[0:2] == ("InvalidInput", 400)
    iam.delete_role(RoleName="PagedTags")


def test_tag_operations_on_a_missing_role(iam):
    calls = [(iam.tag_role, {"Tags": _tags(("a", "b"))}), (iam.untag_role, {"TagKeys": ["a"]}),
             (iam.list_role_tags, {})]
    for call, args in calls:
        with pytest.raises(ClientError) as err:
            call(RoleName="NoSuchTaggedRole", **args)
        assert _error(err) == ("NoSuchEntity", 404, "The role with name NoSuchTaggedRole cannot be found.")


def test_concurrent_tagging_keeps_the_quota(iam):
    iam.create_role(RoleName="RaceTags", AssumeRolePolicyDocument=POLICY,
                    Tags=_tags(*[(f"k{i}", "v") for i in range(40)]))
    results = []

    def attempt(i):
        try:
            iam.tag_role(RoleName="RaceTags", Tags=_tags(*[(f"t{i}-{j}", "v") for j in range(4)]))
            results.append("ok")
        except ClientError as err:
            results.append(err.response["Error"]["Code"])

    threads = [threading.Thread(target=attempt, args=(i,)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results.count("ok") == 2 and results.count("LimitExceeded") == 4
    assert len(iam.list_role_tags(RoleName="RaceTags")["Tags"]) == 48
    iam.delete_role(RoleName="RaceTags")
