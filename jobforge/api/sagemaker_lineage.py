"""SageMaker ML lineage tracking: CreateArtifact, DescribeArtifact, ListArtifacts, DeleteArtifact, CreateAction,
DescribeAction, ListActions, DeleteAction, CreateContext, DescribeContext, ListContexts, DeleteContext,
AddAssociation, ListAssociations and DeleteAssociation, per account and region.

Pipelines' Lineage steps create their entities and associations through these operations. What jobforge
keeps is the lineage graph itself; lineage groups and the experiments and trial components AWS also joins
into it are not kept, so an association naming one is ResourceNotFound.
"""

from __future__ import annotations

from jobforge.api.base import RequestContext, handler
from jobforge.core import lineage, paging
from jobforge.core.errors import validation_error
from jobforge.core.lineage import lineage_entities
from jobforge.core.timestamps import from_epoch

DEFAULT_PAGE = 10


def _created_by(ctx: RequestContext) -> dict:
    return {"IamIdentity": {"Arn": ctx.principal_arn}}


def _times(entity: lineage.Entity) -> dict:
    return {"CreationTime": from_epoch(entity.created_at), "LastModifiedTime": from_epoch(entity.updated_at)}


def _described(entity: lineage.Entity) -> dict:
    out = {**_times(entity), "Source": entity.source, "Properties": entity.properties,
           "CreatedBy": entity.created_by, "LastModifiedBy": entity.created_by}
    for key, value in (("Description", entity.description), ("Status", entity.status),
                       ("MetadataProperties", entity.metadata_properties)):
        if value is not None:
            out[key] = value
    return out


def _list(ctx: RequestContext, req: dict, kind: str, type_filter: str) -> paging.Page:
    table = lineage_entities
    conditions, bind = [], {}
    if "SourceUri" in req:
        conditions.append(table.c.source_uri == req["SourceUri"])
    if type_filter in req:
        conditions.append(table.c.entity_type == req[type_filter])
    if "CreatedAfter" in req:
        conditions.append(table.c.created_at > req["CreatedAfter"].timestamp())
    if "CreatedBefore" in req:
        conditions.append(table.c.created_at < req["CreatedBefore"].timestamp())
    for key in ("SourceUri", type_filter, "CreatedAfter", "CreatedBefore"):
        if key in req:
            bind[key] = str(req[key])
    return lineage.page(ctx.engine, ctx.account_id, ctx.region, kind, conditions=conditions, bind=bind,
                        sort="name" if req.get("SortBy") == "Name" else "created_at",
                        ascending=req.get("SortOrder") == "Ascending", limit=req.get("MaxResults", DEFAULT_PAGE),
                        token=req.get("NextToken"))


def _paged(key: str, page, summary) -> dict:
    out = {key: [summary(row) for row in page.rows]}
    if page.next_token:
        out["NextToken"] = page.next_token
    return out


# -- artifacts ----------------------------------------------------------------------------------

@handler("sagemaker", "CreateArtifact")
def create_artifact(ctx: RequestContext, req: dict) -> dict:
    artifact = lineage.create(
        ctx.engine, ctx.account_id, ctx.region, "artifact", name=req.get("ArtifactName"),
        entity_type=req["ArtifactType"], source=req["Source"], properties=req.get("Properties"),
        metadata_properties=req.get("MetadataProperties"), created_by=_created_by(ctx), tag_list=req.get("Tags"))
    return {"ArtifactArn": artifact.arn}


@handler("sagemaker", "DescribeArtifact")
def describe_artifact(ctx: RequestContext, req: dict) -> dict:
    artifact = lineage.get(ctx.engine, ctx.account_id, ctx.region, "artifact", req["ArtifactArn"])
    out = {**_described(artifact), "ArtifactArn": artifact.arn, "ArtifactType": artifact.entity_type}
    if artifact.name:
        out["ArtifactName"] = artifact.name
    return out


def _artifact_summary(artifact: lineage.Entity) -> dict:
    out = {**_times(artifact), "ArtifactArn": artifact.arn, "Source": artifact.source,
           "ArtifactType": artifact.entity_type}
    if artifact.name:
        out["ArtifactName"] = artifact.name
    return out


@handler("sagemaker", "ListArtifacts")
def list_artifacts(ctx: RequestContext, req: dict) -> dict:
    return _paged("ArtifactSummaries", _list(ctx, req, "artifact", "ArtifactType"), _artifact_summary)


@handler("sagemaker", "DeleteArtifact")
def delete_artifact(ctx: RequestContext, req: dict) -> dict:
    if "ArtifactArn" in req:
        artifact = lineage.get(ctx.engine, ctx.account_id, ctx.region, "artifact", req["ArtifactArn"])
    elif "Source" in req:
        found = lineage.page(ctx.engine, ctx.account_id, ctx.region, "artifact",
                             conditions=[lineage_entities.c.source_uri == req["Source"]["SourceUri"]], bind={},
                             sort="created_at", ascending=True, limit=1, token=None).rows
        if not found:
            raise lineage.not_found("artifact", req["Source"]["SourceUri"])
        artifact = found[0]
    else:
        raise validation_error("Give ArtifactArn or Source to name the artifact to delete.")
    lineage.delete(ctx.engine, artifact)
    return {"ArtifactArn": artifact.arn}


# -- actions ------------------------------------------------------------------------------------

