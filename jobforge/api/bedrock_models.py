"""Bedrock foundation models, custom models, deployments and tags."""

from __future__ import annotations

import json
import time

import sqlalchemy as sa

from jobforge.api import bedrock_objects, bedrock_serving
from jobforge.api.base import RequestContext, client_token, handler
from jobforge.api.bedrock_common import epoch, replayed
from jobforge.api.roles import require_role
from jobforge.core import custom_models as cm
from jobforge.core import jobs, models_catalog, provisioned_models, tags
from jobforge.core.errors import ServiceError, validation_error
from jobforge.core.timestamps import from_epoch
from jobforge.workloads.customize.families import on_demand_only


# -- foundation models ---------------------------------------------------------
def _fm_summary(ctx: RequestContext, model: models_catalog.FoundationModel) -> dict:
    from jobforge.workloads.customize import customization_support

    # As on Bedrock, a model is customized and provisioned through its context-window variants only.
    variant = not on_demand_only(model.model_id)
    return {
        "modelArn": model.arn(ctx.region), "modelId": model.model_id, "modelName": model.model_name,
        "providerName": model.provider_name, "inputModalities": ["TEXT"], "outputModalities": ["TEXT"],
        "responseStreamingSupported": True,
        "customizationsSupported": customization_support(model.model_id)["customizationsSupported"] if variant else [],
        "inferenceTypesSupported": ["ON_DEMAND", "PROVISIONED"] if variant else ["ON_DEMAND"],
        "modelLifecycle": {"status": "ACTIVE", "startOfLifeTime": from_epoch(model.created_at)},
    }


@handler("bedrock", "ListFoundationModels")
def list_foundation_models(ctx: RequestContext, req: dict) -> dict:
    summaries = [_fm_summary(ctx, m) for m in models_catalog.all_models(ctx.engine) if not m.hub_model]
    if "byProvider" in req:
        summaries = [s for s in summaries if s["providerName"].lower() == req["byProvider"].lower()]
    if "byCustomizationType" in req:
        summaries = [s for s in summaries if req["byCustomizationType"] in s["customizationsSupported"]]
    if "byOutputModality" in req:
        summaries = [s for s in summaries if req["byOutputModality"] in s["outputModalities"]]
    if "byInferenceType" in req:
        summaries = [s for s in summaries if req["byInferenceType"] in s["inferenceTypesSupported"]]
    return {"modelSummaries": summaries}


@handler("bedrock", "GetFoundationModel")
def get_foundation_model(ctx: RequestContext, req: dict) -> dict:
    model_id = models_catalog.model_id_of(req["modelIdentifier"])
    model = models_catalog.get(ctx.engine, model_id)
    if model is None:
        raise ServiceError("ResourceNotFoundException", f"Model {model_id} is not registered on this server. "
                           + models_catalog.REGISTER_HINT.format(model_id=model_id))
    return {"modelDetails": _fm_summary(ctx, model)}


# -- custom models ----------------------------------------------------------------
def _model_view(ctx: RequestContext, model: cm.CustomModel) -> dict:
    details = model.details
    out = {
        "modelArn": model.arn, "modelName": model.name, "creationTime": from_epoch(model.created_at),
        "customizationType": model.customization_type, "modelStatus": model.status,
        "baseModelArn": details.get("baseModelArn"), "failureMessage": model.failure_message,
    }
    for key in ("jobName", "jobArn", "hyperParameters", "trainingDataConfig", "validationDataConfig",
                "outputDataConfig", "trainingMetrics", "validationMetrics", "customizationConfig"):
        if details.get(key) is not None:
            out[key] = details[key]
    return out


@handler("bedrock", "GetCustomModel")
def get_custom_model(ctx: RequestContext, req: dict) -> dict:
    from jobforge.api.bedrock import reconcile_models

    reconcile_models(ctx.runtime, ctx.account_id, ctx.region)
    return _model_view(ctx, cm.get_model(ctx.engine, ctx.account_id, ctx.region, req["modelIdentifier"]))


@handler("bedrock", "ListCustomModels")
def list_custom_models(ctx: RequestContext, req: dict) -> dict:
    from jobforge.api.bedrock import reconcile_models

    reconcile_models(ctx.runtime, ctx.account_id, ctx.region)
    table = cm.custom_models
    conditions = []
    if req.get("isOwned") is False:  # every model here belongs to the caller's account
        conditions.append(sa.false())
    if "creationTimeAfter" in req:
        conditions.append(table.c.created_at > epoch(req, "creationTimeAfter"))
    if "creationTimeBefore" in req:
        conditions.append(table.c.created_at < epoch(req, "creationTimeBefore"))
    if "nameContains" in req:
        conditions.append(table.c.name.contains(req["nameContains"], autoescape=True))
    if "modelStatus" in req:
        conditions.append(table.c.status == req["modelStatus"])
    for key in ("baseModelArnEquals", "foundationModelArnEquals"):
        if key in req:
            conditions.append(table.c.base_model_id == models_catalog.model_id_of(req[key]))
    bind = {k: str(v) for k, v in req.items() if k not in ("maxResults", "nextToken")}
    page = cm.list_models(ctx.engine, ctx.account_id, ctx.region, conditions=conditions,
                          ascending=req.get("sortOrder") == "Ascending", limit=req.get("maxResults", 100),
                          token=req.get("nextToken"), bind=bind, bad_token=validation_error)
    out = {"modelSummaries": [{
        "modelArn": m.arn, "modelName": m.name, "creationTime": from_epoch(m.created_at),
        "baseModelArn": m.details.get("baseModelArn") or m.arn, "baseModelName": m.base_model_id or "",
        "customizationType": m.customization_type, "ownerAccountId": m.account_id, "modelStatus": m.status,
    } for m in page.rows]}
    if page.next_token:
        out["nextToken"] = page.next_token
    return out


