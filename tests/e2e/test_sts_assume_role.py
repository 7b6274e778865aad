"""sts:AssumeRole and GetSessionToken against the real server: trust policies honoured, the temporary
credentials accepted by every service and refused once expired, boto3's assume-role profiles and the AWS CLI."""

from __future__ import annotations

import datetime as dt
import json
import os
import sqlite3
import subprocess
import sys
import time
import urllib.request
import uuid
from pathlib import Path

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

from selftest_kind import CATEGORY as TEST_CATEGORY

AWS = str(Path(sys.executable).with_name("aws"))


def _error(excinfo) -> tuple[str, int, str]:
    err = excinfo.value.response
    return err["Error"]["Code"], err["ResponseMetadata"]["HTTPStatusCode"], err["Error"]["Message"]


def _trust(*statements) -> str:
    return json.dumps({"Version": "2012-10-17", "Statement": list(statements)})


def _allow(principal, **extra) -> dict:
    return {"Effect": "Allow", "Principal": principal, "Action": "sts:AssumeRole", **extra}


@pytest.fixture(scope="module")
def iam(server):
    return server.client("iam")


@pytest.fixture(scope="module")
def sts(server):
    return server.client("sts")


@pytest.fixture
def make_role(iam):
    made = []

    def make(trust: str, **extra) -> str:
        name = f"assumable-{uuid.uuid4().hex[:10]}"
        made.append(name)
        return iam.create_role(RoleName=name, AssumeRolePolicyDocument=trust, **extra)["Role"]["Arn"]

    yield make
    for name in made:
        iam.delete_role(RoleName=name)


def _client(server, service: str, credentials: dict):
    return boto3.client(service, endpoint_url=server.endpoint, region_name="us-east-1",
                        aws_access_key_id=credentials["AccessKeyId"],
                        aws_secret_access_key=credentials["SecretAccessKey"],
                        aws_session_token=credentials["SessionToken"],
                        config=Config(retries={"max_attempts": 1}, s3={"addressing_style": "path"},
                                      signature_version="s3v4" if service == "s3" else None))


def test_assumed_credentials_work_against_every_service(server, sts, make_role, account_id):
    role_arn = make_role(_trust(_allow({"AWS": f"arn:aws:iam::{account_id}:root"})))
    before = dt.datetime.now(dt.timezone.utc)
    assumed = sts.assume_role(RoleArn=role_arn, RoleSessionName="trainer@team", DurationSeconds=900)
    credentials = assumed["Credentials"]
    assert credentials["AccessKeyId"].startswith("ASIA") and credentials["SessionToken"]
    assert before + dt.timedelta(seconds=890) < credentials["Expiration"] < before + dt.timedelta(seconds=910)
    role_name = role_arn.rsplit("/", 1)[1]
    session_arn = f"arn:aws:sts::{account_id}:assumed-role/{role_name}/trainer@team"
    role_id = server.client("iam").get_role(RoleName=role_name)["Role"]["RoleId"]
    assert assumed["AssumedRoleUser"] == {"Arn": session_arn, "AssumedRoleId": f"{role_id}:trainer@team"}

    identity = _client(server, "sts", credentials).get_caller_identity()
    assert (identity["Arn"], identity["UserId"], identity["Account"]) == (session_arn, f"{role_id}:trainer@team",
                                                                         account_id)
    s3 = _client(server, "s3", credentials)
    bucket = f"assumed-{uuid.uuid4().hex[:8]}"
    s3.create_bucket(Bucket=bucket)
    s3.put_object(Bucket=bucket, Key="k", Body=b"made with a role session")
    url = s3.generate_presigned_url("get_object", Params={"Bucket": bucket, "Key": "k"})
    assert "X-Amz-Security-Token" in url
    with urllib.request.urlopen(url) as response:
        assert response.read() == b"made with a role session"
    assert _client(server, "iam", credentials).get_role(RoleName=role_name)["Role"]["Arn"] == role_arn
    assert "JobSummaries" in _client(server, "sagemaker", credentials).list_jobs(JobCategory=TEST_CATEGORY)
    assert "modelCustomizationJobSummaries" in _client(server, "bedrock", credentials).list_model_customization_jobs()
    s3.delete_object(Bucket=bucket, Key="k")
    s3.delete_bucket(Bucket=bucket)

    forged = dict(credentials, SessionToken=credentials["SessionToken"][:-4] + "AAAA")
    with pytest.raises(ClientError) as err:
        _client(server, "sts", forged).get_caller_identity()
    assert _error(err)[0] == "InvalidClientTokenId"


