"""Creating, reading, updating and deleting agent runtimes, and listing their versions.

A runtime's code is a .zip archive in S3 (read with the caller's account when the request arrives, kept
under the data dir) holding the agent's entry point and its dependencies, as AgentCore's direct code
deployment takes it, or a container image (``containerConfiguration``) the server's container engine has,
built for this host's architecture (AgentCore's own hosts take ARM64 images). Each create or update makes a
version, CREATING (or UPDATING) until its code is unpacked or its image found, then READY (the DEFAULT
endpoint moves to it) or CREATE_FAILED / UPDATE_FAILED with the reason.
"""

from __future__ import annotations

from jobforge.api.agentcore.common import host, invalid, runtime_of, runtime_view, summary, version_of, when
from jobforge.api.base import RequestContext, client_token, handler
from jobforge.api.roles import require_role
from jobforge.core import agent_runtimes as records
from jobforge.core import idempotency, paging, tags
from jobforge.core.errors import ServiceError
from jobforge.execution import container_engine
from jobforge.execution.container_engine import HOST_ARCHITECTURE

MAX_ARCHIVE = 250 * 1024 * 1024  # the largest .zip archive AgentCore takes for direct code deployment
CONTAINER_REFUSAL = container_engine.refusal(
    "Container runtimes (agentRuntimeArtifact.containerConfiguration)",
    "deploy the agent as code: agentRuntimeArtifact.codeConfiguration with a .zip archive in S3 holding the entry "
    "point and its dependencies")
# Settings that change what a runtime does and that jobforge does not carry out: refused, never ignored.
UNSUPPORTED = {
    "authorizerConfiguration": "JWT authorizers (jobforge authenticates InvokeAgentRuntime by SigV4)",
    "filesystemConfigurations": "Filesystem configurations", "capacityProviderConfiguration": "Capacity providers",
    "hooksConfiguration": "Lifecycle hooks", "allowedPorts": "Additional ports",
    "resourceConfigurations": "Resource configurations", "platformVersion": "Platform versions",
    "metadataConfiguration": "Metadata configurations",
}
# Members kept with a version, as GetAgentRuntime returns them.
KEPT = ("roleArn", "agentRuntimeArtifact", "networkConfiguration", "protocolConfiguration",
        "lifecycleConfiguration", "environmentVariables", "description", "requestHeaderConfiguration")


def _check(ctx: RequestContext, req: dict) -> None:
    for member, what in UNSUPPORTED.items():
        if req.get(member) not in (None, {}, []):
            raise invalid(f"{what} ({member}) are not supported by jobforge.")
    artifact = req["agentRuntimeArtifact"]
    if "containerConfiguration" in artifact:
        _check_image(ctx, artifact["containerConfiguration"]["containerUri"])
    elif "codeConfiguration" not in artifact:
        raise invalid("agentRuntimeArtifact must give a codeConfiguration or a containerConfiguration.")
    else:
        _check_code(ctx, artifact["codeConfiguration"])
    network = (req.get("networkConfiguration") or {}).get("networkMode", "PUBLIC")
    if network != "PUBLIC":
        raise invalid(f"The network mode {network} is not supported by jobforge: sessions run on this host.")
    protocol = (req.get("protocolConfiguration") or {})
    if protocol.get("serverProtocol", "HTTP") != "HTTP" or protocol.get("port") or protocol.get("path"):
        raise invalid("Only the HTTP protocol on its default port and path (POST /invocations, GET /ping on 8080) "
                      "is supported by jobforge.")
    lifecycle = req.get("lifecycleConfiguration") or {}
    idle, lifetime = lifecycle.get("idleRuntimeSessionTimeout"), lifecycle.get("maxLifetime")
    if idle is not None and lifetime is not None and idle > lifetime:
        raise invalid("idleRuntimeSessionTimeout must be less than or equal to maxLifetime.")
    try:
        require_role(ctx, req["roleArn"], "ValidationException", 400)
    except ServiceError as err:
        raise invalid(err.message) from None


def _check_image(ctx: RequestContext, uri: str) -> None:
    engine = host(ctx).containers
    if engine is None:
        raise invalid(CONTAINER_REFUSAL)
    image = engine.image(uri)
    if image is None:
        raise invalid(f"The image {uri} is not on this host's {engine.name}: build, pull or load it there first "
                      f"({engine.name} images lists what it has; jobforge pulls no images).")
    if image.architecture != HOST_ARCHITECTURE:
        raise invalid(f"The image {uri} is built for {image.architecture or 'an unknown architecture'}; this host "
                      f"runs {HOST_ARCHITECTURE} images.")


def _check_code(ctx: RequestContext, code: dict) -> None:
    if code["runtime"] not in host(ctx).runtimes:
        offered = ", ".join(sorted(host(ctx).runtimes)) or "none"
        raise invalid(f"The runtime {code['runtime']} is not available on this host; it offers {offered} "
                      "(jobforge runs Python agents with the Python versions installed beside it).")
    entry = code["entryPoint"]
    if len(entry) != 1 or not entry[0].endswith(".py"):
        raise invalid(f"entryPoint must name the agent's Python file in the archive (['main.py']); {entry} is "
                      "not supported by jobforge.")


