"""Bedrock Provisioned Throughput: bought for a custom model or a foundation model's context-window variant,
``Creating`` while its model loads in the inference host, then ``InService``; its ARN is a ``modelId`` for
bedrock-runtime. Model units and the commitment are recorded as bought; they reserve no capacity here."""

from __future__ import annotations

import time

from jobforge.api import bedrock_serving
from jobforge.api.base import RequestContext, client_token, handler
from jobforge.api.bedrock_common import INVALID_MODEL, ResolvedModel, epoch, replayed, resolve_model
from jobforge.core import custom_models as cm
from jobforge.core import provisioned_models as pm
from jobforge.core import tags
from jobforge.core.errors import ServiceError, validation_error
from jobforge.core.models_catalog import foundation_model_arn
from jobforge.core.timestamps import from_epoch
from jobforge.workloads.customize.families import on_demand_only


def _provisionable(ctx: RequestContext, identifier: str) -> ResolvedModel:
    model = resolve_model(ctx, identifier)
    if model.custom is None and on_demand_only(model.family_id):
        # Bedrock provisions a foundation model's context-window variants (amazon.nova-lite-v1:0:300k) only.
        raise validation_error(INVALID_MODEL)
    if not model.family_id:
        raise validation_error(f"{model.arn} was imported and has no base foundation model, which a Provisioned "
                               "Throughput names; serve it through a custom model deployment.")
    return model


def _foundation_arn(ctx: RequestContext, model: ResolvedModel) -> str:
    return foundation_model_arn(ctx.region, model.family_id)


def _view(p: pm.ProvisionedModel) -> dict:
    return {"provisionedModelName": p.name, "provisionedModelArn": p.arn, "modelArn": p.model_arn,
            "desiredModelArn": p.desired_model_arn, "foundationModelArn": p.foundation_model_arn,
            "modelUnits": p.model_units, "desiredModelUnits": p.desired_model_units, "status": p.status,
            "commitmentDuration": p.commitment_duration,
            "commitmentExpirationTime": from_epoch(p.commitment_expires_at),
            "creationTime": from_epoch(p.created_at), "lastModifiedTime": from_epoch(p.updated_at)}


@handler("bedrock", "CreateProvisionedModelThroughput", blocking=True)
def create_provisioned_model_throughput(ctx: RequestContext, req: dict) -> dict:
    token = client_token(ctx, "bedrock-provisioned-model:create", req, "clientRequestToken")
    earlier = replayed(ctx, token)
    if earlier:
        return {"provisionedModelArn": earlier}
    model = _provisionable(ctx, req["modelId"])
    now = time.time()
    provisioned_id = cm.new_resource_id()
    commitment = req.get("commitmentDuration")
    provisioned = pm.insert(ctx.engine, pm.ProvisionedModel(
        id=provisioned_id, account_id=ctx.account_id, region=ctx.region, name=req["provisionedModelName"],
        arn=pm.provisioned_model_arn(ctx.region, ctx.account_id, provisioned_id), model_arn=model.arn,
        desired_model_arn=model.arn, foundation_model_arn=_foundation_arn(ctx, model),
        model_units=req["modelUnits"], desired_model_units=req["modelUnits"], status=pm.CREATING,
        failure_message=None, commitment_duration=commitment,
        commitment_expires_at=now + pm.COMMITMENT_SECONDS[commitment] if commitment else None,
        created_at=now, updated_at=now), token)
    tags.put(ctx.engine, ctx.account_id, provisioned.arn, {t["key"]: t["value"] for t in req.get("tags", [])})
    bedrock_serving.resume(ctx)
    return {"provisionedModelArn": provisioned.arn}


@handler("bedrock", "GetProvisionedModelThroughput")
def get_provisioned_model_throughput(ctx: RequestContext, req: dict) -> dict:
    bedrock_serving.resume(ctx)
    provisioned = pm.get(ctx.engine, ctx.account_id, ctx.region, req["provisionedModelId"])
    return {**_view(provisioned), "failureMessage": provisioned.failure_message}