def test_the_trust_policy_decides_who_may_assume(server, sts, make_role, account_id):
    service_only = make_role(_trust(_allow({"Service": "sagemaker.amazonaws.com"})))
    with pytest.raises(ClientError) as err:
        sts.assume_role(RoleArn=service_only, RoleSessionName="s1")
    assert _error(err) == ("AccessDenied", 403, f"User: arn:aws:iam::{account_id}:root is not authorized to "
                           f"perform: sts:AssumeRole on resource: {service_only}")

    by_account_id = make_role(_trust(_allow({"AWS": account_id})))
    assert sts.assume_role(RoleArn=by_account_id, RoleSessionName="s1")["Credentials"]
    denied = make_role(_trust(_allow({"AWS": "*"}), {"Effect": "Deny", "Principal": "*", "Action": "sts:*"}))
    with pytest.raises(ClientError) as err:
        sts.assume_role(RoleArn=denied, RoleSessionName="s1")
    assert _error(err)[0] == "AccessDenied"

    external = make_role(_trust(_allow({"AWS": account_id},
                                       Condition={"StringEquals": {"sts:ExternalId": "shared-secret-42"}})))
    with pytest.raises(ClientError) as err:
        sts.assume_role(RoleArn=external, RoleSessionName="s1")
    assert _error(err)[0] == "AccessDenied"
    with pytest.raises(ClientError) as err:
        sts.assume_role(RoleArn=external, RoleSessionName="s1", ExternalId="wrong-secret")
    assert _error(err)[0] == "AccessDenied"
    assert sts.assume_role(RoleArn=external, RoleSessionName="s1", ExternalId="shared-secret-42")["Credentials"]

    tags = [{"Key": "project", "Value": "p1"}]
    with pytest.raises(ClientError) as err:  # session tags need sts:TagSession too
        sts.assume_role(RoleArn=by_account_id, RoleSessionName="s1", Tags=tags)
    assert _error(err)[0] == "AccessDenied" and "sts:TagSession" in _error(err)[2]
    tagging = make_role(_trust({"Effect": "Allow", "Principal": {"AWS": account_id},
                                "Action": ["sts:AssumeRole", "sts:TagSession"],
                                "Condition": {"StringEquals": {"aws:RequestTag/project": "p1"}}}))
    assert sts.assume_role(RoleArn=tagging, RoleSessionName="s1", Tags=tags)["Credentials"]
    with pytest.raises(ClientError) as err:
        sts.assume_role(RoleArn=tagging, RoleSessionName="s1", Tags=[{"Key": "project", "Value": "p2"}])
    assert _error(err)[0] == "AccessDenied"

    for missing in (f"arn:aws:iam::{account_id}:role/NoSuchRole",
                    "arn:aws:iam::123456789012:role/JobforgeExecutionRole",  # another account's
                    by_account_id.replace(":role/", ":role/wrong-path/")):
        with pytest.raises(ClientError) as err:
            sts.assume_role(RoleArn=missing, RoleSessionName="s1")
        assert _error(err)[:2] == ("AccessDenied", 403)


