"""IAM policies: customer-managed policies and their versions, the AWS-managed ones samples attach,
inline role policies, attachments, roles' trust policies, and SimulatePrincipalPolicy evaluated against
them."""

from __future__ import annotations

import datetime as dt
import secrets
import string
import time
from urllib.parse import quote

import sqlalchemy as sa

from jobforge.api.base import RequestContext, handler
from jobforge.core import paging, policy_documents, tags
from jobforge.core.accounts import ROLE_BY_NAME, find_role
from jobforge.core.aws_managed_policies import CREATED_AT, POLICIES as AWS_POLICIES, AwsManagedPolicy
from jobforge.core.errors import ServiceError
from jobforge.core.policy_evaluation import Decision, Policy, arn_match, evaluate, wildcard_match
from jobforge.core.role_policies import role_identity_policies
from jobforge.core.store import (managed_policies, policy_versions, reading, role_policies,
                                 role_policy_attachments, roles)

MAX_VERSIONS = 5  # IAM keeps at most five versions of a managed policy
MAX_ATTACHED = 10  # IAM's default quota of managed policies attached to a role
_ID_CHARS = string.ascii_uppercase + string.digits


def _date(seconds: float) -> dt.datetime:
    return dt.datetime.fromtimestamp(seconds, dt.timezone.utc)


def _invalid_marker() -> ServiceError:
    return ServiceError("InvalidInput", "Invalid Marker.")


def _page(items: list, key, req: dict, name: str) -> dict:
    chosen, marker = paging.marker_page(items, key, req.get("Marker"), req.get("MaxItems", 100), _invalid_marker)
    result = {name: chosen, "IsTruncated": marker is not None}
    if marker:
        result["Marker"] = marker
    return result


def _role(conn, ctx: RequestContext, name: str, lock: bool = False):
    query = ROLE_BY_NAME.with_for_update() if lock else ROLE_BY_NAME
    row = conn.execute(query, {"account": ctx.account_id, "name": name}).first()
    if row is None:
        raise ServiceError("NoSuchEntity", f"The role with name {name} cannot be found.")
    return row


# --- managed policies ------------------------------------------------------------------------------

def _customer_policy(conn, ctx: RequestContext, arn: str, lock: bool = False):
    query = sa.select(managed_policies).where(managed_policies.c.arn == arn,
                                              managed_policies.c.account_id == ctx.account_id)
    return conn.execute(query.with_for_update() if lock else query).first()


def _attachment_counts(conn, account_id: str) -> dict[str, int]:
    counted = conn.execute(sa.select(role_policy_attachments.c.policy_arn, sa.func.count())
                           .where(role_policy_attachments.c.account_id == account_id)
                           .group_by(role_policy_attachments.c.policy_arn))
    return dict(counted.all())


def _policy_view(row, attachments: int) -> dict:
    """A policy as ListPolicies shows it (GetPolicy adds its description and tags)."""
    if isinstance(row, AwsManagedPolicy):
        return {"PolicyName": row.name, "PolicyId": row.policy_id, "Arn": row.arn, "Path": row.path,
                "DefaultVersionId": "v1", "AttachmentCount": attachments, "PermissionsBoundaryUsageCount": 0,
                "IsAttachable": True, "CreateDate": _date(CREATED_AT), "UpdateDate": _date(CREATED_AT)}
    return {"PolicyName": row.policy_name, "PolicyId": row.policy_id, "Arn": row.arn, "Path": row.path,
            "DefaultVersionId": row.default_version, "AttachmentCount": attachments,
            "PermissionsBoundaryUsageCount": 0, "IsAttachable": True, "CreateDate": _date(row.created_at),
            "UpdateDate": _date(row.updated_at)}


def _not_found(arn: str) -> ServiceError:
    return ServiceError("NoSuchEntity", f"Policy {arn} was not found.")