@handler("bedrock", "DeleteCustomModel")
def delete_custom_model(ctx: RequestContext, req: dict) -> dict:
    model = cm.get_model(ctx.engine, ctx.account_id, ctx.region, req["modelIdentifier"])
    cm.delete_model(ctx.engine, model)
    if model.job_id:  # the job keeps its record; the model must not be registered again
        job = jobs.load(ctx.engine, model.job_id)
        if job is not None:
            jobs.transition(ctx.engine, job.id, result=dict(job.result, customModelDeleted=True))
    tags.remove(ctx.engine, model.arn)
    return {}


@handler("bedrock", "CreateCustomModel", blocking=True)
def create_custom_model(ctx: RequestContext, req: dict) -> dict:
    """Import Hugging Face weights from S3 as a custom model."""
    token = client_token(ctx, "bedrock-custom-model:create", req, "clientRequestToken")
    earlier = replayed(ctx, token)
    if earlier:
        return {"modelArn": earlier}
    source = (req.get("modelSourceConfig") or {}).get("s3DataSource")
    if source is None:
        raise validation_error("modelSourceConfig.s3DataSource is required: jobforge imports Hugging Face "
                               "weights from S3 (SageMaker model packages are not supported).")
    if req.get("roleArn"):
        require_role(ctx, req["roleArn"], "ValidationException")
    from jobforge.api.bedrock import model_name_reserved

    if model_name_reserved(ctx, req["modelName"]):
        raise ServiceError("ConflictException", f"A custom model named {req['modelName']} already exists "
                           "or is being created by a customization job.")
    prefix = source["s3Uri"].rstrip("/") + "/"
    raw = bedrock_objects.read_head(ctx, prefix + "config.json", 1 << 20)
    try:
        config = json.loads(raw)
        assert isinstance(config, dict) and config.get("model_type")
    except (ValueError, AssertionError):
        raise validation_error(f"{prefix}config.json is not a Hugging Face model configuration.") from None
    bedrock_objects.check_model_files(ctx, prefix)
    model_id = cm.new_resource_id()
    arn = cm.custom_model_arn(ctx.region, ctx.account_id, None, model_id)
    model = cm.insert_model(ctx.engine, cm.CustomModel(
        id=model_id, account_id=ctx.account_id, region=ctx.region, name=req["modelName"], arn=arn,
        base_model_id=None, job_id=None,
        customization_type="IMPORTED", location=prefix, status="Active", failure_message=None,
        details={"modelSource": prefix, "architecture": config["model_type"]},
        created_at=time.time()), token)
    tags.put(ctx.engine, ctx.account_id, arn, {t["key"]: t["value"] for t in req.get("modelTags", [])})
    return {"modelArn": model.arn}


# -- deployments -----------------------------------------------------------------
def _deployment_view(d: cm.Deployment) -> dict:
    return {"customModelDeploymentArn": d.arn, "modelDeploymentName": d.name, "modelArn": d.model_arn,
            "createdAt": from_epoch(d.created_at), "status": d.status, "description": d.description,
            "failureMessage": d.failure_message, "lastUpdatedAt": from_epoch(d.updated_at)}


@handler("bedrock", "CreateCustomModelDeployment")
def create_custom_model_deployment(ctx: RequestContext, req: dict) -> dict:
    token = client_token(ctx, "bedrock-deployment:create", req, "clientRequestToken")
    earlier = replayed(ctx, token)
    if earlier:
        return {"customModelDeploymentArn": earlier}
    model = cm.get_model(ctx.engine, ctx.account_id, ctx.region, req["modelArn"])
    if model.status != "Active":
        raise validation_error(f"Custom model {model.name} is {model.status}; only Active models can be deployed.")
    deployment_id = cm.new_resource_id()
    now = time.time()
    arn = cm.deployment_arn(ctx.region, ctx.account_id, deployment_id)
    deployment = cm.insert_deployment(ctx.engine, cm.Deployment(
        id=deployment_id, account_id=ctx.account_id, region=ctx.region, name=req["modelDeploymentName"], arn=arn,
        model_arn=model.arn,
        status="Creating", description=req.get("description"), failure_message=None, created_at=now,
        updated_at=now), token)
    tags.put(ctx.engine, ctx.account_id, arn, {t["key"]: t["value"] for t in req.get("tags", [])})
    bedrock_serving.resume(ctx)  # Creating until the model is loaded in the inference host
    return {"customModelDeploymentArn": deployment.arn}