def test_updating_the_trust_policy_changes_who_may_assume(iam, sts, make_role, account_id):
    role_arn = make_role(_trust(_allow({"Service": "sagemaker.amazonaws.com"})))
    name = role_arn.rsplit("/", 1)[1]
    with pytest.raises(ClientError) as err:
        sts.assume_role(RoleArn=role_arn, RoleSessionName="s1")
    assert _error(err)[0] == "AccessDenied"
    trust = _trust(_allow({"Service": "sagemaker.amazonaws.com"}), _allow({"AWS": account_id}))
    iam.update_assume_role_policy(RoleName=name, PolicyDocument=trust)
    assert json.loads(json.dumps(iam.get_role(RoleName=name)["Role"]["AssumeRolePolicyDocument"])) == \
        json.loads(trust)
    assert sts.assume_role(RoleArn=role_arn, RoleSessionName="s1")["Credentials"]
    with pytest.raises(ClientError) as err:
        iam.update_assume_role_policy(RoleName=name, PolicyDocument="{not json")
    assert _error(err) == ("MalformedPolicyDocument", 400, "This policy contains invalid Json")


def test_a_role_session_assumes_a_role_that_trusts_its_role(server, sts, make_role, account_id):
    first = make_role(_trust(_allow({"AWS": account_id})))
    second = make_role(_trust(_allow({"AWS": first})))
    with pytest.raises(ClientError) as err:  # the root user is not the role the trust policy names
        sts.assume_role(RoleArn=second, RoleSessionName="s1")
    assert _error(err)[0] == "AccessDenied"
    session = _client(server, "sts", sts.assume_role(RoleArn=first, RoleSessionName="hop1")["Credentials"])
    with pytest.raises(ClientError) as err:
        session.assume_role(RoleArn=second, RoleSessionName="hop2", DurationSeconds=7200)
    assert _error(err) == ("ValidationError", 400, "The requested DurationSeconds exceeds the 1 hour session limit "
                           "for roles assumed by role chaining.")
    chained = session.assume_role(RoleArn=second, RoleSessionName="hop2")
    assert chained["AssumedRoleUser"]["Arn"].endswith(f":assumed-role/{second.rsplit('/', 1)[1]}/hop2")
    with pytest.raises(ClientError) as err:
        session.get_session_token()
    assert _error(err)[:2] == ("AccessDenied", 403)


def test_duration_and_session_name_are_checked(sts, make_role, account_id):
    role_arn = make_role(_trust(_allow({"AWS": account_id})), MaxSessionDuration=7200)
    assert sts.assume_role(RoleArn=role_arn, RoleSessionName="long", DurationSeconds=7200)["Credentials"]
    with pytest.raises(ClientError) as err:
        sts.assume_role(RoleArn=role_arn, RoleSessionName="s1", DurationSeconds=7201)
    assert _error(err) == ("ValidationError", 400, "The requested DurationSeconds exceeds the MaxSessionDuration "
                           "set for this role.")
    with pytest.raises(ClientError) as err:
        sts.assume_role(RoleArn=role_arn, RoleSessionName="not allowed!")
    assert _error(err)[:2] == ("ValidationError", 400) and "roleSessionName" in _error(err)[2]
    with pytest.raises(ClientError) as err:
        sts.assume_role(RoleArn=role_arn, RoleSessionName="s1", Policy="{not json")
    assert _error(err)[0] == "MalformedPolicyDocument"


def _expire(server, access_key_id: str) -> None:
    """Move a credential's expiry into the past, as time would (before the server has seen it)."""
    with sqlite3.connect(server.data_dir / "jobforge.db") as db:
        db.execute("UPDATE access_keys SET expires_at = ? WHERE access_key_id = ?", (time.time() - 5, access_key_id))


def test_expired_credentials_get_each_protocols_expired_token_error(server, sts, make_role, account_id):
    role_arn = make_role(_trust(_allow({"AWS": account_id})))
    credentials = sts.assume_role(RoleArn=role_arn, RoleSessionName="late")["Credentials"]
    _expire(server, credentials["AccessKeyId"])
    expected = {"sts": ("ExpiredToken", 403), "iam": ("ExpiredToken", 403), "s3": ("ExpiredToken", 400),
                "sagemaker": ("ExpiredTokenException", 403), "bedrock": ("ExpiredTokenException", 403)}
    calls = {"sts": lambda c: c.get_caller_identity(), "iam": lambda c: c.list_roles(),
             "s3": lambda c: c.list_buckets(), "sagemaker": lambda c: c.list_jobs(JobCategory=TEST_CATEGORY),
             "bedrock": lambda c: c.list_model_customization_jobs()}
    for service, call in calls.items():
        with pytest.raises(ClientError) as err:
            call(_client(server, service, credentials))
        assert _error(err)[:2] == expected[service], service


