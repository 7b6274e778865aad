"""STS: who am I (the Braket and SageMaker SDKs ask for the account id), and temporary credentials:
AssumeRole for a role of the caller's account whose trust policy lets the caller in, GetSessionToken for
the caller itself. Both are verified by the same machinery as the credentials jobs run with."""

import datetime as dt

from jobforge.api.base import RequestContext, handler
from jobforge.core import policy_documents
from jobforge.core.accounts import ROLE_BY_NAME, find_role, issue_temporary_credentials
from jobforge.core.errors import ServiceError
from jobforge.core.policy_evaluation import trusts
from jobforge.core.store import reading

ROLE_CHAINING_SECONDS = 3600  # a role session assuming a role gets at most an hour, as on AWS
ROOT_SESSION_SECONDS = 3600  # the root user's session tokens last at most an hour, as on AWS


@handler("sts", "GetCallerIdentity")
def get_caller_identity(ctx: RequestContext, req: dict) -> dict:
    return {"UserId": _user_id(ctx), "Account": ctx.account_id, "Arn": ctx.principal_arn}


def _user_id(ctx: RequestContext) -> str:
    """As AWS reports it: the account id for its root, ``RoleId:session`` for an assumed role."""
    if ctx.principal_arn.endswith(":root"):
        return ctx.account_id
    role_name, _, session = ctx.principal_arn.partition(":assumed-role/")[2].partition("/")
    with reading(ctx.engine) as conn:
        role = conn.execute(ROLE_BY_NAME, {"account": ctx.account_id, "name": role_name}).first()
    if role is None:  # the role was deleted while the job runs: AWS still names the session
        return f"{ctx.access_key_id}:{session}"
    return f"{role.role_id}:{session}"


def _session_role(ctx: RequestContext):
    """The role whose session the caller is, or None for the account's root user."""
    role_name = ctx.principal_arn.partition(":assumed-role/")[2].partition("/")[0]
    if not role_name:
        return None
    with reading(ctx.engine) as conn:
        return conn.execute(ROLE_BY_NAME, {"account": ctx.account_id, "name": role_name}).first()


def _trust_context(ctx: RequestContext, req: dict) -> dict[str, list[str]]:
    """The condition keys a trust policy can test on AssumeRole."""
    caller_role = _session_role(ctx)
    context = {
        "aws:PrincipalArn": [caller_role.arn if caller_role is not None else ctx.principal_arn],
        "aws:PrincipalAccount": [ctx.account_id],
        "aws:PrincipalType": ["AssumedRole" if caller_role is not None else "Account"],
        "aws:userid": [_user_id(ctx)],
        "aws:RequestedRegion": [ctx.region],
        "aws:SecureTransport": ["false"],
        "aws:CurrentTime": [dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")],
        "sts:RoleSessionName": [req["RoleSessionName"]],
    }
    if "ExternalId" in req:
        context["sts:ExternalId"] = [req["ExternalId"]]
    if "SourceIdentity" in req:
        context["sts:SourceIdentity"] = [req["SourceIdentity"]]
    for tag in req.get("Tags", []):
        context[f"aws:RequestTag/{tag['Key']}"] = [tag["Value"]]
    if req.get("Tags"):
        context["aws:TagKeys"] = [tag["Key"] for tag in req["Tags"]]
    return context


def _credentials(credential) -> dict:
    return {"AccessKeyId": credential.access_key_id, "SecretAccessKey": credential.secret_key,
            "SessionToken": credential.session_token,
            "Expiration": dt.datetime.fromtimestamp(credential.expires_at, dt.timezone.utc)}


@handler("sts", "AssumeRole")
def assume_role(ctx: RequestContext, req: dict) -> dict:
    role_arn, session = req["RoleArn"], req["RoleSessionName"]
    if "SerialNumber" in req or "TokenCode" in req:
        raise ServiceError("AccessDenied", "MultiFactorAuthentication failed: jobforge accounts have no MFA "
                           "devices.", 403)
    if "Policy" in req:
        policy_documents.parse_identity_policy(req["Policy"])
    role = find_role(ctx.engine, ctx.account_id, role_arn)
    statements = policy_documents.read_statements(role.assume_role_policy) if role is not None else []
    context = _trust_context(ctx, req)
    # Session tags and a source identity need their own actions in the trust policy, as on AWS.
    needed = ["sts:AssumeRole", *(["sts:TagSession"] if req.get("Tags") else []),
              *(["sts:SetSourceIdentity"] if "SourceIdentity" in req else [])]
    for action in needed:
        if role is None or not trusts(statements, ctx.account_id, ctx.principal_arn, context, action):
            raise ServiceError("AccessDenied", f"User: {ctx.principal_arn} is not authorized to perform: "
                               f"{action} on resource: {role_arn}", 403)
    duration = req.get("DurationSeconds", 3600)
    if ":assumed-role/" in ctx.principal_arn and duration > ROLE_CHAINING_SECONDS:
        raise ServiceError("ValidationError", "The requested DurationSeconds exceeds the 1 hour session limit "
                           "for roles assumed by role chaining.", 400)
    if duration > role.max_session_duration:
        raise ServiceError("ValidationError", "The requested DurationSeconds exceeds the MaxSessionDuration set "
                           "for this role.", 400)
    arn = f"arn:aws:sts::{ctx.account_id}:assumed-role/{role.role_name}/{session}"
    credential = issue_temporary_credentials(ctx.engine, ctx.account_id, arn, duration)
    result = {"Credentials": _credentials(credential),
              "AssumedRoleUser": {"AssumedRoleId": f"{role.role_id}:{session}", "Arn": arn}}
    if "SourceIdentity" in req:
        result["SourceIdentity"] = req["SourceIdentity"]
    return result


@handler("sts", "GetSessionToken")
def get_session_token(ctx: RequestContext, req: dict) -> dict:
    if ctx.access_key_id.startswith("ASIA"):  # the prefix of every temporary access key
        raise ServiceError("AccessDenied", "Cannot call GetSessionToken with session credentials", 403)
    if "SerialNumber" in req or "TokenCode" in req:
        raise ServiceError("AccessDenied", "MultiFactorAuthentication failed: jobforge accounts have no MFA "
                           "devices.", 403)
    duration = req.get("DurationSeconds", 43200)
    if ctx.principal_arn.endswith(":root"):
        duration = min(duration, ROOT_SESSION_SECONDS)
    credential = issue_temporary_credentials(ctx.engine, ctx.account_id, ctx.principal_arn, duration)
    return {"Credentials": _credentials(credential)}