@handler("bedrock", "GetCustomModelDeployment")
def get_custom_model_deployment(ctx: RequestContext, req: dict) -> dict:
    bedrock_serving.resume(ctx)
    identifier = req["customModelDeploymentIdentifier"]
    return _deployment_view(cm.get_deployment(ctx.engine, ctx.account_id, ctx.region, identifier))


@handler("bedrock", "UpdateCustomModelDeployment")
def update_custom_model_deployment(ctx: RequestContext, req: dict) -> dict:
    deployment = cm.get_deployment(ctx.engine, ctx.account_id, ctx.region, req["customModelDeploymentIdentifier"])
    model = cm.get_model(ctx.engine, ctx.account_id, ctx.region, req["modelArn"])
    if model.status != "Active":
        raise validation_error(f"Custom model {model.name} is {model.status}; only Active models can be deployed.")
    with ctx.engine.begin() as conn:
        conn.execute(cm.model_deployments.update().where(cm.model_deployments.c.id == deployment.id).values(
            model_arn=model.arn, updated_at=time.time()))
    return {"customModelDeploymentArn": deployment.arn}


@handler("bedrock", "DeleteCustomModelDeployment")
def delete_custom_model_deployment(ctx: RequestContext, req: dict) -> dict:
    deployment = cm.get_deployment(ctx.engine, ctx.account_id, ctx.region, req["customModelDeploymentIdentifier"])
    cm.delete_deployment(ctx.engine, deployment)
    tags.remove(ctx.engine, deployment.arn)
    return {}


@handler("bedrock", "ListCustomModelDeployments")
def list_custom_model_deployments(ctx: RequestContext, req: dict) -> dict:
    bedrock_serving.resume(ctx)
    table = cm.model_deployments
    conditions = []
    if "createdAfter" in req:
        conditions.append(table.c.created_at > epoch(req, "createdAfter"))
    if "createdBefore" in req:
        conditions.append(table.c.created_at < epoch(req, "createdBefore"))
    if "nameContains" in req:
        conditions.append(table.c.name.contains(req["nameContains"], autoescape=True))
    if "statusEquals" in req:
        conditions.append(table.c.status == req["statusEquals"])
    if "modelArnEquals" in req:
        conditions.append(table.c.model_arn == req["modelArnEquals"])
    bind = {k: str(v) for k, v in req.items() if k not in ("maxResults", "nextToken")}
    page = cm.list_deployments(ctx.engine, ctx.account_id, ctx.region, conditions=conditions,
                               ascending=req.get("sortOrder") == "Ascending", limit=req.get("maxResults", 100),
                               token=req.get("nextToken"), bind=bind, bad_token=validation_error)
    out = {"modelDeploymentSummaries": [{
        "customModelDeploymentArn": d.arn, "customModelDeploymentName": d.name, "modelArn": d.model_arn,
        "createdAt": from_epoch(d.created_at), "status": d.status, "lastUpdatedAt": from_epoch(d.updated_at),
        "failureMessage": d.failure_message,
    } for d in page.rows]}
    if page.next_token:
        out["nextToken"] = page.next_token
    return out


# -- tags ----------------------------------------------------------------------
MAX_TAGS = 200  # Bedrock's quota of tags per resource


def _taggable(ctx: RequestContext, arn: str) -> str:
    from jobforge.api.bedrock import KIND

    if ":model-customization-job/" in arn:
        return jobs.get(ctx.engine, ctx.account_id, KIND, arn, region=ctx.region).arn
    if ":custom-model-deployment/" in arn:
        return cm.get_deployment(ctx.engine, ctx.account_id, ctx.region, arn).arn
    if ":custom-model/" in arn:
        return cm.get_model(ctx.engine, ctx.account_id, ctx.region, arn).arn
    if ":provisioned-model/" in arn:
        return provisioned_models.get(ctx.engine, ctx.account_id, ctx.region, arn).arn
    raise ServiceError("ResourceNotFoundException", f"Resource {arn} not found.")


@handler("bedrock", "TagResource")
def tag_resource(ctx: RequestContext, req: dict) -> dict:
    arn = _taggable(ctx, req["resourceARN"])
    tags.put(ctx.engine, ctx.account_id, arn, {t["key"]: t["value"] for t in req["tags"]}, limit=MAX_TAGS,
             too_many=lambda: ServiceError("TooManyTagsException", f"A resource can have at most {MAX_TAGS} tags.",
                                           resourceName=arn))
    return {}


@handler("bedrock", "UntagResource")
def untag_resource(ctx: RequestContext, req: dict) -> dict:
    tags.remove(ctx.engine, _taggable(ctx, req["resourceARN"]), req["tagKeys"])
    return {}


@handler("bedrock", "ListTagsForResource")
def list_tags_for_resource(ctx: RequestContext, req: dict) -> dict:
    found = tags.of(ctx.engine, _taggable(ctx, req["resourceARN"]))
    return {"tags": [{"key": k, "value": v} for k, v in sorted(found.items())]}