def _check_size(document: str) -> None:
    if policy_documents.size(document) > policy_documents.MANAGED_POLICY_CHARS:
        raise ServiceError("LimitExceeded",
                           f"Cannot exceed quota for PolicySize: {policy_documents.MANAGED_POLICY_CHARS}")


@handler("iam", "CreatePolicy")
def create_policy(ctx: RequestContext, req: dict) -> dict:
    document = req["PolicyDocument"]
    policy_documents.parse_identity_policy(document)
    _check_size(document)
    requested_tags = {}
    for tag in req.get("Tags", []):
        if tag["Key"].lower() in {key.lower() for key in requested_tags}:
            raise ServiceError("InvalidInput",
                               "Duplicate tag keys found. Please note that Tag keys are case insensitive.")
        requested_tags[tag["Key"]] = tag["Value"]
    path, name, now = req.get("Path", "/"), req["PolicyName"], time.time()
    arn = f"arn:aws:iam::{ctx.account_id}:policy{path}{name}"
    try:
        with ctx.engine.begin() as conn:
            conn.execute(managed_policies.insert().values(
                arn=arn, account_id=ctx.account_id, policy_name=name,
                policy_id="ANPA" + "".join(secrets.choice(_ID_CHARS) for _ in range(17)), path=path,
                description=req.get("Description"), default_version="v1", next_version=2, created_at=now,
                updated_at=now))
            conn.execute(policy_versions.insert().values(policy_arn=arn, version_id="v1", document=document,
                                                         created_at=now))
            tags.remove(conn, arn)  # none may outlive a policy
            tags.put(conn, ctx.account_id, arn, requested_tags)
    except sa.exc.IntegrityError:
        raise ServiceError("EntityAlreadyExists",
                           f"A policy called {name} already exists. Duplicate names are not allowed.") from None
    return get_policy(ctx, {"PolicyArn": arn})


@handler("iam", "GetPolicy")
def get_policy(ctx: RequestContext, req: dict) -> dict:
    arn = req["PolicyArn"]
    with reading(ctx.engine) as conn:
        row = AWS_POLICIES.get(arn) or _customer_policy(conn, ctx, arn)
        if row is None:
            raise _not_found(arn)
        count = _attachment_counts(conn, ctx.account_id).get(arn, 0)
        policy_tags = sorted(tags.of(conn, arn).items())
    policy = _policy_view(row, count)
    if row.description:
        policy["Description"] = row.description
    if policy_tags:
        policy["Tags"] = [{"Key": key, "Value": value} for key, value in policy_tags]
    return {"Policy": policy}


@handler("iam", "ListPolicies")
def list_policies(ctx: RequestContext, req: dict) -> dict:
    scope, prefix = req.get("Scope", "All"), req.get("PathPrefix", "/")
    if req.get("PolicyUsageFilter") == "PermissionsBoundary":  # no permissions boundaries are set
        return {"Policies": [], "IsTruncated": False}
    with reading(ctx.engine) as conn:
        counts = _attachment_counts(conn, ctx.account_id)
        rows = [] if scope == "AWS" else conn.execute(sa.select(managed_policies).where(
            managed_policies.c.account_id == ctx.account_id, managed_policies.c.path.startswith(prefix))).all()
    aws = [] if scope == "Local" else [p for p in AWS_POLICIES.values() if p.path.startswith(prefix)]
    views = [_policy_view(row, counts.get(row.arn, 0)) for row in [*aws, *rows]]
    if req.get("OnlyAttached"):
        views = [v for v in views if v["AttachmentCount"]]
    views.sort(key=lambda v: v["Arn"])
    return _page(views, lambda v: v["Arn"], req, "Policies")


