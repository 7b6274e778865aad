"""SageMaker hubs: DescribeHub, ListHubs, DescribeHubContent, ListHubContents, ListHubContentVersions.

jobforge has one hub, ``SageMakerPublicHub``, whose Model contents are the JumpStart models registered in
its model catalog (``jobforge models add <jumpstart-id> PATH``), each at version 1.0.0 (re-registering
re-points it). A model's HubContentDocument names the recipes the AgentRFT engine runs for it (MTRL training
with LoRA, MTRL evaluation) and their files, which the SageMaker SDK downloads (``hub_recipes``). Private
hubs (CreateHub and the rest) are not kept.
"""

from __future__ import annotations

import json

import sqlalchemy as sa

from jobforge.api import hub_recipes
from jobforge.api.base import RequestContext, handler
from jobforge.core import models_catalog, paging
from jobforge.core.errors import ServiceError, validation_error
from jobforge.core.models_catalog import foundation_models
from jobforge.core.timestamps import from_epoch

PUBLIC_HUB = "SageMakerPublicHub"
VERSION = "1.0.0"
DOCUMENT_SCHEMA_VERSION = "2.3.0"  # the Model document schema the SDK's hub interfaces read
HUB_DESCRIPTION = "The base models registered on this jobforge server, with the AgentRFT recipes it runs for them."
DEFAULT_PAGE = 10
# The server's start stands for the public hub's creation: it has no record of its own.
HUB_CREATED = 0.0


def _hub_arn(region: str) -> str:
    return f"arn:aws:sagemaker:{region}:aws:hub/{PUBLIC_HUB}"


def _content_arn(region: str, name: str) -> str:
    return f"arn:aws:sagemaker:{region}:aws:hub-content/{PUBLIC_HUB}/Model/{name}/{VERSION}"


def _check_hub(name: str) -> None:
    """The public hub, by name or ARN; jobforge keeps no other."""
    if name != PUBLIC_HUB and not (name.startswith("arn:") and name.endswith(f":hub/{PUBLIC_HUB}")):
        raise ServiceError("ResourceNotFound", f"Hub {name} does not exist: jobforge serves only {PUBLIC_HUB}.")


def _hub_summary(ctx: RequestContext) -> dict:
    return {"HubName": PUBLIC_HUB, "HubArn": _hub_arn(ctx.region), "HubDisplayName": PUBLIC_HUB,
            "HubDescription": HUB_DESCRIPTION, "HubSearchKeywords": [], "HubStatus": "InService",
            "CreationTime": from_epoch(HUB_CREATED), "LastModifiedTime": from_epoch(HUB_CREATED)}


@handler("sagemaker", "DescribeHub")
def describe_hub(ctx: RequestContext, req: dict) -> dict:
    _check_hub(req["HubName"])
    return _hub_summary(ctx)


@handler("sagemaker", "ListHubs")
def list_hubs(ctx: RequestContext, req: dict) -> dict:
    hub = _hub_summary(ctx)
    if req.get("NameContains") and req["NameContains"] not in PUBLIC_HUB:
        return {"HubSummaries": []}
    for bound in ("CreationTimeBefore", "LastModifiedTimeBefore"):
        if bound in req and req[bound].timestamp() <= HUB_CREATED:
            return {"HubSummaries": []}
    for bound in ("CreationTimeAfter", "LastModifiedTimeAfter"):
        if bound in req and req[bound].timestamp() >= HUB_CREATED:
            return {"HubSummaries": []}
    return {"HubSummaries": [hub]}


# -- contents -----------------------------------------------------------------------------------

def _name(model_id: str) -> str:
    return model_id.removeprefix(models_catalog.HUB_KEY)


def _summary(ctx: RequestContext, model_id: str, created_at: float) -> dict:
    name = _name(model_id)
    return {"HubContentName": name, "HubContentArn": _content_arn(ctx.region, name), "HubContentVersion": VERSION,
            "HubContentType": "Model", "DocumentSchemaVersion": DOCUMENT_SCHEMA_VERSION,
            "HubContentDisplayName": name,
            "HubContentDescription": f"{name}: a base model registered on this jobforge server, trained and "
                                     "evaluated by the AgentRFT engine (MTRL with LoRA).",
            "SupportStatus": "Supported", "HubContentSearchKeywords": list(hub_recipes.SEARCH_KEYWORDS),
            "HubContentStatus": "Available", "CreationTime": from_epoch(created_at)}


