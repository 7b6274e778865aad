"""IAM managed and inline policies, attachments and SimulatePrincipalPolicy, through boto3 and the AWS CLI
against the real server."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from pathlib import Path
from urllib.parse import unquote

import pytest
from botocore.exceptions import ClientError

TRUST = json.dumps({"Version": "2012-10-17", "Statement": [{
    "Effect": "Allow", "Principal": {"Service": "sagemaker.amazonaws.com"}, "Action": "sts:AssumeRole"}]})
S3_READ = {"Version": "2012-10-17", "Statement": [
    {"Sid": "Read", "Effect": "Allow", "Action": ["s3:Get*", "s3:List*"], "Resource": "arn:aws:s3:::data/*"},
    {"Sid": "NoSecrets", "Effect": "Deny", "Action": "s3:*", "Resource": "arn:aws:s3:::data/secret/*"}]}
SAGEMAKER_FULL = "arn:aws:iam::aws:policy/AmazonSageMakerFullAccess"


def _error(excinfo) -> tuple[str, int, str]:
    err = excinfo.value.response
    return err["Error"]["Code"], err["ResponseMetadata"]["HTTPStatusCode"], err["Error"]["Message"]


@pytest.fixture(scope="module")
def iam(server):
    return server.client("iam")


@pytest.fixture
def role(iam):
    name = f"policy-role-{uuid.uuid4().hex[:12]}"
    iam.create_role(RoleName=name, AssumeRolePolicyDocument=TRUST)
    yield name
    for attached in iam.list_attached_role_policies(RoleName=name)["AttachedPolicies"]:
        iam.detach_role_policy(RoleName=name, PolicyArn=attached["PolicyArn"])
    for policy_name in iam.list_role_policies(RoleName=name)["PolicyNames"]:
        iam.delete_role_policy(RoleName=name, PolicyName=policy_name)
    iam.delete_role(RoleName=name)


def test_a_managed_policy_is_created_read_listed_and_deleted(iam, account_id):
    document = json.dumps(S3_READ, indent=2)
    created = iam.create_policy(PolicyName="S3Read", Path="/team/", PolicyDocument=document,
                                Description="read the data bucket", Tags=[{"Key": "team", "Value": "ml"}])["Policy"]
    arn = f"arn:aws:iam::{account_id}:policy/team/S3Read"
    assert created["Arn"] == arn and created["DefaultVersionId"] == "v1" and created["AttachmentCount"] == 0
    assert created["PolicyId"].startswith("ANPA") and created["IsAttachable"]
    got = iam.get_policy(PolicyArn=arn)["Policy"]
    assert got["Description"] == "read the data bucket" and got["Tags"] == [{"Key": "team", "Value": "ml"}]
    version = iam.get_policy_version(PolicyArn=arn, VersionId="v1")["PolicyVersion"]
    assert version["Document"] == S3_READ and version["IsDefaultVersion"]  # boto3 decodes IAM's URL-encoding

    with pytest.raises(ClientError) as err:
        iam.create_policy(PolicyName="s3read", PolicyDocument=document)  # names are not told apart by case
    assert _error(err)[:2] == ("EntityAlreadyExists", 409)

    local = iam.list_policies(Scope="Local")["Policies"]
    assert [p["Arn"] for p in local] == [arn]
    assert iam.list_policies(Scope="Local", PathPrefix="/other/")["Policies"] == []
    aws = {p["PolicyName"] for p in iam.list_policies(Scope="AWS")["Policies"]}
    assert {"AmazonSageMakerFullAccess", "AmazonS3FullAccess", "AmazonBedrockFullAccess", "AmazonBraketFullAccess",
            "AdministratorAccess"} <= aws and "S3Read" not in aws

    iam.delete_policy(PolicyArn=arn)
    with pytest.raises(ClientError) as err:
        iam.get_policy(PolicyArn=arn)
    assert _error(err) == ("NoSuchEntity", 404, f"Policy {arn} was not found.")


def test_policy_versions_keep_a_default_and_at_most_five(iam, account_id):
    arn = iam.create_policy(PolicyName="Versioned", PolicyDocument=json.dumps(S3_READ))["Policy"]["Arn"]
    wider = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "s3:*", "Resource": "*"}]}
    for i in range(2, 6):
        made = iam.create_policy_version(PolicyArn=arn, PolicyDocument=json.dumps(wider), SetAsDefault=(i == 3))
        assert made["PolicyVersion"]["VersionId"] == f"v{i}"
    with pytest.raises(ClientError) as err:
        iam.create_policy_version(PolicyArn=arn, PolicyDocument=json.dumps(wider))
    assert _error(err)[0] == "LimitExceeded"
    versions = iam.list_policy_versions(PolicyArn=arn)["Versions"]
    assert [v["VersionId"] for v in versions] == ["v5", "v4", "v3", "v2", "v1"]
    assert [v["VersionId"] for v in versions if v["IsDefaultVersion"]] == ["v3"]
    assert iam.get_policy(PolicyArn=arn)["Policy"]["DefaultVersionId"] == "v3"
    with pytest.raises(ClientError) as err:
        iam.delete_policy_version(PolicyArn=arn, VersionId="v3")
    assert _error(err)[:2] == ("DeleteConflict", 409)
    iam.set_default_policy_version(PolicyArn=arn, VersionId="v1")
    with pytest.raises(ClientError) as err:  # versions other than the default must go first
        iam.delete_policy(PolicyArn=arn)
    assert _error(err)[0] == "DeleteConflict"
    for version in ("v2", "v3", "v4", "v5"):
        iam.delete_policy_version(PolicyArn=arn, VersionId=version)
    with pytest.raises(ClientError) as err:
        iam.get_policy_version(PolicyArn=arn, VersionId="v4")
    assert _error(err)[0] == "NoSuchEntity"
    iam.delete_policy(PolicyArn=arn)


@pytest.mark.parametrize("document, message", [
    ("{not json", "This policy contains invalid Json"),
    (json.dumps({"Statement": [{"Effect": "Allow", "Action": "s3:*", "Resource": "*"}]}),
     "Policy document must be version 2012-10-17 or greater."),
    (json.dumps({"Version": "2012-10-17"}), "Syntax errors in policy."),
    (json.dumps({"Version": "2012-10-17", "Statement": [{"Effect": "Maybe", "Action": "s3:*", "Resource": "*"}]}),
     "Syntax errors in policy."),
    (json.dumps({"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Resource": "*"}]}),
     "Policy statement must contain actions."),
    (json.dumps({"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "s3:*"}]}),
     "Policy statement must contain resources."),
    (json.dumps({"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "GetObject", "Resource": "*"}]}),
     "Actions/Conditions must be prefaced by a vendor, e.g., iam, sdb, ec2, etc."),
    (json.dumps({"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "s3:*", "Resource": "bucket"}]}),
     'Resource bucket must be in ARN format or "*".'),
])
def test_malformed_documents_are_refused_as_iam_refuses_them(iam, role, document, message):
    with pytest.raises(ClientError) as err:
        iam.create_policy(PolicyName="Malformed", PolicyDocument=document)
    assert _error(err) == ("MalformedPolicyDocument", 400, message)
    with pytest.raises(ClientError) as err:
        iam.put_role_policy(RoleName=role, PolicyName="Malformed", PolicyDocument=document)
    assert _error(err) == ("MalformedPolicyDocument", 400, message)


def test_policy_sizes_are_bounded_as_on_iam(iam, role):
    def document(n_actions):
        return json.dumps({"Version": "2012-10-17", "Statement": [{
            "Effect": "Allow", "Action": [f"s3:Action{i:05d}" for i in range(n_actions)], "Resource": "*"}]},
            indent=8)  # white space is not counted

    with pytest.raises(ClientError) as err:
        iam.create_policy(PolicyName="TooLarge", PolicyDocument=document(400))
    assert _error(err) == ("LimitExceeded", 409, "Cannot exceed quota for PolicySize: 6144")
    iam.put_role_policy(RoleName=role, PolicyName="first", PolicyDocument=document(300))
    iam.put_role_policy(RoleName=role, PolicyName="first", PolicyDocument=document(300))  # replaced, not added
    with pytest.raises(ClientError) as err:
        iam.put_role_policy(RoleName=role, PolicyName="second", PolicyDocument=document(300))
    assert _error(err) == ("LimitExceeded", 409, f"Maximum policy size of 10240 bytes exceeded for role {role}")


def test_attachments_and_the_conflicts_they_cause(iam, role, account_id):
    arn = iam.create_policy(PolicyName="Attached", PolicyDocument=json.dumps(S3_READ))["Policy"]["Arn"]
    iam.attach_role_policy(RoleName=role, PolicyArn=arn)
    iam.attach_role_policy(RoleName=role.upper(), PolicyArn=SAGEMAKER_FULL)  # role names in any case
    iam.attach_role_policy(RoleName=role, PolicyArn=SAGEMAKER_FULL)  # again: no change
    attached = iam.list_attached_role_policies(RoleName=role)["AttachedPolicies"]
    assert sorted(p["PolicyName"] for p in attached) == ["AmazonSageMakerFullAccess", "Attached"]
    assert iam.get_policy(PolicyArn=arn)["Policy"]["AttachmentCount"] == 1
    only_attached = {p["Arn"] for p in iam.list_policies(OnlyAttached=True)["Policies"]}
    assert {arn, SAGEMAKER_FULL} <= only_attached
    entities = iam.list_entities_for_policy(PolicyArn=arn)  # what clean-up code asks before deleting
    role_id = iam.get_role(RoleName=role)["Role"]["RoleId"]
    assert entities["PolicyRoles"] == [{"RoleName": role, "RoleId": role_id}]
    assert entities["PolicyUsers"] == [] and entities["PolicyGroups"] == []
    assert iam.list_entities_for_policy(PolicyArn=arn, EntityFilter="User")["PolicyRoles"] == []
    assert iam.list_entities_for_policy(PolicyArn=arn, PathPrefix="/elsewhere/")["PolicyRoles"] == []
    assert {"RoleName": role, "RoleId": role_id} in iam.list_entities_for_policy(
        PolicyArn=SAGEMAKER_FULL)["PolicyRoles"]

    with pytest.raises(ClientError) as err:
        iam.delete_policy(PolicyArn=arn)
    assert _error(err) == ("DeleteConflict", 409, "Cannot delete a policy attached to entities.")
    with pytest.raises(ClientError) as err:
        iam.delete_role(RoleName=role)
    assert _error(err) == ("DeleteConflict", 409, "Cannot delete entity, must detach all policies first.")
    assert iam.get_role(RoleName=role)["Role"]["RoleName"] == role  # refused: the role is still there

    iam.detach_role_policy(RoleName=role, PolicyArn=arn)
    iam.detach_role_policy(RoleName=role, PolicyArn=SAGEMAKER_FULL)
    with pytest.raises(ClientError) as err:
        iam.detach_role_policy(RoleName=role, PolicyArn=arn)
    assert _error(err) == ("NoSuchEntity", 404, f"Policy {arn} was not found.")
    iam.delete_policy(PolicyArn=arn)


def test_unknown_policies_and_roles_are_no_such_entity(iam, role, account_id):
    unknown = f"arn:aws:iam::{account_id}:policy/NoSuchPolicy"
    with pytest.raises(ClientError) as err:
        iam.attach_role_policy(RoleName=role, PolicyArn=unknown)
    assert _error(err) == ("NoSuchEntity", 404, f"Policy {unknown} does not exist or is not attachable.")
    with pytest.raises(ClientError) as err:
        iam.attach_role_policy(RoleName=role, PolicyArn="arn:aws:iam::aws:policy/NoSuchAwsPolicy")
    assert _error(err)[0] == "NoSuchEntity"
    with pytest.raises(ClientError) as err:
        iam.attach_role_policy(RoleName="NoSuchRole", PolicyArn=SAGEMAKER_FULL)
    assert _error(err) == ("NoSuchEntity", 404, "The role with name NoSuchRole cannot be found.")
    for call in (lambda: iam.get_policy(PolicyArn=unknown), lambda: iam.delete_policy(PolicyArn=unknown),
                 lambda: iam.list_entities_for_policy(PolicyArn=unknown),
                 lambda: iam.update_assume_role_policy(RoleName="NoSuchRole", PolicyDocument=TRUST),
                 lambda: iam.list_policy_versions(PolicyArn=unknown),
                 lambda: iam.get_role_policy(RoleName=role, PolicyName="nothing"),
                 lambda: iam.delete_role_policy(RoleName=role, PolicyName="nothing"),
                 lambda: iam.put_role_policy(RoleName="NoSuchRole", PolicyName="p",
                                             PolicyDocument=json.dumps(S3_READ))):
        with pytest.raises(ClientError) as err:
            call()
        assert _error(err)[:2] == ("NoSuchEntity", 404)


def test_another_accounts_policy_is_not_found(server, iam, account_id):
    arn = iam.create_policy(PolicyName="Private", PolicyDocument=json.dumps(S3_READ))["Policy"]["Arn"]
    subprocess.run([sys.executable, "-m", "jobforge.cli", "--data-dir", str(server.data_dir), "accounts", "create",
                    "policy-other"], check=True, capture_output=True)
    other = server.client("iam", profile="policy-other")
    with pytest.raises(ClientError) as err:
        other.get_policy(PolicyArn=arn)
    assert _error(err)[0] == "NoSuchEntity"
    with pytest.raises(ClientError) as err:
        other.attach_role_policy(RoleName="JobforgeExecutionRole", PolicyArn=arn)
    assert _error(err)[0] == "NoSuchEntity"
    assert other.list_policies(Scope="Local")["Policies"] == []
    iam.delete_policy(PolicyArn=arn)


def test_inline_policies_are_stored_url_encoded_and_listed(iam, role, server):
    document = json.dumps(S3_READ, indent=2)
    iam.put_role_policy(RoleName=role, PolicyName="b-inline", PolicyDocument=document)
    iam.put_role_policy(RoleName=role, PolicyName="a-inline", PolicyDocument=document)
    got = iam.get_role_policy(RoleName=role.upper(), PolicyName="b-inline")
    assert got["RoleName"] == role and got["PolicyDocument"] == S3_READ
    raw = _raw_query(server, "GetRolePolicy", RoleName=role, PolicyName="b-inline")
    assert "%22Statement%22" in raw and unquote(raw.split("<PolicyDocument>")[1].split("<")[0]) == document
    first = iam.list_role_policies(RoleName=role, MaxItems=1)
    assert first["PolicyNames"] == ["a-inline"] and first["IsTruncated"]
    rest = iam.list_role_policies(RoleName=role, Marker=first["Marker"])
    assert rest["PolicyNames"] == ["b-inline"] and not rest["IsTruncated"]
    with pytest.raises(ClientError) as err:
        iam.delete_role(RoleName=role)
    assert _error(err) == ("DeleteConflict", 409, "Cannot delete entity, must delete policies first.")
    iam.delete_role_policy(RoleName=role, PolicyName="a-inline")
    assert iam.list_role_policies(RoleName=role)["PolicyNames"] == ["b-inline"]


def _raw_query(server, action: str, **params) -> str:
    """The response body as sent, which boto3 would decode."""
    import botocore.session
    from botocore.auth import SigV4Auth
    from botocore.awsrequest import AWSRequest
    import urllib.request

    creds = server.credentials()
    session = botocore.session.get_session()
    session.set_credentials(creds["aws_access_key_id"], creds["aws_secret_access_key"])
    body = "&".join([f"Action={action}", "Version=2010-05-08", *(f"{k}={v}" for k, v in params.items())])
    request = AWSRequest("POST", server.endpoint + "/", data=body,
                         headers={"Content-Type": "application/x-www-form-urlencoded"})
    SigV4Auth(session.get_credentials(), "iam", "us-east-1").add_auth(request)
    with urllib.request.urlopen(urllib.request.Request(request.url, data=body.encode(), method="POST",
                                                       headers=dict(request.headers))) as response:
        return response.read().decode()


def test_listing_policies_pages_with_markers(iam):
    arns = [iam.create_policy(PolicyName=f"Paged{i}", Path="/paged/", PolicyDocument=json.dumps(S3_READ))
            ["Policy"]["Arn"] for i in range(5)]
    seen, marker = [], None
    while True:
        page = iam.list_policies(PathPrefix="/paged/", MaxItems=2, **({"Marker": marker} if marker else {}))
        seen += [p["Arn"] for p in page["Policies"]]
        assert len(page["Policies"]) <= 2
        if not page["IsTruncated"]:
            break
        marker = page["Marker"]
    assert seen == sorted(arns)
    paginated = [p["Arn"] for page in iam.get_paginator("list_policies").paginate(
        PathPrefix="/paged/", PaginationConfig={"PageSize": 3}) for p in page["Policies"]]
    assert paginated == sorted(arns)
    with pytest.raises(ClientError) as err:
        iam.list_policies(Marker="not a marker")
    assert _error(err)[0] == "InvalidInput"
    for arn in arns:
        iam.delete_policy(PolicyArn=arn)


def test_simulation_evaluates_the_roles_stored_policies(iam, role, account_id):
    arn = iam.create_policy(PolicyName="Simulated", PolicyDocument=json.dumps(S3_READ, indent=4))["Policy"]["Arn"]
    iam.attach_role_policy(RoleName=role, PolicyArn=arn)
    iam.put_role_policy(RoleName=role, PolicyName="bedrock-in-us-east-1", PolicyDocument=json.dumps({
        "Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "bedrock:*", "Resource": "*",
                                                "Condition": {"StringEquals": {"aws:RequestedRegion": "us-east-1"}}}]}))
    role_arn = f"arn:aws:iam::{account_id}:role/{role}"

    def decide(action, resource="*", **extra):
        results = iam.simulate_principal_policy(PolicySourceArn=role_arn, ActionNames=[action],
                                                ResourceArns=[resource], **extra)["EvaluationResults"]
        assert len(results) == 1 and results[0]["EvalActionName"] == action
        return results[0]

    allowed = decide("s3:GetObject", "arn:aws:s3:::data/train.csv")
    assert allowed["EvalDecision"] == "allowed" and allowed["EvalResourceName"] == "arn:aws:s3:::data/train.csv"
    assert allowed["MatchedStatements"] == [{"SourcePolicyId": "Simulated", "SourcePolicyType": "user-managed",
                                             "StartPosition": {"Line": 4, "Column": 10},
                                             "EndPosition": {"Line": 12, "Column": 10}}]
    denied = decide("s3:GetObject", "arn:aws:s3:::data/secret/key")
    assert denied["EvalDecision"] == "explicitDeny"  # the deny wins over the allow
    assert [m["StartPosition"]["Line"] for m in denied["MatchedStatements"]] == [13]
    assert decide("s3:PutObject", "arn:aws:s3:::data/x")["EvalDecision"] == "implicitDeny"
    assert decide("s3:getobject", "arn:aws:s3:::other/x")["EvalDecision"] == "implicitDeny"
    assert decide("S3:GETOBJECT", "arn:aws:s3:::data/x")["EvalDecision"] == "allowed"  # actions in any case

    missing = decide("bedrock:InvokeModel")
    assert missing["EvalDecision"] == "implicitDeny" and missing["MissingContextValues"] == ["aws:RequestedRegion"]
    region = {"ContextKeyName": "aws:RequestedRegion", "ContextKeyType": "string"}
    inside = decide("bedrock:InvokeModel", ContextEntries=[{**region, "ContextKeyValues": ["us-east-1"]}])
    assert inside["EvalDecision"] == "allowed" and inside["MatchedStatements"][0]["SourcePolicyType"] == "role"
    outside = decide("bedrock:InvokeModel", ContextEntries=[{**region, "ContextKeyValues": ["eu-west-1"]}])
    assert outside["EvalDecision"] == "implicitDeny" and outside["MissingContextValues"] == []

    extra = decide("ec2:RunInstances", PolicyInputList=[json.dumps({"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Action": "ec2:*", "Resource": "*"}]})])
    assert extra["EvalDecision"] == "allowed" and extra["MatchedStatements"][0]["SourcePolicyId"] == "PolicyInputList.1"
    for exclusion in ({"PolicyArn": arn}, {"PolicyArn": arn.replace("Simulated", "Sim*")},
                      {"PolicyType": "user-managed"}):
        assert decide("s3:GetObject", "arn:aws:s3:::data/x",
                      PolicyExclusionList=[exclusion])["EvalDecision"] == "implicitDeny"
    assert decide("s3:GetObject", "arn:aws:s3:::data/x",
                  PolicyExclusionList=[{"PolicyType": "aws-managed"}])["EvalDecision"] == "allowed"
    inline = {"InlinePolicyIdentifier": {"PolicyName": "bedrock-in-us-east-1", "AttachmentType": "role",
                                         "AttachmentName": role}}
    assert decide("bedrock:InvokeModel", PolicyExclusionList=[inline],
                  ContextEntries=[{**region, "ContextKeyValues": ["us-east-1"]}])["EvalDecision"] == "implicitDeny"
    bounded = decide("s3:GetObject", "arn:aws:s3:::data/x", PermissionsBoundaryPolicyInputList=[json.dumps({
        "Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "bedrock:*", "Resource": "*"}]})])
    assert bounded["EvalDecision"] == "implicitDeny"
    assert bounded["PermissionsBoundaryDecisionDetail"] == {"AllowedByPermissionsBoundary": False}

    iam.detach_role_policy(RoleName=role, PolicyArn=arn)
    iam.delete_policy(PolicyArn=arn)


def test_simulation_as_the_sdks_call_it(iam, role, account_id):
    """One result per action and resource, paged; an AWS-managed policy grants what its summary says."""
    iam.attach_role_policy(RoleName=role, PolicyArn=SAGEMAKER_FULL)
    role_arn = f"arn:aws:iam::{account_id}:role/{role}"
    actions = ["sagemaker:CreateTrainingJob", "sagemaker:DescribeTrainingJob", "s3:GetObject", "ec2:RunInstances"]
    pages = list(iam.get_paginator("simulate_principal_policy").paginate(
        PolicySourceArn=role_arn, ActionNames=actions,
        ResourceArns=["arn:aws:s3:::sagemaker-us-east-1-bucket/key", "arn:aws:s3:::other/key"],
        PaginationConfig={"PageSize": 3}))
    results = [r for page in pages for r in page["EvaluationResults"]]
    assert len(pages) == 3 and len(results) == 8
    decisions = {(r["EvalActionName"], r["EvalResourceName"].split(":::")[1]): r["EvalDecision"] for r in results}
    assert decisions[("sagemaker:CreateTrainingJob", "other/key")] == "allowed"
    assert decisions[("s3:GetObject", "sagemaker-us-east-1-bucket/key")] == "allowed"
    assert decisions[("s3:GetObject", "other/key")] == "implicitDeny"
    assert decisions[("ec2:RunInstances", "other/key")] == "implicitDeny"
    passed = iam.simulate_principal_policy(
        PolicySourceArn=role_arn, ActionNames=["iam:PassRole"], ResourceArns=[role_arn],
        ContextEntries=[{"ContextKeyName": "iam:PassedToService", "ContextKeyValues": ["sagemaker.amazonaws.com"],
                         "ContextKeyType": "string"}])["EvaluationResults"][0]
    assert passed["EvalDecision"] == "allowed"

    root = iam.simulate_principal_policy(PolicySourceArn=f"arn:aws:iam::{account_id}:root",
                                         ActionNames=["ec2:RunInstances"])["EvaluationResults"][0]
    assert root["EvalDecision"] == "allowed"  # identity policies do not restrict the account's root user
    for source, code in ((f"arn:aws:iam::{account_id}:role/NoSuchRole", "NoSuchEntity"),
                         (f"arn:aws:iam::{account_id}:user/nobody", "NoSuchEntity"),
                         ("arn:aws:iam::210987654321:role/TheirRole", "NoSuchEntity"),
                         (f"arn:aws:sts::{account_id}:assumed-role/{role}/session", "InvalidInput")):
        with pytest.raises(ClientError) as err:
            iam.simulate_principal_policy(PolicySourceArn=source, ActionNames=["s3:GetObject"])
        assert _error(err)[0] == code
    with pytest.raises(ClientError) as err:
        iam.simulate_principal_policy(PolicySourceArn=role_arn, ActionNames=["s3:GetObject"],
                                      PolicyInputList=["{broken"])
    assert _error(err)[0] == "InvalidInput"


AWS = str(Path(sys.executable).with_name("aws"))


def _aws(server, *args):
    env = {key: value for key, value in os.environ.items() if not key.startswith("AWS_")}
    env.update(AWS_CONFIG_FILE=str(server.data_dir / "config"),
               AWS_SHARED_CREDENTIALS_FILE=str(server.data_dir / "credentials"))
    done = subprocess.run([AWS, *args, "--output", "json"], capture_output=True, text=True, env=env, timeout=120)
    return done.returncode, (json.loads(done.stdout) if done.stdout.strip() else None), done.stderr


def test_policies_through_the_aws_cli(server, role, account_id, tmp_path):
    document = tmp_path / "policy.json"
    document.write_text(json.dumps(S3_READ, indent=2))
    rc, created, stderr = _aws(server, "iam", "create-policy", "--policy-name", "CliPolicy",
                               "--policy-document", f"file://{document}")
    assert rc == 0, stderr
    arn = created["Policy"]["Arn"]
    assert _aws(server, "iam", "attach-role-policy", "--role-name", role, "--policy-arn", arn)[0] == 0
    rc, listed, _ = _aws(server, "iam", "list-attached-role-policies", "--role-name", role)
    assert listed["AttachedPolicies"] == [{"PolicyName": "CliPolicy", "PolicyArn": arn}]
    rc, simulated, stderr = _aws(server, "iam", "simulate-principal-policy", "--policy-source-arn",
                                 f"arn:aws:iam::{account_id}:role/{role}", "--action-names", "s3:GetObject",
                                 "s3:PutObject", "--resource-arns", "arn:aws:s3:::data/file")
    assert rc == 0, stderr
    assert [r["EvalDecision"] for r in simulated["EvaluationResults"]] == ["allowed", "implicitDeny"]
    rc, _, stderr = _aws(server, "iam", "delete-policy", "--policy-arn", arn)
    assert rc == 254 or rc == 255
    assert "DeleteConflict" in stderr
    rc, _, stderr = _aws(server, "iam", "put-role-policy", "--role-name", role, "--policy-name", "bad",
                         "--policy-document", "{\"Version\": \"2012-10-17\"}")
    assert rc != 0 and "MalformedPolicyDocument" in stderr
    assert _aws(server, "iam", "detach-role-policy", "--role-name", role, "--policy-arn", arn)[0] == 0
    assert _aws(server, "iam", "delete-policy", "--policy-arn", arn)[0] == 0


# The actions with Resource "*" that the SageMaker Python SDK simulates on a training role before it uses it.
SAGEMAKER_SDK_TRAINING_CHECK = [
    "ecr:GetDownloadUrlForLayer", "ecr:BatchGetImage", "ecr:BatchCheckLayerAvailability",
    "ecr:GetAuthorizationToken", "cloudwatch:PutMetricData", "ec2:CreateNetworkInterface",
    "ec2:CreateNetworkInterfacePermission", "ec2:DeleteNetworkInterface", "ec2:DeleteNetworkInterfacePermission",
    "ec2:DescribeNetworkInterfaces", "ec2:DescribeVpcs", "ec2:DescribeDhcpOptions", "ec2:DescribeSubnets",
    "ec2:DescribeSecurityGroups"]


def _denied(iam, role_arn: str, actions: list[str]) -> list[str]:
    """As the SDK asks: every page of a simulation without resources, the actions not allowed."""
    pages = iam.get_paginator("simulate_principal_policy").paginate(PolicySourceArn=role_arn, ActionNames=actions)
    return [r["EvalActionName"] for page in pages for r in page["EvaluationResults"] if r["EvalDecision"] != "allowed"]


def test_the_default_roles_say_what_they_may_do(iam, role_arn, account_id):
    """jobforge checks no identity policy on requests, so its default roles carry AdministratorAccess: what they
    can do, and what lets SDKs that check a role's policies before a job accept them."""
    for name in ("JobforgeExecutionRole", "AmazonBraketJobsExecutionRole"):
        attached = iam.list_attached_role_policies(RoleName=name)["AttachedPolicies"]
        assert attached == [{"PolicyName": "AdministratorAccess",
                             "PolicyArn": "arn:aws:iam::aws:policy/AdministratorAccess"}]
    assert _denied(iam, role_arn, SAGEMAKER_SDK_TRAINING_CHECK + ["sagemaker:CreateTrainingJob"]) == []


def test_a_role_with_the_sagemaker_managed_policy_passes_the_sdks_check(iam, role, account_id):
    role_arn = f"arn:aws:iam::{account_id}:role/{role}"
    assert _denied(iam, role_arn, SAGEMAKER_SDK_TRAINING_CHECK) == SAGEMAKER_SDK_TRAINING_CHECK
    iam.attach_role_policy(RoleName=role, PolicyArn=SAGEMAKER_FULL)
    assert _denied(iam, role_arn, SAGEMAKER_SDK_TRAINING_CHECK) == []
