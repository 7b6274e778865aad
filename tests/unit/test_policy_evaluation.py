"""The IAM policy evaluator and document reader, without a server."""

from __future__ import annotations

import json
from urllib.parse import quote

import pytest

from jobforge.core.errors import ServiceError
from jobforge.core.policy_documents import parse_identity_policy, read_statements, size
from jobforge.core.policy_evaluation import Policy, arn_match, evaluate, trusts, wildcard_match

ACCOUNT = "111122223333"


def _policy(*statements, name="p") -> Policy:
    document = json.dumps({"Version": "2012-10-17", "Statement": list(statements)})
    return Policy(name, "role", tuple(parse_identity_policy(document)))


def _allow(action="*", resource="*", **extra) -> dict:
    return {"Effect": "Allow", "Action": action, "Resource": resource, **extra}


def _deny(action="*", resource="*", **extra) -> dict:
    return {"Effect": "Deny", "Action": action, "Resource": resource, **extra}


def _decide(policy_or_policies, action, resource="*", **context) -> str:
    policies = policy_or_policies if isinstance(policy_or_policies, list) else [policy_or_policies]
    return evaluate(policies, action, resource, {k.replace("__", ":"): v for k, v in context.items()}).decision


def test_explicit_deny_wins_and_nothing_allowed_is_an_implicit_deny():
    allow_s3 = _policy(_allow("s3:*"), name="allow")
    deny_delete = _policy(_deny("s3:Delete*"), name="deny")
    assert _decide([allow_s3, deny_delete], "s3:GetObject") == "allowed"
    result = evaluate([allow_s3, deny_delete], "s3:DeleteObject", "*", {})
    assert result.decision == "explicitDeny" and [p.source_id for p, _ in result.matched] == ["deny"]
    assert _decide([allow_s3, deny_delete], "ec2:RunInstances") == "implicitDeny"
    assert _decide([], "s3:GetObject") == "implicitDeny"


def test_actions_match_in_any_case_with_wildcards():
    policy = _policy(_allow(["sagemaker:Describe*", "s3:Get?bject"]))
    assert _decide(policy, "SageMaker:describetrainingjob") == "allowed"
    assert _decide(policy, "s3:GetObject") == "allowed"
    assert _decide(policy, "s3:GetObjectAcl") == "implicitDeny"
    assert _decide(policy, "sagemaker:CreateTrainingJob") == "implicitDeny"


def test_not_action_and_not_resource():
    everything_but_iam = _policy({"Effect": "Allow", "NotAction": "iam:*", "Resource": "*"})
    assert _decide(everything_but_iam, "s3:PutObject") == "allowed"
    assert _decide(everything_but_iam, "iam:CreateRole") == "implicitDeny"
    outside_secret = _policy({"Effect": "Allow", "Action": "s3:*", "NotResource": "arn:aws:s3:::bucket/secret/*"})
    assert _decide(outside_secret, "s3:GetObject", "arn:aws:s3:::bucket/public/a") == "allowed"
    assert _decide(outside_secret, "s3:GetObject", "arn:aws:s3:::bucket/secret/a") == "implicitDeny"


def test_resources_match_part_by_part_and_case_sensitively():
    assert arn_match("arn:aws:s3:::bucket/*", "arn:aws:s3:::bucket/a/b")
    assert not arn_match("arn:aws:s3:::bucket/*", "arn:aws:s3:::Bucket/a")
    assert arn_match("arn:aws:sagemaker:*:*:training-job/*", f"arn:aws:sagemaker:us-east-1:{ACCOUNT}:training-job/x")
    assert not arn_match("arn:aws:sagemaker:*:*:training-job/*", f"arn:aws:bedrock:us-east-1:{ACCOUNT}:training-job/x")
    assert arn_match("*", "arn:aws:s3:::anything")
    assert wildcard_match("a?c*", "abcdef") and not wildcard_match("a?c", "ac")
    assert wildcard_match("a.c", "a.c") and not wildcard_match("a.c", "abc")  # only * and ? are special


def test_policy_variables_come_from_the_context():
    policy = _policy(_allow("s3:*", "arn:aws:s3:::home/${aws:username}/*"))
    result = evaluate([policy], "s3:GetObject", "arn:aws:s3:::home/ana/file", {"aws:username": ["ana"]})
    assert result.decision == "allowed"
    assert _decide(policy, "s3:GetObject", "arn:aws:s3:::home/bo/file", aws__username=["ana"]) == "implicitDeny"
    missing = evaluate([policy], "s3:GetObject", "arn:aws:s3:::home/ana/file", {})
    assert missing.decision == "implicitDeny" and missing.missing_keys == {"aws:username"}