@handler("iam", "DeletePolicy")
def delete_policy(ctx: RequestContext, req: dict) -> dict:
    arn = req["PolicyArn"]
    if arn in AWS_POLICIES:
        raise ServiceError("InvalidInput", f"ARN {arn} is not valid.")  # an AWS-managed policy is AWS's
    with ctx.engine.begin() as conn:
        if _customer_policy(conn, ctx, arn, lock=True) is None:
            raise _not_found(arn)
        if conn.execute(sa.select(role_policy_attachments.c.role_id)
                        .where(role_policy_attachments.c.policy_arn == arn).limit(1)).first():
            raise ServiceError("DeleteConflict", "Cannot delete a policy attached to entities.")
        versions = conn.execute(sa.select(sa.func.count()).where(policy_versions.c.policy_arn == arn)).scalar()
        if versions > 1:
            raise ServiceError("DeleteConflict", "This policy has more than one version. Before you delete a "
                               "policy, you must delete the policy's versions. The default version is deleted "
                               "with the policy.")
        conn.execute(policy_versions.delete().where(policy_versions.c.policy_arn == arn))
        conn.execute(managed_policies.delete().where(managed_policies.c.arn == arn))
        tags.remove(conn, arn)
    return {}


# --- versions ----------------------------------------------------------------------------------------

def _version_view(version_id: str, document: str, default: str, created_at: float,
                  with_document: bool = True) -> dict:
    view = {"VersionId": version_id, "IsDefaultVersion": version_id == default, "CreateDate": _date(created_at)}
    if with_document:
        view["Document"] = quote(document, safe="")
    return view


def _version_number(version_id: str) -> int:
    return int(version_id[1:].split(".")[0])


@handler("iam", "GetPolicyVersion")
def get_policy_version(ctx: RequestContext, req: dict) -> dict:
    arn, version_id = req["PolicyArn"], req["VersionId"]
    missing = ServiceError("NoSuchEntity", f"Policy {arn} version {version_id} does not exist or is not "
                           "attachable.")
    if arn in AWS_POLICIES:
        if version_id != "v1":
            raise missing
        return {"PolicyVersion": _version_view("v1", AWS_POLICIES[arn].document, "v1", CREATED_AT)}
    with reading(ctx.engine) as conn:
        policy = _customer_policy(conn, ctx, arn)
        version = conn.execute(sa.select(policy_versions).where(
            policy_versions.c.policy_arn == arn, policy_versions.c.version_id == version_id)).first()
    if policy is None or version is None:
        raise missing
    return {"PolicyVersion": _version_view(version_id, version.document, policy.default_version,
                                           version.created_at)}


@handler("iam", "ListPolicyVersions")
def list_policy_versions(ctx: RequestContext, req: dict) -> dict:
    arn = req["PolicyArn"]
    if arn in AWS_POLICIES:
        versions = [_version_view("v1", "", "v1", CREATED_AT, with_document=False)]
    else:
        with reading(ctx.engine) as conn:
            policy = _customer_policy(conn, ctx, arn)
            if policy is None:
                raise _not_found(arn)
            rows = conn.execute(sa.select(policy_versions).where(policy_versions.c.policy_arn == arn)).all()
        rows.sort(key=lambda r: -_version_number(r.version_id))  # as IAM lists them
        versions = [_version_view(r.version_id, "", policy.default_version, r.created_at, with_document=False)
                    for r in rows]
    # newest first, so the key that orders them counts down
    return _page(versions, lambda v: f"{10 ** 9 - _version_number(v['VersionId']):010d}", req, "Versions")


