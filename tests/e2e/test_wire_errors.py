"""Bad requests of every protocol get the right 4xx in the service's own error
shape; SigV4 is enforced; accounts are isolated."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from botocore.exceptions import ClientError

import rawclient
from selftest_kind import CATEGORY as TEST_CATEGORY


def _json_error(status, headers, body):
    payload = json.loads(body)
    assert headers.get("X-Amzn-ErrorType") == payload["__type"]
    assert headers.get("x-amzn-RequestId")
    assert headers["Content-Type"].startswith("application/")
    return status, payload["__type"], payload.get("Message") or payload.get("message")


def valid_create(role_arn, **override):
    body = {"JobName": "ok-name", "RoleArn": role_arn, "JobCategory": TEST_CATEGORY,
            "JobConfigSchemaVersion": "1.0.0", "JobConfigDocument": "{}"}
    body.update(override)
    return {k: v for k, v in body.items() if v is not None}


@pytest.mark.parametrize("override, code, fragment", [
    ({"JobName": None}, "ValidationException", "Value null at 'jobName' failed to satisfy constraint: "
                                               "Member must not be null"),
    ({"JobCategory": "Bogus"}, "ValidationException", "Value 'Bogus' at 'jobCategory' failed to satisfy "
                                                      "constraint: Member must satisfy enum value set: [AgentRFT"),
    ({"JobName": "bad name!"}, "ValidationException", "Member must satisfy regular expression pattern"),
    ({"JobName": "x" * 64}, "ValidationException", "Member must have length less than or equal to 63"),
    ({"RoleArn": "notarole"}, "ValidationException", "Member must have length greater than or equal to 20"),
    ({"JobName": 5}, "SerializationException", "jobName"),
    ({"Tags": "notalist"}, "SerializationException", "tags"),
    ({"JobConfigDocument": "not json"}, "ValidationException", "JobConfigDocument is not valid JSON"),
])
def test_sagemaker_invalid_members(server, role_arn, override, code, fragment):
    status, got, message = _json_error(*rawclient.sagemaker(server.endpoint, server.credentials(), "CreateJob",
                                                            valid_create(role_arn, **override)))
    assert (status, got) == (400, code)
    assert fragment in message


def test_several_violations_are_counted(server, role_arn):
    _, code, message = _json_error(*rawclient.sagemaker(
        server.endpoint, server.credentials(), "CreateJob",
        valid_create(role_arn, JobName="bad name!", JobCategory="Bogus", JobConfigSchemaVersion=None)))
    assert code == "ValidationException"
    assert message.startswith("3 validation errors detected: ")
    assert message.count("failed to satisfy constraint") == 3


@pytest.mark.parametrize("body", [b"{not json", b"[1, 2]", b"\xff\xfe"])
def test_malformed_json_bodies(server, body):
    status, code, _ = _json_error(*rawclient.sagemaker(server.endpoint, server.credentials(), "ListJobs", body))
    assert (status, code) == (400, "SerializationException")


def test_unknown_operation_and_missing_target(server):
    creds = server.credentials()
    status, code, _ = _json_error(*rawclient.sagemaker(server.endpoint, creds, "DoesNotExist", {}))
    assert (status, code) == (400, "UnknownOperationException")
    status, headers, body = rawclient.send(server.endpoint, "POST", "/", service="sagemaker", credentials=creds,
                                           body=b"{}", headers={"Content-Type": "application/x-amz-json-1.1"})
    assert status == 400 and _json_error(status, headers, body)[1] == "UnknownOperationException"


def test_modelled_but_unserved_operation_is_a_clean_400(server):
    status, code, message = _json_error(*rawclient.sagemaker(
        server.endpoint, server.credentials(), "ListTrainingJobs", {}))
    assert (status, code) == (400, "UnknownOperationException")
    assert "not supported" in message


def test_query_protocol_errors(server):
    creds = server.credentials()
    form = {"Content-Type": "application/x-www-form-urlencoded; charset=utf-8"}
    status, _, body = rawclient.send(server.endpoint, "POST", "/", service="iam", credentials=creds,
                                     body=b"Action=GetRole&Version=2010-05-08", headers=form)
    assert status == 400 and b"<Code>ValidationError</Code>" in body
    assert b"Value null at 'roleName'" in body
    status, _, body = rawclient.send(server.endpoint, "POST", "/", service="iam", credentials=creds,
                                     body=b"Action=Explode&Version=2010-05-08", headers=form)
    assert status == 400 and b"<Code>InvalidAction</Code>" in body
    status, _, body = rawclient.send(server.endpoint, "POST", "/", service="iam", credentials=creds,
                                     body=b"Action=GetRole&Version=2010-05-08&RoleName=" + b"r" * 65, headers=form)
    assert status == 400 and b"Member must have length less than or equal to 64" in body
    status, _, body = rawclient.send(server.endpoint, "POST", "/", service="iam", credentials=creds,
                                     body=b"Action=GetRole&Version=2010-05-08&RoleName=nope", headers=form)
    assert status == 404 and b"<Code>NoSuchEntity</Code>" in body and b"<ErrorResponse" in body


def test_rest_json_routing_errors(server):
    creds = server.credentials()
    status, headers, body = rawclient.send(server.endpoint, "GET", "/no/such/path", service="braket",
                                           credentials=creds)
    assert 400 <= status < 500
    assert json.loads(body)["__type"] == "UnknownOperationException"


def test_deeply_nested_bodies_are_client_errors(server):
    creds = server.credentials()
    nested = b'{"JobCategory":"%s","NameContains":' % TEST_CATEGORY.encode() + b"[" * 5000 + b"]" * 5000 + b"}"
    status, _, body = rawclient.sagemaker(server.endpoint, creds, "ListJobs", nested)
    assert status == 400 and json.loads(body)["__type"] == "SerializationException"
    status, _, body = rawclient.send(server.endpoint, "POST", "/model-customization-jobs", service="bedrock",
                                     credentials=creds, body=b'{"jobName":' + b"[" * 5000 + b"]" * 5000 + b"}",
                                     headers={"Content-Type": "application/json"})
    assert 400 <= status < 500


# -- SigV4 ---------------------------------------------------------------------

def _identity_status(server, credentials, mutate=None, **kw):
    return rawclient.send(server.endpoint, "POST", "/", service="sts", credentials=credentials,
                          body=b"Action=GetCallerIdentity&Version=2011-06-15",
                          headers={"Content-Type": "application/x-www-form-urlencoded; charset=utf-8"},
                          mutate=mutate, **kw)


def test_valid_signature_is_accepted(server):
    status, _, body = _identity_status(server, server.credentials())
    assert status == 200 and b"<Account>" in body


def test_wrong_secret(server):
    creds = dict(server.credentials(), aws_secret_access_key="x" * 40)
    status, _, body = _identity_status(server, creds)
    assert status == 403 and b"SignatureDoesNotMatch" in body
    status, headers, body = rawclient.sagemaker(server.endpoint, creds, "ListJobs", {"JobCategory": TEST_CATEGORY})
    assert status == 403 and json.loads(body)["__type"] == "InvalidSignatureException"


def test_tampered_body(server):
    def tamper(body, headers):
        return body.replace(b"GetCallerIdentity", b"GetCallerIdentitx"), headers

    status, _, body = _identity_status(server, server.credentials(), mutate=tamper)
    assert status == 403 and b"SignatureDoesNotMatch" in body


def test_a_claimed_payload_hash_cannot_stand_for_another_body(server):
    """Outside S3 the signature covers the body received, whatever x-amz-content-sha256 claims."""
    iam = server.client("iam")
    iam.create_role(RoleName="KeepMe", AssumeRolePolicyDocument='{"Version":"2012-10-17","Statement":[]}')

    def swap(body, headers):
        other = b"Action=DeleteRole&Version=2010-05-08&RoleName=KeepMe"
        return other, dict(headers, **{"Content-Length": str(len(other))})

    for claim in ("UNSIGNED-PAYLOAD", "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"):
        status, _, body = rawclient.send(
            server.endpoint, "POST", "/", service="iam", credentials=server.credentials(),
            body=b"Action=ListRoles&Version=2010-05-08", mutate=swap,
            headers={"Content-Type": "application/x-www-form-urlencoded; charset=utf-8",
                     "X-Amz-Content-SHA256": claim})
        assert status == 403 and b"SignatureDoesNotMatch" in body, body
    assert iam.get_role(RoleName="KeepMe")["Role"]["RoleName"] == "KeepMe"


def test_expired_date(server):
    import datetime as dt
    from unittest import mock

    past = dt.datetime.now(dt.timezone.utc).replace(tzinfo=None) - dt.timedelta(minutes=20)
    with mock.patch("botocore.auth.get_current_datetime", return_value=past):
        status, _, body = _identity_status(server, server.credentials())
    assert status == 403 and b"Signature expired" in body


def test_unknown_key_and_missing_auth(server):
    creds = {"aws_access_key_id": "AKIANOTAREALKEY00000", "aws_secret_access_key": "s" * 40}
    status, _, body = _identity_status(server, creds)
    assert status == 403 and b"InvalidClientTokenId" in body
    status, headers, body = rawclient.sagemaker(server.endpoint, creds, "ListJobs", {"JobCategory": TEST_CATEGORY})
    assert status == 403 and json.loads(body)["__type"] == "UnrecognizedClientException"
    status, headers, body = rawclient.sagemaker(server.endpoint, creds, "ListJobs", {"JobCategory": TEST_CATEGORY},
                                                sign=False)
    assert status == 403 and json.loads(body)["__type"] == "MissingAuthenticationTokenException"


def test_accounts_are_isolated(server, role_arn):
    subprocess.run([sys.executable, "-m", "jobforge.cli", "--data-dir", str(server.data_dir), "accounts", "create",
                    "tenant-b"], check=True, capture_output=True)
    mine = server.client("sagemaker")
    theirs = server.client("sagemaker", profile="tenant-b")
    other_account = server.client("sts", profile="tenant-b").get_caller_identity()["Account"]
    assert other_account != role_arn.split(":")[4]
    mine.create_job(JobName="private-job", RoleArn=role_arn, JobCategory=TEST_CATEGORY,
                    JobConfigSchemaVersion="1.0.0", JobConfigDocument="{}")
    with pytest.raises(ClientError) as err:
        theirs.describe_job(JobName="private-job", JobCategory=TEST_CATEGORY)
    assert err.value.response["Error"]["Code"] == "ResourceNotFound"
    assert not [j for j in theirs.list_jobs(JobCategory=TEST_CATEGORY)["JobSummaries"]]
    with pytest.raises(ClientError):  # and cannot use my roles
        theirs.create_job(JobName="borrowed-role", RoleArn=role_arn, JobCategory=TEST_CATEGORY,
                          JobConfigSchemaVersion="1.0.0", JobConfigDocument="{}")
    # the same name is free in the other account
    theirs.create_job(JobName="private-job", RoleArn=f"arn:aws:iam::{other_account}:role/JobforgeExecutionRole",
                      JobCategory=TEST_CATEGORY, JobConfigSchemaVersion="1.0.0", JobConfigDocument="{}")


def test_client_side_unvalidated_requests_are_checked_by_the_server(server, role_arn):
    sm = server.client("sagemaker", parameter_validation=False)
    with pytest.raises(ClientError) as err:
        sm.create_job(JobName="v", JobCategory=TEST_CATEGORY, JobConfigSchemaVersion="1.0.0", JobConfigDocument="{}")
    assert err.value.response["Error"]["Code"] == "ValidationException"
    assert err.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400
    assert err.value.response["ResponseMetadata"]["RetryAttempts"] == 0


def test_aws_cli_against_the_server(server, tmp_path):
    env = {"AWS_SHARED_CREDENTIALS_FILE": str(server.data_dir / "credentials"),
           "AWS_CONFIG_FILE": str(server.data_dir / "config"), "AWS_DEFAULT_REGION": "us-east-1",
           "PATH": f"{sys.prefix}/bin"}
    aws = [f"{sys.prefix}/bin/aws", "--endpoint-url", server.endpoint, "--output", "json"]
    who = subprocess.run(aws + ["sts", "get-caller-identity"], env=env, capture_output=True, text=True, check=True)
    assert json.loads(who.stdout)["Arn"].endswith(":root")
    made = subprocess.run(aws + ["iam", "create-role", "--role-name", "cli-role", "--assume-role-policy-document",
                                 '{"Version":"2012-10-17","Statement":[]}'], env=env, capture_output=True, text=True,
                          check=True)
    assert json.loads(made.stdout)["Role"]["Arn"].endswith(":role/cli-role")
    jobs = subprocess.run(aws + ["sagemaker", "list-jobs", "--job-category", TEST_CATEGORY], env=env,
                          capture_output=True, text=True, check=True)
    assert "JobSummaries" in json.loads(jobs.stdout)
    bad = subprocess.run(aws + ["sagemaker", "describe-job", "--job-name", "nope", "--job-category", TEST_CATEGORY],
                         env=env, capture_output=True, text=True)
    assert bad.returncode != 0 and "ResourceNotFound" in bad.stderr


def test_iam_role_lifecycle(server):
    iam = server.client("iam")
    iam.create_role(RoleName="temp-role", Path="/svc/", Description="d",
                    AssumeRolePolicyDocument='{"Version":"2012-10-17","Statement":[]}')
    with pytest.raises(ClientError) as err:
        iam.create_role(RoleName="temp-role", AssumeRolePolicyDocument="{}")
    assert err.value.response["Error"]["Code"] == "EntityAlreadyExists"
    assert [r["RoleName"] for r in iam.list_roles(PathPrefix="/svc/")["Roles"]] == ["temp-role"]
    pages = list(iam.get_paginator("list_roles").paginate(PaginationConfig={"PageSize": 1}))
    assert len(pages) >= 3
    iam.delete_role(RoleName="temp-role")
    with pytest.raises(ClientError) as err:
        iam.get_role(RoleName="temp-role")
    assert err.value.response["Error"]["Code"] == "NoSuchEntity"


def _s3_error(url: str) -> tuple[int, str, str]:
    import urllib.error
    import urllib.request
    from xml.etree import ElementTree

    try:
        urllib.request.urlopen(url, timeout=30)
    except urllib.error.HTTPError as err:
        root = ElementTree.fromstring(err.read())
        return err.code, root.findtext("Code"), root.findtext("Message")
    raise AssertionError(f"{url} was answered with success")


def test_s3_input_errors_are_invalid_argument(server):
    s3 = server.client("s3", parameter_validation=False)
    s3.create_bucket(Bucket="arg-errors")
    s3.put_object(Bucket="arg-errors", Key="k", Body=b"x")
    with pytest.raises(ClientError) as err:
        s3.copy_object(Bucket="arg-errors", Key="k2", CopySource="arg-errors/k", MetadataDirective="BOGUS")
    assert err.value.response["Error"]["Code"] == "InvalidArgument"
    assert "Member must satisfy enum value set: [COPY, REPLACE]" in err.value.response["Error"]["Message"]


def test_s3_header_signatures_must_claim_their_payload(server):
    """Without x-amz-content-sha256 nothing would cover an S3 body (it is read after the signature check)."""
    server.client("s3").create_bucket(Bucket="claims")
    status, _, body = rawclient.send(server.endpoint, "PUT", "/claims/k", service="s3",
                                     credentials=server.credentials(), body=b"hello")
    assert status == 400 and b"<Code>InvalidRequest</Code>" in body and b"x-amz-content-sha256" in body


def test_presigned_urls_of_other_services_cover_the_empty_body(server):
    import urllib.request

    url = server.client("sts").generate_presigned_url("get_caller_identity", ExpiresIn=60, HttpMethod="GET")
    with urllib.request.urlopen(url, timeout=30) as answer:
        assert b"<Account>" in answer.read()


def test_s3_authentication_errors_speak_s3(server):
    import boto3

    s3 = server.client("s3")
    s3.create_bucket(Bucket="auth-errors")
    s3.put_object(Bucket="auth-errors", Key="k", Body=b"x")
    assert _s3_error(f"{server.endpoint}/auth-errors/k") == (403, "AccessDenied", "Access Denied")  # anonymous

    sigv2 = server.client("s3", signature_version="s3")
    status, code, message = _s3_error(sigv2.generate_presigned_url(
        "get_object", Params={"Bucket": "auth-errors", "Key": "k"}, ExpiresIn=60).replace("Signature=", "Signature=x"))
    assert status == 403 and code == "SignatureDoesNotMatch" and "signature" in message

    sigv4 = server.client("s3", signature_version="s3v4")
    status, code, message = _s3_error(sigv4.generate_presigned_url(
        "get_object", Params={"Bucket": "auth-errors", "Key": "k"}, ExpiresIn=604801))
    assert (status, code) == (400, "AuthorizationQueryParametersError") and "604800" in message

    stranger = boto3.client("s3", endpoint_url=server.endpoint, region_name="us-east-1",
                            aws_access_key_id="AKIANOTAREALKEY00000", aws_secret_access_key="s" * 40)
    with pytest.raises(ClientError) as err:
        stranger.get_object(Bucket="auth-errors", Key="k")
    assert err.value.response["Error"]["Code"] == "InvalidAccessKeyId"
    assert err.value.response["Error"]["Message"] == "The AWS Access Key Id you provided does not exist in our records."
