"""IAM roles: the RoleArn every job names must exist in the caller's account."""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import json
import re
import time
from functools import lru_cache
from urllib.parse import quote, unquote

import sqlalchemy as sa

from jobforge.api.base import RequestContext, handler
from jobforge.core import paging, tags
from jobforge.core.accounts import ROLE_BY_NAME, role_row
from jobforge.core.errors import ServiceError
from jobforge.core.role_policies import role_policy_conflict
from jobforge.core.store import jobs_table, reading, roles
from jobforge.core.store import tags as tags_table

MAX_TAGS = 50  # IAM's quota of tags per role


@lru_cache(maxsize=1024)
def _url_encoded(policy: str) -> str:
    """IAM returns trust policies URL-encoded."""
    return quote(policy, safe="")


def _role(row, role_tags: list[dict] | None = None) -> dict:
    m = row._mapping
    role = {
        "Path": m["path"], "RoleName": m["role_name"], "RoleId": m["role_id"], "Arn": m["arn"],
        "CreateDate": dt.datetime.fromtimestamp(m["created_at"], dt.timezone.utc),
        "AssumeRolePolicyDocument": _url_encoded(m["assume_role_policy"]),
        "MaxSessionDuration": m["max_session_duration"],
    }
    if m["description"]:
        role["Description"] = m["description"]
    if role_tags:
        role["Tags"] = role_tags
    return role


# A role and its tags in one query (GetRole is the call a client makes most).
ROLE_WITH_TAGS = (sa.select(roles, tags_table.c.key.label("tag_key"), tags_table.c.value.label("tag_value"))
                  .select_from(roles.outerjoin(tags_table, tags_table.c.resource_arn == roles.c.arn))
                  .where(roles.c.account_id == sa.bindparam("account"),
                         sa.func.lower(roles.c.role_name) == sa.func.lower(sa.bindparam("name"))))


def _requested_tags(tag_list: list[dict]) -> dict[str, str]:
    """Tag keys of an IAM role are not distinguished by case (the case given is kept)."""
    requested: dict[str, str] = {}
    seen: set[str] = set()
    for tag in tag_list:
        folded = tag["Key"].lower()
        if folded in seen:
            raise ServiceError("InvalidInput",
                               "Duplicate tag keys found. Please note that Tag keys are case insensitive.")
        seen.add(folded)
        requested[tag["Key"]] = tag["Value"]
    return requested


def _put_tags(conn, account_id: str, arn: str, requested: dict[str, str]) -> None:
    """Add or overwrite tags (a key in another case replaces the old one), within IAM's quota."""
    tags.put(conn, account_id, arn, requested, limit=MAX_TAGS, same_key=str.lower,
             too_many=lambda: ServiceError("LimitExceeded", f"Cannot exceed quota for TagsPerRole: {MAX_TAGS}."))


def _locked(conn, ctx: RequestContext, name: str):
    """The role's row, locked until the transaction ends (PostgreSQL; SQLite's write lock is held already)."""
    row = conn.execute(ROLE_BY_NAME.with_for_update(), {"account": ctx.account_id, "name": name}).first()
    if row is None:
        raise ServiceError("NoSuchEntity", f"The role with name {name} cannot be found.")
    return row


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
    requested = _requested_tags(req.get("Tags", []))
    path = req.get("Path", "/")
    row = role_row(ctx.account_id, req["RoleName"], path, policy, req.get("Description"),
                   req.get("MaxSessionDuration", 3600), time.time())
    try:
        with ctx.engine.begin() as conn:
            conn.execute(roles.insert().values(row))
            tags.remove(conn, row["arn"])  # none may outlive a role
            _put_tags(conn, ctx.account_id, row["arn"], requested)
    except sa.exc.IntegrityError:
        raise ServiceError("EntityAlreadyExists", f"Role with name {req['RoleName']} already exists.") from None
    return get_role(ctx, req)


