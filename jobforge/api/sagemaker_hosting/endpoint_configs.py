"""CreateEndpointConfig, DescribeEndpointConfig, ListEndpointConfigs, DeleteEndpointConfig.

Production variants are instance-based: a ``ServerlessConfig``, shadow variants, async inference, data
capture, explainers, accelerators and instance pools are refused with the reason. Instance types are checked
against this host when an endpoint is deployed (its FailureReason says why one cannot run here).
"""

from __future__ import annotations

from jobforge.api.base import RequestContext, handler
from jobforge.api.sagemaker_hosting.common import list_records
from jobforge.core import hosting
from jobforge.core.errors import validation_error
from jobforge.core.timestamps import from_epoch

REFUSED_MEMBERS = {
    "DataCaptureConfig": "data capture", "AsyncInferenceConfig": "asynchronous inference",
    "ExplainerConfig": "SageMaker Clarify explainers", "ShadowProductionVariants": "shadow variants",
    "KmsKeyId": "KMS-encrypted volumes", "CrossRegionTrafficConfig": "cross-region traffic",
}
REFUSED_VARIANT_MEMBERS = {
    "ServerlessConfig": "serverless inference", "AcceleratorType": "Elastic Inference accelerators",
    "InstancePools": "instance pools", "ManagedInstanceScaling": "managed instance scaling",
    "CapacityReservationConfig": "capacity reservations", "AcceleratorPartitionLayouts": "accelerator partitions",
    "CoreDumpConfig": "core dumps",
}


def _check(req: dict) -> None:
    for member, what in REFUSED_MEMBERS.items():
        if req.get(member):
            raise validation_error(f"{member} is not supported by jobforge ({what}).")
    names = set()
    for variant in req["ProductionVariants"]:
        for member, what in REFUSED_VARIANT_MEMBERS.items():
            if variant.get(member):
                raise validation_error(f"{member} in production variant {variant['VariantName']} is not supported "
                                       f"by jobforge ({what}).")
        if variant["VariantName"] in names:
            raise validation_error(f"The variant name {variant['VariantName']} is used more than once.")
        names.add(variant["VariantName"])
        for member in ("ModelName", "InstanceType", "InitialInstanceCount"):
            if variant.get(member) is None:
                raise validation_error(f"Production variant {variant['VariantName']} needs {member}.")


@handler("sagemaker", "CreateEndpointConfig")
def create_endpoint_config(ctx: RequestContext, req: dict) -> dict:
    _check(req)
    spec = {key: value for key, value in req.items() if key not in ("EndpointConfigName", "Tags")}
    record = hosting.create_endpoint_config(ctx.engine, ctx.account_id, ctx.region, req["EndpointConfigName"], spec,
                                            req.get("Tags") or [])
    return {"EndpointConfigArn": record.arn}


def config(ctx: RequestContext, name: str) -> hosting.Record:
    record = hosting.endpoint_config(ctx.engine, ctx.account_id, ctx.region, name)
    if record is None:
        raise hosting.not_found("endpoint configuration",
                                hosting.arn(ctx.region, ctx.account_id, "endpoint-config", name))
    return record


@handler("sagemaker", "DescribeEndpointConfig")
def describe_endpoint_config(ctx: RequestContext, req: dict) -> dict:
    record = config(ctx, req["EndpointConfigName"])
    return {"EndpointConfigName": record.name, "EndpointConfigArn": record.arn,
            "CreationTime": from_epoch(record.created_at), **record.spec}


@handler("sagemaker", "ListEndpointConfigs")
def list_endpoint_configs(ctx: RequestContext, req: dict) -> dict:
    return list_records(ctx, req, "endpoint_configs", lambda row: {
        "EndpointConfigName": row.name, "EndpointConfigArn": row.arn, "CreationTime": from_epoch(row.created_at)},
        "EndpointConfigs")


@handler("sagemaker", "DeleteEndpointConfig")
def delete_endpoint_config(ctx: RequestContext, req: dict) -> dict:
    hosting.delete_endpoint_config(ctx.engine, config(ctx, req["EndpointConfigName"]))
    return {}