def test_session_tokens_for_the_caller(server, sts, account_id):
    before = dt.datetime.now(dt.timezone.utc)
    credentials = sts.get_session_token(DurationSeconds=7200)["Credentials"]
    assert credentials["AccessKeyId"].startswith("ASIA")
    # the root user's session tokens last at most an hour, as on AWS
    assert credentials["Expiration"] < before + dt.timedelta(seconds=3610)
    identity = _client(server, "sts", credentials).get_caller_identity()
    assert identity["Arn"] == f"arn:aws:iam::{account_id}:root" and identity["UserId"] == account_id
    assert "Buckets" in _client(server, "s3", credentials).list_buckets()


def _shared_files(server, tmp_path, role_arn: str) -> dict[str, str]:
    creds = server.credentials()
    (tmp_path / "credentials").write_text(
        f"[default]\naws_access_key_id = {creds['aws_access_key_id']}\n"
        f"aws_secret_access_key = {creds['aws_secret_access_key']}\n")
    (tmp_path / "config").write_text(
        f"[default]\nregion = us-east-1\nendpoint_url = {server.endpoint}\n\n"
        f"[profile trainer]\nrole_arn = {role_arn}\nsource_profile = default\nrole_session_name = from-profile\n"
        f"region = us-east-1\nendpoint_url = {server.endpoint}\n")
    return {"AWS_CONFIG_FILE": str(tmp_path / "config"), "AWS_SHARED_CREDENTIALS_FILE": str(tmp_path / "credentials")}


def test_a_boto3_assume_role_profile_works(server, make_role, account_id, tmp_path, monkeypatch):
    role_arn = make_role(_trust(_allow({"AWS": f"arn:aws:iam::{account_id}:root"})))
    for key in [k for k in os.environ if k.startswith("AWS_")]:
        monkeypatch.delenv(key)
    for key, value in _shared_files(server, tmp_path, role_arn).items():
        monkeypatch.setenv(key, value)
    session = boto3.Session(profile_name="trainer")
    identity = session.client("sts").get_caller_identity()
    assert identity["Arn"] == f"arn:aws:sts::{account_id}:assumed-role/{role_arn.rsplit('/', 1)[1]}/from-profile"
    assert "Buckets" in session.client("s3").list_buckets()


def test_the_aws_cli_assumes_roles(server, make_role, account_id, tmp_path):
    role_arn = make_role(_trust(_allow({"AWS": account_id})))
    env = {key: value for key, value in os.environ.items() if not key.startswith("AWS_")}
    env.update(_shared_files(server, tmp_path, role_arn))

    def aws(*args, extra_env=None):
        done = subprocess.run([AWS, *args, "--output", "json"], capture_output=True, text=True,
                              env={**env, **(extra_env or {})}, timeout=120)
        assert done.returncode == 0, done.stderr
        return json.loads(done.stdout)

    credentials = aws("sts", "assume-role", "--role-arn", role_arn, "--role-session-name", "cli")["Credentials"]
    session_env = {"AWS_ACCESS_KEY_ID": credentials["AccessKeyId"],
                   "AWS_SECRET_ACCESS_KEY": credentials["SecretAccessKey"],
                   "AWS_SESSION_TOKEN": credentials["SessionToken"]}
    identity = aws("sts", "get-caller-identity", extra_env=session_env)
    assert identity["Arn"].endswith(f":assumed-role/{role_arn.rsplit('/', 1)[1]}/cli")
    assert aws("sts", "get-caller-identity", "--profile", "trainer")["Arn"].endswith("/from-profile")