@handler("iam", "CreatePolicyVersion")
def create_policy_version(ctx: RequestContext, req: dict) -> dict:
    arn, document = req["PolicyArn"], req["PolicyDocument"]
    if arn in AWS_POLICIES:
        raise ServiceError("InvalidInput", f"ARN {arn} is not valid.")
    policy_documents.parse_identity_policy(document)
    _check_size(document)
    now = time.time()
    with ctx.engine.begin() as conn:
        policy = _customer_policy(conn, ctx, arn, lock=True)
        if policy is None:
            raise _not_found(arn)
        count = conn.execute(sa.select(sa.func.count()).where(policy_versions.c.policy_arn == arn)).scalar()
        if count >= MAX_VERSIONS:
            raise ServiceError("LimitExceeded", "A managed policy can have up to 5 versions. Before you create "
                               "a new version, you must delete an existing version.")
        version_id = f"v{policy.next_version}"
        default = version_id if req.get("SetAsDefault") else policy.default_version
        conn.execute(policy_versions.insert().values(policy_arn=arn, version_id=version_id, document=document,
                                                     created_at=now))
        conn.execute(managed_policies.update().where(managed_policies.c.arn == arn).values(
            next_version=policy.next_version + 1, default_version=default, updated_at=now))
    return {"PolicyVersion": _version_view(version_id, document, default, now, with_document=False)}


@handler("iam", "DeletePolicyVersion")
def delete_policy_version(ctx: RequestContext, req: dict) -> dict:
    arn, version_id = req["PolicyArn"], req["VersionId"]
    if arn in AWS_POLICIES:
        raise ServiceError("InvalidInput", f"ARN {arn} is not valid.")
    with ctx.engine.begin() as conn:
        policy = _customer_policy(conn, ctx, arn, lock=True)
        if policy is None:
            raise _not_found(arn)
        if version_id == policy.default_version:
            raise ServiceError("DeleteConflict", "Cannot delete the default version of a policy.")
        deleted = conn.execute(policy_versions.delete().where(policy_versions.c.policy_arn == arn,
                                                              policy_versions.c.version_id == version_id))
        if not deleted.rowcount:
            raise ServiceError("NoSuchEntity", f"Policy {arn} version {version_id} does not exist or is not "
                               "attachable.")
    return {}


@handler("iam", "SetDefaultPolicyVersion")
def set_default_policy_version(ctx: RequestContext, req: dict) -> dict:
    arn, version_id = req["PolicyArn"], req["VersionId"]
    if arn in AWS_POLICIES:
        raise ServiceError("InvalidInput", f"ARN {arn} is not valid.")
    with ctx.engine.begin() as conn:
        if _customer_policy(conn, ctx, arn, lock=True) is None:
            raise _not_found(arn)
        if not conn.execute(sa.select(policy_versions.c.version_id).where(
                policy_versions.c.policy_arn == arn, policy_versions.c.version_id == version_id)).first():
            raise ServiceError("NoSuchEntity", f"Policy {arn} version {version_id} does not exist or is not "
                               "attachable.")
        conn.execute(managed_policies.update().where(managed_policies.c.arn == arn).values(
            default_version=version_id, updated_at=time.time()))
    return {}


# --- attachments -------------------------------------------------------------------------------------

@handler("iam", "AttachRolePolicy")
def attach_role_policy(ctx: RequestContext, req: dict) -> dict:
    arn = req["PolicyArn"]
    with ctx.engine.begin() as conn:
        role = _role(conn, ctx, req["RoleName"], lock=True)
        if arn not in AWS_POLICIES and _customer_policy(conn, ctx, arn) is None:
            raise ServiceError("NoSuchEntity", f"Policy {arn} does not exist or is not attachable.")
        attached = [r.policy_arn for r in conn.execute(sa.select(role_policy_attachments.c.policy_arn)
                                                       .where(role_policy_attachments.c.role_id == role.role_id))]
        if arn in attached:
            return {}  # attaching again changes nothing, as on IAM
        if len(attached) >= MAX_ATTACHED:
            raise ServiceError("LimitExceeded", f"Cannot exceed quota for PoliciesPerRole: {MAX_ATTACHED}")
        conn.execute(role_policy_attachments.insert().values(role_id=role.role_id, policy_arn=arn,
                                                             account_id=ctx.account_id, attached_at=time.time()))
    return {}


