"""Runtime endpoints: DEFAULT (made with the runtime, it follows the newest ready version) and named ones
pinned to a version, which InvokeAgentRuntime's qualifier names."""

from __future__ import annotations

from jobforge.api.agentcore.common import host, invalid, not_found, runtime_of, version_of, when
from jobforge.api.base import RequestContext, handler
from jobforge.core import agent_runtimes as records
from jobforge.core import paging, tags
from jobforge.core.errors import ServiceError


def endpoint_arn(runtime: records.AgentRuntime, name: str) -> str:
    return f"{runtime.arn}/runtime-endpoint/{name}"


def endpoint_of(ctx: RequestContext, runtime: records.AgentRuntime, name: str) -> records.Endpoint:
    found = records.endpoint(ctx.engine, runtime.id, name)
    if found is None:
        raise not_found(f"Endpoint {name} of agent runtime {runtime.runtime_id}")
    return found


def status(ctx: RequestContext, endpoint: records.Endpoint) -> str:
    """READY once it serves the version it targets; else the state of that version."""
    if endpoint.live_version == endpoint.target_version:
        return records.READY
    target = records.get_version(ctx.engine, endpoint.runtime, endpoint.target_version)
    creating = endpoint.live_version is None
    if target is not None and target.status in (records.CREATE_FAILED, records.UPDATE_FAILED):
        return records.CREATE_FAILED if creating else records.UPDATE_FAILED
    return records.CREATING if creating else records.UPDATING


def view(ctx: RequestContext, runtime: records.AgentRuntime, endpoint: records.Endpoint) -> dict:
    out = {"name": endpoint.name, "id": endpoint.endpoint_id, "agentRuntimeArn": runtime.arn,
           "agentRuntimeEndpointArn": endpoint_arn(runtime, endpoint.name), "status": status(ctx, endpoint),
           "targetVersion": str(endpoint.target_version), "createdAt": when(endpoint.created_at),
           "lastUpdatedAt": when(endpoint.updated_at)}
    if endpoint.live_version is not None:
        out["liveVersion"] = str(endpoint.live_version)
    if endpoint.description:
        out["description"] = endpoint.description
    return out


def _pinned_version(ctx: RequestContext, runtime: records.AgentRuntime, req: dict) -> records.Version:
    version = version_of(ctx, runtime, req.get("agentRuntimeVersion"))
    if version.status in (records.CREATE_FAILED, records.UPDATE_FAILED):
        raise invalid(f"Version {version.version} of agent runtime {runtime.runtime_id} is {version.status}.")
    return version


def _not_default(name: str) -> None:
    if name == records.DEFAULT_ENDPOINT:
        raise invalid("The DEFAULT endpoint is managed by the service: it always serves the newest version.")


@handler("bedrock-agentcore-control", "GetAgentRuntimeEndpoint")
def get_agent_runtime_endpoint(ctx: RequestContext, req: dict) -> dict:
    runtime = runtime_of(ctx, req["agentRuntimeId"])
    return view(ctx, runtime, endpoint_of(ctx, runtime, req["endpointName"]))


@handler("bedrock-agentcore-control", "ListAgentRuntimeEndpoints")
def list_agent_runtime_endpoints(ctx: RequestContext, req: dict) -> dict:
    runtime = runtime_of(ctx, req["agentRuntimeId"])
    page, token = paging.marker_page(records.endpoints(ctx.engine, runtime.id), lambda e: e.name,
                                     req.get("nextToken"), req.get("maxResults", 100),
                                     lambda: invalid("The nextToken is not valid."))
    out = {"runtimeEndpoints": [view(ctx, runtime, endpoint) for endpoint in page]}
    if token:
        out["nextToken"] = token
    return out


@handler("bedrock-agentcore-control", "CreateAgentRuntimeEndpoint")
def create_agent_runtime_endpoint(ctx: RequestContext, req: dict) -> dict:
    runtime = runtime_of(ctx, req["agentRuntimeId"])
    _not_default(req["name"])
    version = _pinned_version(ctx, runtime, req)
    endpoint = records.add_endpoint(ctx.engine, runtime.id, req["name"], version.version,
                                    version.status == records.READY, req.get("description"))
    if req.get("tags"):
        tags.put(ctx.engine, ctx.account_id, endpoint_arn(runtime, endpoint.name), req["tags"])
    return {"targetVersion": str(endpoint.target_version), "agentRuntimeEndpointArn": endpoint_arn(runtime, endpoint.name),
            "agentRuntimeArn": runtime.arn, "agentRuntimeId": runtime.runtime_id, "endpointName": endpoint.name,
            "status": status(ctx, endpoint), "createdAt": when(endpoint.created_at)}


@handler("bedrock-agentcore-control", "UpdateAgentRuntimeEndpoint")
def update_agent_runtime_endpoint(ctx: RequestContext, req: dict) -> dict:
    runtime = runtime_of(ctx, req["agentRuntimeId"])
    _not_default(req["endpointName"])
    endpoint = endpoint_of(ctx, runtime, req["endpointName"])
    version = _pinned_version(ctx, runtime, req)
    endpoint = records.retarget_endpoint(ctx.engine, endpoint, version.version, version.status == records.READY,
                                         req.get("description"))
    host(ctx).retire(runtime.id)
    out = view(ctx, runtime, endpoint)
    return {member: out[member] for member in ("liveVersion", "targetVersion", "agentRuntimeEndpointArn",
                                               "agentRuntimeArn", "status", "createdAt", "lastUpdatedAt")
            if member in out}


@handler("bedrock-agentcore-control", "DeleteAgentRuntimeEndpoint")
def delete_agent_runtime_endpoint(ctx: RequestContext, req: dict) -> dict:
    runtime = runtime_of(ctx, req["agentRuntimeId"])
    if req["endpointName"] == records.DEFAULT_ENDPOINT:
        raise ServiceError("ConflictException", "The DEFAULT endpoint cannot be deleted; it goes with its runtime.",
                           409)
    endpoint = endpoint_of(ctx, runtime, req["endpointName"])
    records.delete_endpoint(ctx.engine, endpoint)
    tags.remove(ctx.engine, endpoint_arn(runtime, endpoint.name))
    host(ctx).retire(runtime.id)
    return {"status": "DELETING", "agentRuntimeId": runtime.runtime_id, "endpointName": endpoint.name}