def _code(ctx: RequestContext, req: dict) -> bytes:
    """The code archive the request names in S3, read with the caller's account."""
    location = req["agentRuntimeArtifact"]["codeConfiguration"]["code"].get("s3")
    if location is None:
        raise invalid("codeConfiguration.code must give the archive's S3 location (s3).")
    if location.get("versionId"):
        raise invalid("codeConfiguration.code.s3.versionId is not supported by jobforge.")
    store = ctx.runtime.object_store
    try:
        info = store.head(ctx.account_id, location["bucket"], location["prefix"])
    except ServiceError as err:
        raise invalid(f"The code archive s3://{location['bucket']}/{location['prefix']} could not be read: "
                      f"{err.code}: {err.message}") from None
    if info.size > MAX_ARCHIVE:
        raise invalid(f"The code archive is {info.size} bytes; AgentCore takes archives of at most {MAX_ARCHIVE} "
                      "bytes.")
    return b"".join(store.read(info, 0, info.size))


def _stored_code(ctx: RequestContext, key: str, req: dict) -> str:
    """Where the version's code archive is kept; "" for a container image, which the engine keeps."""
    if "containerConfiguration" in req["agentRuntimeArtifact"]:
        return ""
    return str(host(ctx).store_code(key, _code(ctx, req)))


def _config(req: dict) -> dict:
    return {member: req[member] for member in KEPT if req.get(member) is not None}


@handler("bedrock-agentcore-control", "CreateAgentRuntime", blocking=True)
def create_agent_runtime(ctx: RequestContext, req: dict) -> dict:
    token = client_token(ctx, "agentcore-runtime:create", req, "clientToken")
    earlier = idempotency.earlier(ctx.engine, token, idempotency.reused("ConflictException"))
    if earlier is not None:
        runtime = records.by_arn(ctx.engine, earlier)
        if runtime is not None:
            version = version_of(ctx, runtime, 1)
            return {"agentRuntimeArn": runtime.arn, "agentRuntimeId": runtime.runtime_id,
                    "agentRuntimeVersion": "1", "createdAt": when(version.created_at), "status": version.status}
    _check(ctx, req)
    key = records.new_key()
    code_file = _stored_code(ctx, key, req)
    try:
        runtime = records.create(ctx.engine, key, ctx.account_id, ctx.region, req["agentRuntimeName"], _config(req),
                                 code_file, token)
    except ServiceError:
        host(ctx).drop_code(key)
        raise
    if req.get("tags"):
        tags.put(ctx.engine, ctx.account_id, runtime.arn, req["tags"])
    version = version_of(ctx, runtime, 1)
    host(ctx).prepare(version)
    return {"agentRuntimeArn": runtime.arn, "agentRuntimeId": runtime.runtime_id, "agentRuntimeVersion": "1",
            "createdAt": when(version.created_at), "status": version.status}


@handler("bedrock-agentcore-control", "GetAgentRuntime")
def get_agent_runtime(ctx: RequestContext, req: dict) -> dict:
    runtime = runtime_of(ctx, req["agentRuntimeId"])
    return runtime_view(runtime, version_of(ctx, runtime, req.get("agentRuntimeVersion")))


def _page(items: list, req: dict, key) -> tuple[list, str | None]:
    return paging.marker_page(items, key, req.get("nextToken"), req.get("maxResults", 100),
                              lambda: invalid("The nextToken is not valid."))


@handler("bedrock-agentcore-control", "ListAgentRuntimes")
def list_agent_runtimes(ctx: RequestContext, req: dict) -> dict:
    found = records.in_region(ctx.engine, ctx.account_id, ctx.region)
    page, token = _page(found, req, lambda runtime: runtime.runtime_id)
    out = {"agentRuntimes": [summary(runtime, version_of(ctx, runtime)) for runtime in page]}
    if token:
        out["nextToken"] = token
    return out


@handler("bedrock-agentcore-control", "ListAgentRuntimeVersions")
def list_agent_runtime_versions(ctx: RequestContext, req: dict) -> dict:
    runtime = runtime_of(ctx, req["agentRuntimeId"])
    page, token = _page(records.versions(ctx.engine, runtime.id), req, lambda v: f"{100000 - v.version:06d}")
    out = {"agentRuntimes": [summary(runtime, version) for version in page]}
    if token:
        out["nextToken"] = token
    return out


@handler("bedrock-agentcore-control", "UpdateAgentRuntime", blocking=True)
def update_agent_runtime(ctx: RequestContext, req: dict) -> dict:
    runtime = runtime_of(ctx, req["agentRuntimeId"])
    latest = version_of(ctx, runtime)
    if latest.status in (records.CREATING, records.UPDATING):
        raise ServiceError("ConflictException", f"Agent runtime {runtime.runtime_id} is {latest.status}; update it "
                           "once that is done.", 409)
    _check(ctx, req)
    code_file = _stored_code(ctx, runtime.id, req)
    version = records.add_version(ctx.engine, runtime, _config(req), code_file)
    host(ctx).prepare(version)
    return {"agentRuntimeArn": runtime.arn, "agentRuntimeId": runtime.runtime_id,
            "agentRuntimeVersion": str(version.version), "createdAt": when(runtime.created_at),
            "lastUpdatedAt": when(version.updated_at), "status": version.status}


@handler("bedrock-agentcore-control", "DeleteAgentRuntime")
def delete_agent_runtime(ctx: RequestContext, req: dict) -> dict:
    runtime = runtime_of(ctx, req["agentRuntimeId"])
    if req.get("agentRuntimeVersion"):
        raise invalid("Deleting one version (agentRuntimeVersion) is not supported by jobforge: delete the runtime.")
    records.delete(ctx.engine, runtime)
    tags.remove(ctx.engine, runtime.arn)
    host(ctx).forget(runtime)
    return {"status": "DELETING", "agentRuntimeId": runtime.runtime_id}
