"""The data plane: InvokeAgentRuntime forwards the payload to the session's agent (``POST /invocations``) and
answers with what the agent answers: a JSON document as the body, a ``text/event-stream`` passed through
as it streams; StopRuntimeSession ends a session."""

from __future__ import annotations

import uuid

from jobforge.api.agentcore.common import host, invalid, not_found, version_of
from jobforge.api.base import RequestContext, handler
from jobforge.core import agent_runtimes as records
from jobforge.core.blobs import BlockingBody
from jobforge.core.errors import ServiceError
from jobforge.execution.agent_host import AgentFailed, InitFailed, NoRoom

CUSTOM_HEADER_PREFIX = "x-amzn-bedrock-agentcore-runtime-custom-"  # always forwarded to the agent
FORWARDED = {"runtimeUserId": "X-Amzn-Bedrock-AgentCore-Runtime-User-Id", "traceId": "X-Amzn-Trace-Id",
             "traceParent": "traceparent", "traceState": "tracestate", "baggage": "baggage"}


def _runtime(ctx: RequestContext, arn: str, account_id: str | None) -> records.AgentRuntime:
    """The caller's runtime an ARN names; another account's is not found, as on AgentCore."""
    if not arn.startswith("arn:") or ":runtime/" not in arn:
        raise invalid(f"{arn} is not an agent runtime ARN.")
    runtime = records.by_arn(ctx.engine, arn)
    if runtime is None or runtime.account_id != ctx.account_id or runtime.region != ctx.region \
            or account_id not in (None, ctx.account_id):
        raise not_found(f"Agent runtime {arn}")
    return runtime


def _served_version(ctx: RequestContext, runtime: records.AgentRuntime, qualifier: str) -> records.Version:
    endpoint = records.endpoint(ctx.engine, runtime.id, qualifier)
    if endpoint is None:
        raise not_found(f"Endpoint {qualifier} of agent runtime {runtime.arn}")
    if endpoint.live_version is None:
        target = version_of(ctx, runtime, endpoint.target_version)
        if target.status in (records.CREATE_FAILED, records.UPDATE_FAILED):
            raise invalid(f"Agent runtime {runtime.runtime_id} is {target.status}: {target.failure_reason}")
        raise ServiceError("RetryableConflictException", f"Agent runtime {runtime.runtime_id} is {target.status}; "
                           "invoke it once it is READY.", 409)
    return version_of(ctx, runtime, endpoint.live_version)


def _headers(ctx: RequestContext, req: dict, version: records.Version) -> dict[str, str]:
    """What the agent is sent besides the session id: the content type, the request id, the headers
    AgentCore forwards (its custom ones, those the runtime's allowlist names, tracing)."""
    headers = {"Content-Type": req.get("contentType") or "application/json",
               "X-Amzn-Bedrock-AgentCore-Runtime-Request-Id": ctx.request_id}
    if req.get("accept"):
        headers["Accept"] = req["accept"]
    for member, name in FORWARDED.items():
        if req.get(member):
            headers[name] = req[member]
    allowed = {name.lower() for name in (version.config.get("requestHeaderConfiguration") or {})
               .get("requestHeaderAllowlist", [])}
    for name, value in ctx.headers.items():
        if name.startswith(CUSTOM_HEADER_PREFIX) or name in allowed:
            headers[name] = value
    return headers


@handler("bedrock-agentcore", "InvokeAgentRuntime", blocking=True)
def invoke_agent_runtime(ctx: RequestContext, req: dict) -> dict:
    runtime = _runtime(ctx, req["agentRuntimeArn"], req.get("accountId"))
    version = _served_version(ctx, runtime, req.get("qualifier") or records.DEFAULT_ENDPOINT)
    session_id = req.get("runtimeSessionId") or str(uuid.uuid4())
    try:
        reply = host(ctx).invoke(runtime, version, req.get("qualifier") or records.DEFAULT_ENDPOINT, session_id,
                                 req.get("payload") or b"", _headers(ctx, req, version))
    except InitFailed as err:
        raise ServiceError("RuntimeClientError", str(err), 424) from None
    except AgentFailed as err:
        raise ServiceError("RuntimeClientError", f"Received error ({err.status}) from runtime. Please check your "
                           "CloudWatch logs for more information.", 424) from None
    except NoRoom as err:
        raise ServiceError("ServiceQuotaExceededException", str(err), 402) from None
    body = reply.body if reply.body is not None else BlockingBody(reply.chunks, close=reply.close)
    return {"runtimeSessionId": session_id, "contentType": reply.content_type, "statusCode": reply.status,
            "response": body}


@handler("bedrock-agentcore", "StopRuntimeSession", blocking=True)
def stop_runtime_session(ctx: RequestContext, req: dict) -> dict:
    runtime = _runtime(ctx, req["agentRuntimeArn"], None)
    if req.get("qualifier"):
        _served_version(ctx, runtime, req["qualifier"])
    if not host(ctx).stop_session(runtime, req["runtimeSessionId"]):
        raise not_found(f"Session {req['runtimeSessionId']}")
    return {"runtimeSessionId": req["runtimeSessionId"], "statusCode": 200}