@handler("iam", "GetRole")
def get_role(ctx: RequestContext, req: dict) -> dict:
    with reading(ctx.engine) as conn:
        rows = conn.execute(ROLE_WITH_TAGS, {"account": ctx.account_id, "name": req["RoleName"]}).all()
    if not rows:
        raise ServiceError("NoSuchEntity", f"The role with name {req['RoleName']} cannot be found.")
    role_tags = sorted((r.tag_key, r.tag_value) for r in rows if r.tag_key is not None)
    return {"Role": _role(rows[0], [{"Key": key, "Value": value} for key, value in role_tags])}


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
        running = conn.execute(sa.select(jobs_table.c.id).where(  # a job may name the role in another case
            jobs_table.c.account_id == ctx.account_id, sa.func.lower(jobs_table.c.role_arn) == sa.func.lower(row.arn),
            jobs_table.c.state.in_(("QUEUED", "STARTING", "RUNNING", "STOPPING"))).limit(1)).first()
        if running:
            raise ServiceError("DeleteConflict", "Cannot delete a role that running jobs use.")
        # The role's row first: on PostgreSQL this waits for a TagRole holding it, whose tags then go too.
        conn.execute(roles.delete().where(roles.c.account_id == ctx.account_id,
                                          roles.c.role_name == row.role_name))
        # Checked once the row is held, so that a policy being put meanwhile is seen (or finds no role).
        conflict = role_policy_conflict(conn, row.role_id)
        if conflict:
            raise conflict
        tags.remove(conn, row.arn)
    return {}


@handler("iam", "TagRole")
def tag_role(ctx: RequestContext, req: dict) -> dict:
    requested = _requested_tags(req["Tags"])
    with ctx.engine.begin() as conn:
        row = _locked(conn, ctx, req["RoleName"])
        _put_tags(conn, ctx.account_id, row.arn, requested)
    return {}


@handler("iam", "UntagRole")
def untag_role(ctx: RequestContext, req: dict) -> dict:
    with ctx.engine.begin() as conn:
        row = _locked(conn, ctx, req["RoleName"])
        tags.remove(conn, row.arn, req["TagKeys"], same_key=str.lower)
    return {}


MARKER_KEY_BYTES = 210  # base64 of these, a dot and a digest stay within the model's 320 characters


def _tag_digest(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()[:20]


def _tag_marker(key: str) -> str:
    prefix = key.encode()[:MARKER_KEY_BYTES].decode(errors="ignore")
    return base64.urlsafe_b64encode(prefix.encode()).decode() + "." + _tag_digest(key)


def _after_marker(keys: list[str], marker: str) -> int:
    """Where the next page starts: after the key the marker names; should that key have been removed
    meanwhile, at the first key after it (after the part of it the marker holds, for a key too long to
    hold whole: a few keys may then come again, none is skipped)."""
    try:
        encoded, digest = marker.split(".")
        prefix = base64.b64decode(encoded.encode(), altchars=b"-_", validate=True).decode()
        if not re.fullmatch(r"[0-9a-f]{20}", digest):
            raise ValueError(digest)
    except (ValueError, UnicodeDecodeError):  # binascii.Error is a ValueError
        raise ServiceError("InvalidInput", "Invalid Marker.") from None
    for i, key in enumerate(keys):
        if _tag_digest(key) == digest:
            return i + 1
    return next((i for i, key in enumerate(keys) if key > prefix), len(keys))


@handler("iam", "ListRoleTags")
def list_role_tags(ctx: RequestContext, req: dict) -> dict:
    """Sorted by key; a Marker names the last key handed out."""
    with reading(ctx.engine) as conn:
        row = conn.execute(ROLE_BY_NAME, {"account": ctx.account_id, "name": req["RoleName"]}).first()
        if row is None:
            raise ServiceError("NoSuchEntity", f"The role with name {req['RoleName']} cannot be found.")
        keyed = sorted(tags.of(conn, row.arn).items())
    start = _after_marker([key for key, _ in keyed], req["Marker"]) if "Marker" in req else 0
    limit = req.get("MaxItems", 100)
    chosen = keyed[start:start + limit]
    result = {"Tags": [{"Key": key, "Value": value} for key, value in chosen],
              "IsTruncated": start + limit < len(keyed)}
    if result["IsTruncated"]:
        result["Marker"] = _tag_marker(chosen[-1][0])
    return result