@pytest.mark.parametrize("condition, context, decision", [
    ({"StringEquals": {"aws:RequestedRegion": "us-east-1"}}, {"aws:requestedregion": ["us-east-1"]}, "allowed"),
    ({"StringEquals": {"aws:RequestedRegion": ["eu-west-1", "us-east-1"]}}, {"aws:RequestedRegion": ["us-east-1"]},
     "allowed"),
    ({"StringEquals": {"aws:RequestedRegion": "us-east-1"}}, {"aws:RequestedRegion": ["US-EAST-1"]}, "implicitDeny"),
    ({"StringEqualsIgnoreCase": {"aws:RequestedRegion": "us-east-1"}}, {"aws:RequestedRegion": ["US-EAST-1"]},
     "allowed"),
    ({"StringNotEquals": {"aws:RequestedRegion": "us-east-1"}}, {"aws:RequestedRegion": ["eu-west-1"]}, "allowed"),
    ({"StringLike": {"s3:prefix": "home/*"}}, {"s3:prefix": ["home/ana"]}, "allowed"),
    ({"StringNotLike": {"s3:prefix": "home/*"}}, {"s3:prefix": ["home/ana"]}, "implicitDeny"),
    ({"Bool": {"aws:SecureTransport": "true"}}, {"aws:SecureTransport": ["false"]}, "implicitDeny"),
    ({"Bool": {"aws:SecureTransport": True}}, {"aws:SecureTransport": ["true"]}, "allowed"),
    ({"NumericLessThan": {"s3:max-keys": "10"}}, {"s3:max-keys": ["9"]}, "allowed"),
    ({"NumericGreaterThanEquals": {"s3:max-keys": 10}}, {"s3:max-keys": ["9"]}, "implicitDeny"),
    ({"NumericEquals": {"s3:max-keys": "10"}}, {"s3:max-keys": ["ten"]}, "implicitDeny"),
    ({"DateGreaterThan": {"aws:CurrentTime": "2020-01-01T00:00:00Z"}}, {"aws:CurrentTime": ["2026-01-01T00:00:00Z"]},
     "allowed"),
    ({"DateLessThan": {"aws:CurrentTime": "2020-01-01T00:00:00Z"}}, {"aws:CurrentTime": ["1700000000"]},
     "implicitDeny"),
    ({"IpAddress": {"aws:SourceIp": "10.0.0.0/8"}}, {"aws:SourceIp": ["10.1.2.3"]}, "allowed"),
    ({"NotIpAddress": {"aws:SourceIp": "10.0.0.0/8"}}, {"aws:SourceIp": ["10.1.2.3"]}, "implicitDeny"),
    ({"ArnLike": {"aws:SourceArn": "arn:aws:sagemaker:*:*:training-job/*"}},
     {"aws:SourceArn": [f"arn:aws:sagemaker:us-east-1:{ACCOUNT}:training-job/t"]}, "allowed"),
    ({"ArnNotEquals": {"aws:SourceArn": "arn:aws:s3:::b"}}, {"aws:SourceArn": ["arn:aws:s3:::b"]}, "implicitDeny"),
    ({"BinaryEquals": {"k:bin": "QUJD"}}, {"k:bin": ["QUJD"]}, "allowed"),
    ({"Null": {"aws:TokenIssueTime": "true"}}, {}, "allowed"),
    ({"Null": {"aws:TokenIssueTime": "false"}}, {}, "implicitDeny"),
    ({"StringEqualsIfExists": {"ec2:InstanceType": "t3.micro"}}, {}, "allowed"),
    ({"StringEqualsIfExists": {"ec2:InstanceType": "t3.micro"}}, {"ec2:InstanceType": ["p4d"]}, "implicitDeny"),
    ({"ForAnyValue:StringEquals": {"aws:TagKeys": ["team", "env"]}}, {"aws:TagKeys": ["owner", "env"]}, "allowed"),
    ({"ForAllValues:StringEquals": {"aws:TagKeys": ["team", "env"]}}, {"aws:TagKeys": ["owner", "env"]},
     "implicitDeny"),
    ({"ForAllValues:StringEquals": {"aws:TagKeys": ["team", "env"]}}, {"aws:TagKeys": ["team"]}, "allowed"),
    ({"ForAllValues:StringEquals": {"aws:TagKeys": ["team"]}}, {}, "allowed"),  # no values: vacuously true
    ({"StringEquals": {"a:one": "1"}, "Bool": {"a:two": "true"}}, {"a:one": ["1"], "a:two": ["false"]},
     "implicitDeny"),  # every block must hold
])
def test_condition_operators(condition, context, decision):
    assert evaluate([_policy(_allow(Condition=condition))], "s3:ListBucket", "*", context).decision == decision


def test_a_condition_key_absent_from_the_context_is_reported_missing():
    policy = _policy(_allow(Condition={"StringEquals": {"aws:PrincipalTag/team": "ml"}}))
    result = evaluate([policy], "s3:GetObject", "*", {})
    assert result.decision == "implicitDeny" and result.missing_keys == {"aws:PrincipalTag/team"}
    unrelated = evaluate([policy], "s3:GetObject", "*", {"other:key": ["x"]})
    assert unrelated.missing_keys == {"aws:PrincipalTag/team"}


