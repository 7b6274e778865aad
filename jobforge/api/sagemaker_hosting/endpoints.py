"""CreateEndpoint, DescribeEndpoint, ListEndpoints, UpdateEndpoint, DeleteEndpoint.

An endpoint is ``Creating`` until every instance of every variant answers, then ``InService``, or
``Failed`` with the reason (an instance type this host cannot realise, model data that cannot be read, a
model server that exits before it is ready). ``UpdateEndpoint`` makes it ``Updating`` while the new
configuration's instances start beside the old ones; they then take the traffic (``InService``), or, should
they fail, the old ones keep it and ``FailureReason`` says why. ``DeleteEndpoint`` makes it ``Deleting``
until its instances have answered their requests in flight and stopped. The endpoint keeps what it was
deployed with: its config and models may be deleted meanwhile, as on AWS.
"""

from __future__ import annotations

from jobforge.api.base import RequestContext, handler
from jobforge.api.sagemaker_hosting.common import list_records
from jobforge.api.sagemaker_hosting.endpoint_configs import config
from jobforge.api.sagemaker_hosting.models import stored_model
from jobforge.core import hosting
from jobforge.core.errors import validation_error
from jobforge.core.timestamps import from_epoch

RETAINED = {"DesiredInstanceCount": "InitialInstanceCount", "DesiredWeight": "InitialVariantWeight"}


def _plan(ctx: RequestContext, config_name: str) -> dict:
    """The deployment of an endpoint config: its variants, each with its model as stored now."""
    record = config(ctx, config_name)
    variants = []
    for variant in record.spec["ProductionVariants"]:
        model = hosting.model(ctx.engine, ctx.account_id, ctx.region, variant["ModelName"])
        if model is None:
            raise hosting.not_found("model", hosting.arn(ctx.region, ctx.account_id, "model", variant["ModelName"]))
        variants.append({**variant, "InitialVariantWeight": variant.get("InitialVariantWeight", 1.0),
                         "Model": stored_model(model)})
    return {"EndpointConfigName": record.name, "ProductionVariants": variants}


def _refuse_deployment_config(req: dict) -> None:
    if req.get("DeploymentConfig"):
        raise validation_error("DeploymentConfig is not supported by jobforge: an update starts the new "
                               "variants beside the old ones and moves all traffic to them at once when they "
                               "are ready (blue/green, all at once), without alarms or rollback policies.")


@handler("sagemaker", "CreateEndpoint", blocking=True)
def create_endpoint(ctx: RequestContext, req: dict) -> dict:
    _refuse_deployment_config(req)
    plan = _plan(ctx, req["EndpointConfigName"])
    endpoint = hosting.create_endpoint(ctx.engine, ctx.account_id, ctx.region, req["EndpointName"],
                                       req["EndpointConfigName"], plan, req.get("Tags") or [])
    ctx.runtime.endpoints.create(endpoint)
    return {"EndpointArn": endpoint.arn}


def endpoint_named(ctx: RequestContext, name: str) -> hosting.Endpoint:
    found = hosting.endpoint(ctx.engine, ctx.account_id, ctx.region, name)
    if found is None:
        raise hosting.not_found("endpoint", hosting.arn(ctx.region, ctx.account_id, "endpoint", name))
    return found


def _variant_summaries(ctx: RequestContext, endpoint: hosting.Endpoint) -> list[dict]:
    serving = ctx.runtime.endpoints.serving(endpoint.id)
    summaries = []
    for variant in endpoint.deployment["ProductionVariants"]:
        running = serving.variant(variant["VariantName"]) if serving is not None else None
        summary = {"VariantName": variant["VariantName"], "DesiredWeight": variant["InitialVariantWeight"],
                   "DesiredInstanceCount": variant["InitialInstanceCount"],
                   "CurrentInstanceCount": len(running.instances) if running else 0}
        if running is not None:
            summary["CurrentWeight"] = running.weight
        summaries.append(summary)
    return summaries


@handler("sagemaker", "DescribeEndpoint")
def describe_endpoint(ctx: RequestContext, req: dict) -> dict:
    endpoint = endpoint_named(ctx, req["EndpointName"])
    out = {"EndpointName": endpoint.name, "EndpointArn": endpoint.arn, "EndpointConfigName": endpoint.config_name,
           "EndpointStatus": endpoint.status, "CreationTime": from_epoch(endpoint.created_at),
           "LastModifiedTime": from_epoch(endpoint.last_modified)}
    if endpoint.status != hosting.CREATING:
        out["ProductionVariants"] = _variant_summaries(ctx, endpoint)
    if endpoint.failure_reason:
        out["FailureReason"] = endpoint.failure_reason
    if endpoint.pending:
        out["PendingDeploymentSummary"] = {
            "EndpointConfigName": endpoint.pending["EndpointConfigName"], "StartTime": from_epoch(endpoint.last_modified),
            "ProductionVariants": [{"VariantName": v["VariantName"], "InstanceType": v["InstanceType"],
                                    "DesiredWeight": v["InitialVariantWeight"],
                                    "DesiredInstanceCount": v["InitialInstanceCount"]}
                                   for v in endpoint.pending["ProductionVariants"]]}
    return out


@handler("sagemaker", "ListEndpoints")
def list_endpoints(ctx: RequestContext, req: dict) -> dict:
    extra = [("LastModifiedTimeAfter", "last_modified", "gt"), ("LastModifiedTimeBefore", "last_modified", "lt"),
             ("StatusEquals", "status", "eq")]
    return list_records(ctx, req, "endpoints", lambda row: {
        "EndpointName": row.name, "EndpointArn": row.arn, "CreationTime": from_epoch(row.created_at),
        "LastModifiedTime": from_epoch(row.last_modified), "EndpointStatus": row.status}, "Endpoints", extra)


def _retain(plan: dict, current: dict, excluded: set[str]) -> dict:
    """RetainAllVariantProperties: variants of the same name keep their instance count and weight."""
    before = {variant["VariantName"]: variant for variant in current["ProductionVariants"]}
    for variant in plan["ProductionVariants"]:
        old = before.get(variant["VariantName"])
        for prop, member in RETAINED.items():
            if old is not None and prop not in excluded:
                variant[member] = old[member]
    return plan


@handler("sagemaker", "UpdateEndpoint", blocking=True)
def update_endpoint(ctx: RequestContext, req: dict) -> dict:
    _refuse_deployment_config(req)
    endpoint = endpoint_named(ctx, req["EndpointName"])
    plan = _plan(ctx, req["EndpointConfigName"])
    if req.get("RetainAllVariantProperties"):
        excluded = {item["VariantPropertyType"] for item in req.get("ExcludeRetainedVariantProperties") or []}
        plan = _retain(plan, endpoint.deployment, excluded)
    updated = hosting.update_endpoint(ctx.engine, endpoint.id, expect=(hosting.IN_SERVICE,), status=hosting.UPDATING,
                                      pending=plan, failure_reason=None)
    if updated is None:
        raise hosting.not_found("endpoint", endpoint.arn)
    ctx.runtime.endpoints.update(updated)
    return {"EndpointArn": endpoint.arn}


@handler("sagemaker", "DeleteEndpoint", blocking=True)
def delete_endpoint(ctx: RequestContext, req: dict) -> dict:
    endpoint = endpoint_named(ctx, req["EndpointName"])
    if endpoint.status == hosting.DELETING:
        return {}
    deleting = hosting.update_endpoint(ctx.engine, endpoint.id, status=hosting.DELETING)
    if deleting is not None:
        ctx.runtime.endpoints.delete(deleting)
    return {}