def _model(ctx: RequestContext, req: dict) -> models_catalog.FoundationModel:
    _check_hub(req["HubName"])
    name = req["HubContentName"]
    model = models_catalog.get(ctx.engine, models_catalog.HUB_KEY + name) if req["HubContentType"] == "Model" \
        else None
    if model is None:
        raise ServiceError("ResourceNotFound", f"Hub content {name} of type {req['HubContentType']} does not exist "
                           f"in {PUBLIC_HUB}. " + models_catalog.HUB_REGISTER_HINT.format(name=name))
    if req.get("HubContentVersion", VERSION) != VERSION:
        raise ServiceError("ResourceNotFound", f"Hub content {name} has no version {req['HubContentVersion']}: "
                           f"its only version is {VERSION}.")
    return model


@handler("sagemaker", "DescribeHubContent", blocking=True)
def describe_hub_content(ctx: RequestContext, req: dict) -> dict:
    model = _model(ctx, req)
    document = {"GatedBucket": False,
                "RecipeCollection": hub_recipes.recipe_collection(ctx.runtime.object_store, ctx.account_id,
                                                                  ctx.region, _name(model.model_id))}
    return dict(_summary(ctx, model.model_id, model.created_at), HubName=PUBLIC_HUB, HubArn=_hub_arn(ctx.region),
                HubContentDocument=json.dumps(document), HubContentDependencies=[],
                LastModifiedTime=from_epoch(model.created_at))


def _contents_page(ctx: RequestContext, req: dict, extra: list) -> dict:
    _check_hub(req["HubName"])
    if req.get("MaxSchemaVersion") and _version_key(req["MaxSchemaVersion"]) < _version_key(DOCUMENT_SCHEMA_VERSION):
        return {"HubContentSummaries": []}
    if req["HubContentType"] != "Model":
        return {"HubContentSummaries": []}
    table = foundation_models
    conditions = [table.c.model_id.startswith(models_catalog.HUB_KEY, autoescape=True), *extra]
    bind = {k: str(req[k]) for k in ("HubContentType", "NameContains", "MaxSchemaVersion", "CreationTimeBefore",
                                     "CreationTimeAfter", "SortBy", "SortOrder", "HubContentName", "MinVersion")
            if k in req}
    if req.get("NameContains"):
        conditions.append(table.c.model_id.contains(req["NameContains"], autoescape=True))
    if "CreationTimeAfter" in req:
        conditions.append(table.c.created_at > req["CreationTimeAfter"].timestamp())
    if "CreationTimeBefore" in req:
        conditions.append(table.c.created_at < req["CreationTimeBefore"].timestamp())
    sort_col = table.c.created_at if req.get("SortBy") == "CreationTime" else table.c.model_id
    page = paging.keyset_page(ctx.engine, sa.select(table).where(*conditions), sort_col, table.c.model_id,
                              req.get("SortOrder", "Ascending") == "Ascending", req.get("MaxResults", DEFAULT_PAGE),
                              req.get("NextToken"), bind, validation_error)
    out = {"HubContentSummaries": [_summary(ctx, row.model_id, row.created_at) for row in page.rows]}
    if page.next_token:
        out["NextToken"] = page.next_token
    return out


def _version_key(version: str) -> tuple:
    return tuple(int(part) for part in version.split(".") if part.isdigit())


@handler("sagemaker", "ListHubContents")
def list_hub_contents(ctx: RequestContext, req: dict) -> dict:
    return _contents_page(ctx, req, [])


@handler("sagemaker", "ListHubContentVersions")
def list_hub_content_versions(ctx: RequestContext, req: dict) -> dict:
    if req.get("MinVersion") and _version_key(req["MinVersion"]) > _version_key(VERSION):
        return {"HubContentSummaries": []}
    name = req["HubContentName"]
    out = _contents_page(ctx, req, [foundation_models.c.model_id == models_catalog.HUB_KEY + name])
    if not out["HubContentSummaries"] and req["HubContentType"] == "Model" \
            and models_catalog.get(ctx.engine, models_catalog.HUB_KEY + name) is None:
        raise ServiceError("ResourceNotFound", f"Hub content {name} does not exist in {PUBLIC_HUB}. "
                           + models_catalog.HUB_REGISTER_HINT.format(name=name))
    return out
