"""IAM roles: the RoleArn every job names must exist in the caller's account."""

from __future__ import annotations

import datetime as dt
import json
import time
from functools import lru_cache
from urllib.parse import quote, unquote

import sqlalchemy as sa

from jobforge.api.base import RequestContext, handler
from jobforge.core import paging
from jobforge.core.accounts import ROLE_BY_NAME, role_row
from jobforge.core.errors import ServiceError
from jobforge.core.store import jobs, reading, roles


@lru_cache(maxsize=1024)
def _url_encoded(policy: str) -> str:
    """IAM returns trust policies URL-encoded."""
    return quote(policy, safe="")


def _role(row) -> dict:
    m = row._mapping
    role = {
        "Path": m["path"], "RoleName": m["role_name"], "RoleId": m["role_id"], "Arn": m["arn"],
        "CreateDate": dt.datetime.fromtimestamp(m["created_at"], dt.timezone.utc),
        "AssumeRolePolicyDocument": _url_encoded(m["assume_role_policy"]),
        "MaxSessionDuration": m["max_session_duration"],
    }
    if m["description"]:
        role["Description"] = m["description"]
    return role


def _get(ctx: RequestContext, name: str):
    with reading(ctx.engine) as conn:
        row = conn.execute(ROLE_BY_NAME, {"account": ctx.account_id, "name": name}).first()
    if row is None:
        raise ServiceError("NoSuchEntity", f"The role with name {name} cannot be found.")
    return row


@handler("iam", "CreateRole")
def create_role(ctx: RequestContext, req: dict) -> dict:
    policy = req["AssumeRolePolicyDocument"]
    try:
        json.loads(unquote(policy) if policy.lstrip().startswith("%") else policy)
    except ValueError:
        raise ServiceError("MalformedPolicyDocument", "This policy contains invalid Json") from None
    path = req.get("Path", "/")
    row = role_row(ctx.account_id, req["RoleName"], path, policy, req.get("Description"),
                   req.get("MaxSessionDuration", 3600), time.time())
    try:
        with ctx.engine.begin() as conn:
            conn.execute(roles.insert().values(row))
    except sa.exc.IntegrityError:
        raise ServiceError("EntityAlreadyExists", f"Role with name {req['RoleName']} already exists.") from None
    return {"Role": _role(_get(ctx, req["RoleName"]))}


@handler("iam", "GetRole")
def get_role(ctx: RequestContext, req: dict) -> dict:
    return {"Role": _role(_get(ctx, req["RoleName"]))}


@handler("iam", "ListRoles")
def list_roles(ctx: RequestContext, req: dict) -> dict:
    prefix = req.get("PathPrefix", "/")
    query = sa.select(roles).where(roles.c.account_id == ctx.account_id, roles.c.path.startswith(prefix))
    page = paging.keyset_page(ctx.engine, query, roles.c.role_name, roles.c.role_name, ascending=True,
                              limit=req.get("MaxItems", 100), token=req.get("Marker"),
                              bind={"PathPrefix": prefix}, bad_token=lambda m: ServiceError("InvalidInput", m))
    result = {"Roles": [_role(r) for r in page.rows], "IsTruncated": page.next_token is not None}
    if page.next_token:
        result["Marker"] = page.next_token
    return result


@handler("iam", "DeleteRole")
def delete_role(ctx: RequestContext, req: dict) -> dict:
    row = _get(ctx, req["RoleName"])  # the name as created, whatever the case asked for
    with ctx.engine.begin() as conn:
        running = conn.execute(sa.select(jobs.c.id).where(  # a job may name the role in another case
            jobs.c.account_id == ctx.account_id, sa.func.lower(jobs.c.role_arn) == sa.func.lower(row.arn),
            jobs.c.state.in_(("QUEUED", "STARTING", "RUNNING", "STOPPING"))).limit(1)).first()
        if running:
            raise ServiceError("DeleteConflict", "Cannot delete a role that running jobs use.")
        conn.execute(roles.delete().where(roles.c.account_id == ctx.account_id,
                                          roles.c.role_name == row.role_name))
    return {}