@handler("iam", "DetachRolePolicy")
def detach_role_policy(ctx: RequestContext, req: dict) -> dict:
    arn = req["PolicyArn"]
    with ctx.engine.begin() as conn:
        role = _role(conn, ctx, req["RoleName"], lock=True)
        deleted = conn.execute(role_policy_attachments.delete().where(
            role_policy_attachments.c.role_id == role.role_id, role_policy_attachments.c.policy_arn == arn))
    if not deleted.rowcount:
        raise _not_found(arn)
    return {}


@handler("iam", "ListAttachedRolePolicies")
def list_attached_role_policies(ctx: RequestContext, req: dict) -> dict:
    prefix = req.get("PathPrefix", "/")
    with reading(ctx.engine) as conn:
        role = _role(conn, ctx, req["RoleName"])
        arns = [r.policy_arn for r in conn.execute(sa.select(role_policy_attachments.c.policy_arn)
                                                   .where(role_policy_attachments.c.role_id == role.role_id))]
        customer = {r.arn: r for r in conn.execute(sa.select(managed_policies).where(
            managed_policies.c.arn.in_(arns), managed_policies.c.account_id == ctx.account_id))}
    attached = []
    for arn in sorted(arns):
        policy = AWS_POLICIES.get(arn)
        name, path = (policy.name, policy.path) if policy else (customer[arn].policy_name, customer[arn].path)
        if path.startswith(prefix):
            attached.append({"PolicyName": name, "PolicyArn": arn})
    return _page(attached, lambda p: p["PolicyArn"], req, "AttachedPolicies")


@handler("iam", "ListEntitiesForPolicy")
def list_entities_for_policy(ctx: RequestContext, req: dict) -> dict:
    """The roles a policy is attached to (jobforge accounts have no users or groups)."""
    arn, prefix = req["PolicyArn"], req.get("PathPrefix", "/")
    with reading(ctx.engine) as conn:
        if arn not in AWS_POLICIES and _customer_policy(conn, ctx, arn) is None:
            raise _not_found(arn)
        attached = conn.execute(
            sa.select(roles.c.role_name, roles.c.role_id)
            .join(role_policy_attachments, role_policy_attachments.c.role_id == roles.c.role_id)
            .where(role_policy_attachments.c.policy_arn == arn, roles.c.account_id == ctx.account_id,
                   roles.c.path.startswith(prefix))).all()
    wanted = req.get("EntityFilter", "Role") not in ("User", "Group") \
        and req.get("PolicyUsageFilter") != "PermissionsBoundary"  # no permissions boundaries are set
    entities = sorted(({"RoleName": r.role_name, "RoleId": r.role_id} for r in attached if wanted),
                      key=lambda e: e["RoleName"])
    page = _page(entities, lambda e: e["RoleName"], req, "PolicyRoles")
    return {"PolicyGroups": [], "PolicyUsers": [], **page}


# --- trust policies ------------------------------------------------------------------------------------

@handler("iam", "UpdateAssumeRolePolicy")
def update_assume_role_policy(ctx: RequestContext, req: dict) -> dict:
    document = req["PolicyDocument"]
    policy_documents.require_json(document)
    with ctx.engine.begin() as conn:
        role = _role(conn, ctx, req["RoleName"], lock=True)
        conn.execute(roles.update().where(roles.c.account_id == ctx.account_id, roles.c.role_name == role.role_name)
                     .values(assume_role_policy=document))
    return {}


# --- inline role policies ----------------------------------------------------------------------------

