"""What the AgentCore handlers share: errors in the models' shapes, finding a runtime, its views."""

from __future__ import annotations

import datetime as dt

from jobforge.api.base import RequestContext
from jobforge.core import agent_runtimes as records
from jobforge.core.errors import ServiceError
from jobforge.execution.agent_host import IDLE_SECONDS, MAX_LIFETIME, AgentHost


def invalid(message: str) -> ServiceError:
    return ServiceError("ValidationException", message, 400, reason="FieldValidationFailed")


def not_found(what: str) -> ServiceError:
    return ServiceError("ResourceNotFoundException", f"{what} not found.", 404)


def host(ctx: RequestContext) -> AgentHost:
    return ctx.runtime.agents


def when(epoch: float) -> dt.datetime:
    return dt.datetime.fromtimestamp(epoch, dt.timezone.utc)


def runtime_of(ctx: RequestContext, runtime_id: str) -> records.AgentRuntime:
    found = records.find(ctx.engine, ctx.account_id, ctx.region, runtime_id)
    if found is None:
        raise not_found(f"Agent runtime {runtime_id}")
    return found


def version_of(ctx: RequestContext, runtime: records.AgentRuntime, version: str | int | None = None
               ) -> records.Version:
    number = int(version) if version is not None else runtime.latest_version
    found = records.get_version(ctx.engine, runtime.id, number)
    if found is None:
        raise not_found(f"Version {number} of agent runtime {runtime.runtime_id}")
    return found


def lifecycle(config: dict) -> dict:
    """The lifecycle configuration with AgentCore's defaults filled in."""
    given = config.get("lifecycleConfiguration") or {}
    return {"idleRuntimeSessionTimeout": given.get("idleRuntimeSessionTimeout", IDLE_SECONDS),
            "maxLifetime": given.get("maxLifetime", MAX_LIFETIME)}


def runtime_view(runtime: records.AgentRuntime, version: records.Version) -> dict:
    """GetAgentRuntime's answer for one version."""
    config = version.config
    view = {
        "agentRuntimeArn": runtime.arn, "agentRuntimeName": runtime.name, "agentRuntimeId": runtime.runtime_id,
        "agentRuntimeVersion": str(version.version), "createdAt": when(version.created_at),
        "lastUpdatedAt": when(version.updated_at), "roleArn": config["roleArn"],
        "networkConfiguration": config.get("networkConfiguration") or {"networkMode": "PUBLIC"},
        "status": version.status, "lifecycleConfiguration": lifecycle(config),
        "agentRuntimeArtifact": config["agentRuntimeArtifact"],
        "protocolConfiguration": config.get("protocolConfiguration") or {"serverProtocol": "HTTP"},
    }
    for member in ("description", "environmentVariables", "requestHeaderConfiguration"):
        if config.get(member):
            view[member] = config[member]
    if version.failure_reason:
        view["failureReason"] = version.failure_reason
    return view


def summary(runtime: records.AgentRuntime, version: records.Version) -> dict:
    """An item of ListAgentRuntimes and ListAgentRuntimeVersions."""
    return {"agentRuntimeArn": runtime.arn, "agentRuntimeId": runtime.runtime_id,
            "agentRuntimeVersion": str(version.version), "agentRuntimeName": runtime.name,
            "description": version.config.get("description", ""), "lastUpdatedAt": when(version.updated_at),
            "status": version.status}