@handler("sagemaker", "CreateAction")
def create_action(ctx: RequestContext, req: dict) -> dict:
    action = lineage.create(
        ctx.engine, ctx.account_id, ctx.region, "action", name=req["ActionName"], entity_type=req["ActionType"],
        source=req["Source"], description=req.get("Description"), status=req.get("Status", "Unknown"),
        properties=req.get("Properties"), metadata_properties=req.get("MetadataProperties"),
        created_by=_created_by(ctx), tag_list=req.get("Tags"))
    return {"ActionArn": action.arn}


@handler("sagemaker", "DescribeAction")
def describe_action(ctx: RequestContext, req: dict) -> dict:
    action = lineage.get(ctx.engine, ctx.account_id, ctx.region, "action", req["ActionName"])
    return {**_described(action), "ActionName": action.name, "ActionArn": action.arn,
            "ActionType": action.entity_type}


@handler("sagemaker", "ListActions")
def list_actions(ctx: RequestContext, req: dict) -> dict:
    return _paged("ActionSummaries", _list(ctx, req, "action", "ActionType"), lambda action: {
        **_times(action), "ActionArn": action.arn, "ActionName": action.name, "Source": action.source,
        "ActionType": action.entity_type, "Status": action.status})


@handler("sagemaker", "DeleteAction")
def delete_action(ctx: RequestContext, req: dict) -> dict:
    action = lineage.get(ctx.engine, ctx.account_id, ctx.region, "action", req["ActionName"])
    lineage.delete(ctx.engine, action)
    return {"ActionArn": action.arn}


# -- contexts -----------------------------------------------------------------------------------

@handler("sagemaker", "CreateContext")
def create_context(ctx: RequestContext, req: dict) -> dict:
    context = lineage.create(
        ctx.engine, ctx.account_id, ctx.region, "context", name=req["ContextName"], entity_type=req["ContextType"],
        source=req["Source"], description=req.get("Description"), properties=req.get("Properties"),
        created_by=_created_by(ctx), tag_list=req.get("Tags"))
    return {"ContextArn": context.arn}


@handler("sagemaker", "DescribeContext")
def describe_context(ctx: RequestContext, req: dict) -> dict:
    context = lineage.get(ctx.engine, ctx.account_id, ctx.region, "context", req["ContextName"])
    return {**_described(context), "ContextName": context.name, "ContextArn": context.arn,
            "ContextType": context.entity_type}


@handler("sagemaker", "ListContexts")
def list_contexts(ctx: RequestContext, req: dict) -> dict:
    return _paged("ContextSummaries", _list(ctx, req, "context", "ContextType"), lambda context: {
        **_times(context), "ContextArn": context.arn, "ContextName": context.name, "Source": context.source,
        "ContextType": context.entity_type})


@handler("sagemaker", "DeleteContext")
def delete_context(ctx: RequestContext, req: dict) -> dict:
    context = lineage.get(ctx.engine, ctx.account_id, ctx.region, "context", req["ContextName"])
    lineage.delete(ctx.engine, context)
    return {"ContextArn": context.arn}


# -- associations -------------------------------------------------------------------------------

@handler("sagemaker", "AddAssociation")
def add_association(ctx: RequestContext, req: dict) -> dict:
    lineage.associate(ctx.engine, ctx.account_id, ctx.region, req["SourceArn"], req["DestinationArn"],
                      req.get("AssociationType"), _created_by(ctx))
    return {"SourceArn": req["SourceArn"], "DestinationArn": req["DestinationArn"]}


ASSOCIATION_FILTERS = {"SourceArn": "source_arn", "DestinationArn": "destination_arn", "SourceType": "source_type",
                       "DestinationType": "destination_type", "AssociationType": "association_type"}
ASSOCIATION_SORTS = {"SourceArn": "source_arn", "DestinationArn": "destination_arn", "SourceType": "source_type",
                     "DestinationType": "destination_type", "CreationTime": "created_at"}


def _association_summary(row) -> dict:
    out = {"SourceArn": row.source_arn, "DestinationArn": row.destination_arn, "SourceType": row.source_type,
           "DestinationType": row.destination_type, "CreationTime": from_epoch(row.created_at),
           "CreatedBy": row.created_by}
    for key, value in (("AssociationType", row.association_type), ("SourceName", row.source_name),
                       ("DestinationName", row.destination_name)):
        if value:
            out[key] = value
    return out


@handler("sagemaker", "ListAssociations")
def list_associations(ctx: RequestContext, req: dict) -> dict:
    equal = {column: req[member] for member, column in ASSOCIATION_FILTERS.items() if member in req}
    after = req["CreatedAfter"].timestamp() if "CreatedAfter" in req else None
    before = req["CreatedBefore"].timestamp() if "CreatedBefore" in req else None
    page = lineage.association_page(
        ctx.engine, ctx.account_id, ctx.region, equal=equal, created_after=after, created_before=before,
        bind={**equal, "after": after, "before": before}, sort=ASSOCIATION_SORTS[req.get("SortBy", "CreationTime")],
        ascending=req.get("SortOrder") == "Ascending", limit=req.get("MaxResults", DEFAULT_PAGE),
        token=req.get("NextToken"))
    return _paged("AssociationSummaries", page, _association_summary)


@handler("sagemaker", "DeleteAssociation")
def delete_association(ctx: RequestContext, req: dict) -> dict:
    lineage.disassociate(ctx.engine, ctx.account_id, ctx.region, req["SourceArn"], req["DestinationArn"])
    return {"SourceArn": req["SourceArn"], "DestinationArn": req["DestinationArn"]}