@handler("iam", "PutRolePolicy")
def put_role_policy(ctx: RequestContext, req: dict) -> dict:
    name, document = req["PolicyName"], req["PolicyDocument"]
    policy_documents.parse_identity_policy(document)
    with ctx.engine.begin() as conn:
        role = _role(conn, ctx, req["RoleName"], lock=True)
        others = conn.execute(sa.select(role_policies.c.document).where(
            role_policies.c.role_id == role.role_id, role_policies.c.policy_name != name)).scalars().all()
        total = sum(policy_documents.size(d) for d in [*others, document])
        if total > policy_documents.ROLE_INLINE_POLICY_CHARS:
            raise ServiceError("LimitExceeded", f"Maximum policy size of {policy_documents.ROLE_INLINE_POLICY_CHARS}"
                               f" bytes exceeded for role {role.role_name}")
        conn.execute(role_policies.delete().where(role_policies.c.role_id == role.role_id,
                                                  role_policies.c.policy_name == name))
        conn.execute(role_policies.insert().values(role_id=role.role_id, policy_name=name, document=document))
    return {}


@handler("iam", "GetRolePolicy")
def get_role_policy(ctx: RequestContext, req: dict) -> dict:
    name = req["PolicyName"]
    with reading(ctx.engine) as conn:
        role = _role(conn, ctx, req["RoleName"])
        document = conn.execute(sa.select(role_policies.c.document).where(
            role_policies.c.role_id == role.role_id, role_policies.c.policy_name == name)).scalar()
    if document is None:
        raise ServiceError("NoSuchEntity", f"The role policy with name {name} cannot be found.")
    return {"RoleName": role.role_name, "PolicyName": name, "PolicyDocument": quote(document, safe="")}


@handler("iam", "ListRolePolicies")
def list_role_policies(ctx: RequestContext, req: dict) -> dict:
    with reading(ctx.engine) as conn:
        role = _role(conn, ctx, req["RoleName"])
        names = sorted(conn.execute(sa.select(role_policies.c.policy_name)
                                    .where(role_policies.c.role_id == role.role_id)).scalars())
    return _page(names, str, req, "PolicyNames")


@handler("iam", "DeleteRolePolicy")
def delete_role_policy(ctx: RequestContext, req: dict) -> dict:
    name = req["PolicyName"]
    with ctx.engine.begin() as conn:
        role = _role(conn, ctx, req["RoleName"], lock=True)
        deleted = conn.execute(role_policies.delete().where(role_policies.c.role_id == role.role_id,
                                                            role_policies.c.policy_name == name))
    if not deleted.rowcount:
        raise ServiceError("NoSuchEntity", f"The role policy with name {name} cannot be found.")
    return {}


# --- simulation --------------------------------------------------------------------------------------

def _input_policies(documents: list[str], label: str) -> list[Policy]:
    policies = []
    for i, document in enumerate(documents, 1):
        try:
            statements = policy_documents.parse_identity_policy(document)
        except ServiceError as err:
            raise ServiceError("InvalidInput", f"{label}.{i}: {err.message}") from None
        policies.append(Policy(f"{label}.{i}", "none", tuple(statements)))
    return policies


def _context(entries: list[dict]) -> dict[str, list[str]]:
    context = {}
    for entry in entries:
        if "ContextKeyName" not in entry:
            raise ServiceError("InvalidInput", "A context entry must name its key (ContextKeyName).")
        context[entry["ContextKeyName"]] = list(entry.get("ContextKeyValues", []))
    return context


def _excluded(policy: Policy, identifiers: list[dict], role_name: str) -> bool:
    """Whether one of SimulatePrincipalPolicy's PolicyExclusionList entries names this stored policy."""
    for identifier in identifiers:
        kind = "inline" if policy.source_type == "role" else policy.source_type
        if identifier.get("PolicyType") == kind:
            return True
        if policy.arn is not None and "PolicyArn" in identifier and arn_match(identifier["PolicyArn"], policy.arn):
            return True
        inline = identifier.get("InlinePolicyIdentifier")
        if kind == "inline" and inline and inline.get("PolicyName") == policy.source_id \
                and inline.get("AttachmentType", "role") == "role" \
                and wildcard_match(inline.get("AttachmentName", "*"), role_name, ignore_case=True):
            return True
    return False


