"""sagemaker-runtime InvokeEndpoint and InvokeEndpointWithResponseStream.

The request goes to one instance of the endpoint (a variant chosen by weight, or ``TargetVariant``); its
``Content-Type``, ``Accept`` and ``CustomAttributes`` reach the model server as sent. An error status from
the model server is ModelError (424) with its status and message, as AWS answers; no instance answering is
ServiceUnavailable. A streamed answer arrives as ``PayloadPart`` events as the model server produces it; a
stream that breaks off ends with a ``ModelStreamError`` event.

Every invocation that reaches a variant is counted in the endpoint's CloudWatch metrics
(``jobforge.core.endpoint_metrics``) once its answer has been given whole.
"""

from __future__ import annotations

import time

from anyio import to_thread

from jobforge.api.base import RequestContext, handler
from jobforge.core import hosting
from jobforge.core.errors import ServiceError
from jobforge.core.server_leases import OwnedElsewhere
from jobforge.execution.endpoint_host import Deployment, ModelFailed, NoInstance, Reply

SERVICE = "sagemaker-runtime"


def _deployment(ctx: RequestContext, name: str) -> Deployment:
    """The deployment serving the caller's endpoint (found in memory); else why none answers here."""
    deployment = ctx.runtime.endpoints.serving_named(ctx.account_id, ctx.region, name)
    if deployment is not None:
        return deployment
    endpoint = hosting.endpoint(ctx.engine, ctx.account_id, ctx.region, name)
    if endpoint is None:
        raise ServiceError("ValidationError", f"Endpoint {name} of account {ctx.account_id} not found.")
    owner = ctx.runtime.endpoints.owner_url(endpoint)
    if owner is not None:  # another server serves it: the request goes there
        raise OwnedElsewhere(owner)
    raise ServiceError("ValidationError", f"Endpoint {name} of account {ctx.account_id} is {endpoint.status}: it "
                       "serves no requests until it is InService.")


def _model_error(ctx: RequestContext, name: str, err: ModelFailed) -> ServiceError:
    side = "client" if 400 <= err.status < 500 else "server"
    group = f"/aws/sagemaker/Endpoints/{name}"
    return ServiceError("ModelError", f'Received {side} error ({err.status}) from primary with message '
                        f'"{err.message[:2000]}". See the log group {group} in account {ctx.account_id} for more '
                        "information.", 424, OriginalStatusCode=err.status, OriginalMessage=err.message[:2048],
                        LogStreamArn=f"arn:aws:logs:{ctx.region}:{ctx.account_id}:log-group:{group}")


class _Timing:
    """One invocation's clock: its start, and the time spent waiting for the client to take a streamed answer."""

    def __init__(self):
        self.at = time.time()
        self.started = time.perf_counter()
        self.client_seconds = 0.0

    def overhead(self, model_seconds: float) -> float:
        return time.perf_counter() - self.started - model_seconds - self.client_seconds


def _record(ctx: RequestContext, deployment: Deployment, name: str, variant: str, timing: _Timing,
            status: int | None, model_seconds: float | None) -> None:
    found = deployment.variant(variant)
    ctx.runtime.endpoint_metrics.record(
        ctx.account_id, ctx.region, name, variant, len(found.instances) if found else 1, timing.at, status,
        model_seconds, timing.overhead(model_seconds) if model_seconds is not None else None)


def _call(ctx: RequestContext, req: dict, stream: bool, timing: _Timing) -> tuple[Deployment, Reply]:
    if req.get("InferenceComponentName") or req.get("TargetModel") or req.get("TargetContainerHostname"):
        raise ServiceError("ValidationError", "InferenceComponentName, TargetModel and TargetContainerHostname "
                           "are not supported by jobforge: an endpoint serves one model per variant.")
    if req.get("SessionId"):
        raise ServiceError("ValidationError", "Stateful sessions (SessionId) are not supported by jobforge.")
    name = req["EndpointName"]
    deployment = _deployment(ctx, name)
    try:
        return deployment, ctx.runtime.endpoints.forward(
            deployment, req["Body"], req.get("ContentType"), req.get("Accept"), req.get("TargetVariant"),
            req.get("CustomAttributes"), stream=stream)
    except NoInstance as err:
        _record(ctx, deployment, name, err.variant, timing, None, None)
        raise ServiceError("ServiceUnavailable", str(err), 503) from None
    except ModelFailed as err:
        _record(ctx, deployment, name, err.variant, timing, err.status, err.model_seconds)
        raise _model_error(ctx, name, err) from None


def _headers(reply, content_type_member: str) -> dict:
    out = {content_type_member: reply.content_type, "InvokedProductionVariant": reply.variant}
    if reply.custom_attributes:
        out["CustomAttributes"] = reply.custom_attributes
    return out


@handler(SERVICE, "InvokeEndpoint", blocking=True)
def invoke_endpoint(ctx: RequestContext, req: dict) -> dict:
    timing = _Timing()
    deployment, reply = _call(ctx, req, False, timing)
    _record(ctx, deployment, req["EndpointName"], reply.variant, timing, 200, reply.model_seconds)
    return {"Body": reply.body, **_headers(reply, "ContentType")}


@handler(SERVICE, "InvokeEndpointWithResponseStream", blocking=True)
def invoke_endpoint_with_response_stream(ctx: RequestContext, req: dict) -> dict:
    timing = _Timing()
    deployment, reply = _call(ctx, req, True, timing)

    async def events():
        chunks, status = reply.chunks, None
        try:
            while (chunk := await to_thread.run_sync(next, chunks, None)) is not None:
                handed = time.perf_counter()
                yield "PayloadPart", {"Bytes": chunk}
                timing.client_seconds += time.perf_counter() - handed
            status = 200
        except ModelFailed as err:
            status = err.status
            raise ServiceError("ModelStreamError", err.message) from None
        finally:
            await to_thread.run_sync(chunks.close)
            # A stream the client left before its end is counted as it went as far as the model server's side
            # goes: answered (200) unless the model server's stream broke.
            _record(ctx, deployment, req["EndpointName"], reply.variant, timing, status or 200, reply.model_seconds)

    return {"Body": events(), **_headers(reply, "ContentType")}