def test_statement_positions_are_reported_past_each_brace():
    text = '{\n  "Version": "2012-10-17",\n  "Statement": [\n    {"Effect": "Allow", "Action": "*", "Resource": "*"},' \
           '\n    {"Effect": "Deny", "Action": "*", "Resource": "*"}\n  ]\n}'
    first, second = parse_identity_policy(text)
    assert (first.start.line, first.start.column, first.end.line, first.end.column) == (4, 6, 4, 56)
    assert (second.start.line, second.start.column) == (5, 6)
    single = parse_identity_policy(
        '{"Version":"2012-10-17","Statement":{"Effect":"Allow","Action":"*","Resource":"*"}}')
    assert (single[0].start.line, single[0].start.column) == (1, 38)


def test_documents_sent_url_encoded_are_read_and_sizes_skip_white_space():
    text = json.dumps({"Version": "2012-10-17", "Statement": [_allow("s3:*")]}, indent=4)
    assert parse_identity_policy(quote(text))[0].actions == ("s3:*",)
    assert size(text) == len("".join(text.split()))


@pytest.mark.parametrize("statement", [
    {"Effect": "Allow", "Action": "s3:*", "Resource": "*", "Principal": "*"},
    {"Effect": "Allow", "Action": "s3:*", "Resource": "*", "Surprise": 1},
    {"Effect": "Allow", "Action": "s3:*", "NotAction": "s3:Get*", "Resource": "*"},
    {"Effect": "Allow", "Action": "s3:*", "Resource": "*", "Condition": {"StringSortOf": {"a:b": "c"}}},
    {"Effect": "Allow", "Action": "s3:a:b", "Resource": "*"},
    {"Effect": "Allow", "Action": [], "Resource": "*"},
])
def test_identity_policies_are_validated(statement):
    with pytest.raises(ServiceError) as err:
        parse_identity_policy(json.dumps({"Version": "2012-10-17", "Statement": [statement]}))
    assert err.value.code == "MalformedPolicyDocument"


def test_duplicate_sids_are_refused():
    with pytest.raises(ServiceError, match="SID"):
        parse_identity_policy(json.dumps({"Version": "2012-10-17", "Statement": [
            _allow(Sid="one"), _deny(Sid="one")]}))


def _trust(*statements) -> list:
    return read_statements(json.dumps({"Version": "2012-10-17", "Statement": list(statements)}))


ROOT = f"arn:aws:iam::{ACCOUNT}:root"
SESSION = f"arn:aws:sts::{ACCOUNT}:assumed-role/Builder/s1"


@pytest.mark.parametrize("principal, root_allowed, session_allowed", [
    ("*", True, True),
    ({"AWS": "*"}, True, True),
    ({"AWS": ACCOUNT}, True, True),
    ({"AWS": ROOT}, True, True),
    ({"AWS": f"arn:aws:iam::{ACCOUNT}:role/team/builder"}, False, True),  # the session's role, any case and path
    ({"AWS": [f"arn:aws:iam::{ACCOUNT}:role/Other", SESSION]}, False, True),
    ({"AWS": "arn:aws:iam::999988887777:root"}, False, False),
    ({"Service": "sagemaker.amazonaws.com"}, False, False),
    ({"Federated": "cognito-identity.amazonaws.com"}, False, False),
])
def test_trust_policy_principals(principal, root_allowed, session_allowed):
    statements = _trust({"Effect": "Allow", "Principal": principal, "Action": "sts:AssumeRole"})
    assert trusts(statements, ACCOUNT, ROOT, {}) is root_allowed
    assert trusts(statements, ACCOUNT, SESSION, {}) is session_allowed


def test_trust_policies_deny_and_condition():
    allow = {"Effect": "Allow", "Principal": {"AWS": ACCOUNT}, "Action": "sts:AssumeRole"}
    assert not trusts(_trust(allow, {"Effect": "Deny", "Principal": "*", "Action": "sts:*"}), ACCOUNT, ROOT, {})
    assert not trusts(_trust({**allow, "Action": "sts:TagSession"}), ACCOUNT, ROOT, {})
    assert trusts(_trust({"Effect": "Allow", "NotPrincipal": {"AWS": SESSION}, "Action": "sts:AssumeRole"}),
                  ACCOUNT, ROOT, {})
    conditional = _trust({**allow, "Condition": {"StringEquals": {"sts:ExternalId": "x-42"}}})
    assert not trusts(conditional, ACCOUNT, ROOT, {})
    assert trusts(conditional, ACCOUNT, ROOT, {"sts:ExternalId": ["x-42"]})


def test_unreadable_trust_statements_grant_nothing():
    assert read_statements("not json") == []
    statements = read_statements(json.dumps({"Statement": [
        {"Effect": "Sometimes", "Principal": "*", "Action": "sts:AssumeRole"},
        {"Effect": "Allow", "Principal": {"AWS": ACCOUNT}, "Action": "sts:AssumeRole"}]}))
    assert len(statements) == 1 and trusts(statements, ACCOUNT, ROOT, {})