def _simulated_principal(ctx: RequestContext, conn, source_arn: str, excluded: list[dict]) -> list[Policy] | None:
    """The identity policies of the principal an ARN names; None for the account's root user, whom
    identity policies do not restrict."""
    account_prefix = f"arn:aws:iam::{ctx.account_id}:"
    if source_arn == account_prefix + "root":
        return None
    if source_arn.startswith(account_prefix + "role/"):
        role = find_role(ctx.engine, ctx.account_id, source_arn)
        if role is None:
            raise ServiceError("NoSuchEntity", f"The role with name {source_arn.rsplit('/', 1)[-1]} cannot be found.")
        return [policy for policy in role_identity_policies(conn, ctx.account_id, role.role_id)
                if not _excluded(policy, excluded, role.role_name)]
    parts = source_arn.split(":", 5)
    kind = parts[5].split("/", 1)[0] if len(parts) == 6 and parts[:3] == ["arn", "aws", "iam"] else ""
    # Another account's role, and any IAM user or group (jobforge accounts have none), are not found, as in IAM.
    if kind in ("role", "user", "group") and "/" in parts[5]:
        raise ServiceError("NoSuchEntity", f"The {kind} with name {source_arn.rsplit('/', 1)[-1]} cannot be found.")
    raise ServiceError("InvalidInput", f"Invalid Entity Arn: {source_arn} does not clearly define entity type "
                       "and name.")


def _result(action: str, resource: str, decision: Decision, boundary: Decision | None) -> dict:
    result = {"EvalActionName": action, "EvalResourceName": resource, "EvalDecision": decision.decision,
              "MatchedStatements": [{"SourcePolicyId": policy.source_id, "SourcePolicyType": policy.source_type,
                                     "StartPosition": {"Line": s.start.line, "Column": s.start.column},
                                     "EndPosition": {"Line": s.end.line, "Column": s.end.column}}
                                    for policy, s in decision.matched],
              "MissingContextValues": sorted(decision.missing_keys)}
    if boundary is not None:
        result["PermissionsBoundaryDecisionDetail"] = {"AllowedByPermissionsBoundary":
                                                       boundary.decision == "allowed"}
    return result


@handler("iam", "SimulatePrincipalPolicy")
def simulate_principal_policy(ctx: RequestContext, req: dict) -> dict:
    if "ResourcePolicy" in req:
        raise ServiceError("InvalidInput", "jobforge does not simulate resource-based policies (ResourcePolicy).")
    extra = _input_policies(req.get("PolicyInputList", []), "PolicyInputList")
    boundaries = _input_policies(req.get("PermissionsBoundaryPolicyInputList", []),
                                 "PermissionsBoundaryPolicyInputList")
    context = _context(req.get("ContextEntries", []))
    with reading(ctx.engine) as conn:
        stored = _simulated_principal(ctx, conn, req["PolicySourceArn"], req.get("PolicyExclusionList", []))
    results = []
    for action in req["ActionNames"]:
        for resource in req.get("ResourceArns") or ["*"]:
            if stored is None:  # the root user: allowed unless a given policy denies
                decision = evaluate(extra, action, resource, context)
                if decision.decision != "explicitDeny":
                    decision = Decision("allowed", decision.matched, decision.missing_keys)
            else:
                decision = evaluate(stored + extra, action, resource, context)
            boundary = evaluate(boundaries, action, resource, context) if boundaries else None
            if boundary is not None and decision.decision == "allowed" and boundary.decision != "allowed":
                decision = Decision("explicitDeny" if boundary.decision == "explicitDeny" else "implicitDeny",
                                    [], decision.missing_keys | boundary.missing_keys)
            results.append(_result(action, resource, decision, boundary))
    # Results page by their position: the same request gives the same results in the same order.
    page = _page(list(enumerate(results)), lambda pair: f"{pair[0]:08d}", req, "EvaluationResults")
    page["EvaluationResults"] = [result for _, result in page["EvaluationResults"]]
    return page