@handler("bedrock", "ListProvisionedModelThroughputs")
def list_provisioned_model_throughputs(ctx: RequestContext, req: dict) -> dict:
    bedrock_serving.resume(ctx)
    table = pm.provisioned_models
    conditions = []
    if "creationTimeAfter" in req:
        conditions.append(table.c.created_at > epoch(req, "creationTimeAfter"))
    if "creationTimeBefore" in req:
        conditions.append(table.c.created_at < epoch(req, "creationTimeBefore"))
    if "statusEquals" in req:
        conditions.append(table.c.status == req["statusEquals"])
    if "modelArnEquals" in req:
        conditions.append(table.c.model_arn == req["modelArnEquals"])
    if "nameContains" in req:
        conditions.append(table.c.name.contains(req["nameContains"], autoescape=True))
    bind = {k: str(v) for k, v in req.items() if k not in ("maxResults", "nextToken")}
    page = pm.list_page(ctx.engine, ctx.account_id, ctx.region, conditions=conditions,
                        ascending=req.get("sortOrder") == "Ascending", limit=req.get("maxResults", 100),
                        token=req.get("nextToken"), bind=bind, bad_token=validation_error)
    out = {"provisionedModelSummaries": [_view(p) for p in page.rows]}
    if page.next_token:
        out["nextToken"] = page.next_token
    return out


@handler("bedrock", "UpdateProvisionedModelThroughput", blocking=True)
def update_provisioned_model_throughput(ctx: RequestContext, req: dict) -> dict:
    provisioned = pm.get(ctx.engine, ctx.account_id, ctx.region, req["provisionedModelId"])
    if "desiredModelId" in req:
        desired = _desired_model(ctx, provisioned, req["desiredModelId"])
        if desired.arn != provisioned.model_arn or provisioned.status == pm.FAILED:
            if provisioned.status in pm.LOADING:
                raise validation_error(f"Provisioned Throughput {provisioned.name} is {provisioned.status}; "
                                       "update it once it is InService.")
            pm.update(ctx.engine, provisioned.id, desired_model_arn=desired.arn, status=pm.UPDATING,
                      failure_message=None)
    if "desiredProvisionedModelName" in req:
        pm.rename(ctx.engine, provisioned, req["desiredProvisionedModelName"])
    bedrock_serving.resume(ctx)
    return {}


def _desired_model(ctx: RequestContext, provisioned: pm.ProvisionedModel, identifier: str) -> ResolvedModel:
    """As on Bedrock, only a custom model's Provisioned Throughput changes model: to the base model it was
    customized from, or to another custom model of that base model."""
    if ":custom-model/" not in provisioned.model_arn:
        raise validation_error("The model of a Provisioned Throughput can be changed only when it serves a custom "
                               "model.")
    desired = _provisionable(ctx, identifier)
    if _foundation_arn(ctx, desired) != provisioned.foundation_model_arn:
        raise validation_error(f"{desired.arn} was not customized from {provisioned.foundation_model_arn}, the base "
                               "model of the Provisioned Throughput's model; choose that base model or a custom "
                               "model customized from it.")
    return desired


@handler("bedrock", "DeleteProvisionedModelThroughput")
def delete_provisioned_model_throughput(ctx: RequestContext, req: dict) -> dict:
    provisioned = pm.get(ctx.engine, ctx.account_id, ctx.region, req["provisionedModelId"])
    if provisioned.commitment_expires_at and provisioned.commitment_expires_at > time.time():
        raise ServiceError("ConflictException", f"Provisioned Throughput {provisioned.name} has a "
                           f"{provisioned.commitment_duration} commitment until "
                           f"{from_epoch(provisioned.commitment_expires_at).isoformat()}; it cannot be deleted "
                           "before its commitment term is over.")
    pm.delete(ctx.engine, provisioned)
    tags.remove(ctx.engine, provisioned.arn)
    return {}
