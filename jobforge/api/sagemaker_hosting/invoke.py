"""sagemaker-runtime InvokeEndpoint and InvokeEndpointWithResponseStream.

The request goes to one instance of the endpoint (a variant chosen by weight, or ``TargetVariant``); its
``Content-Type``, ``Accept`` and ``CustomAttributes`` reach the model server as sent. An error status from
the model server is ModelError (424) with its status and message, as AWS answers; no instance answering is
ServiceUnavailable. A streamed answer arrives as ``PayloadPart`` events as the model server produces it; a
stream that breaks off ends with a ``ModelStreamError`` event.
"""

from __future__ import annotations

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


def _call(ctx: RequestContext, req: dict, stream: bool) -> Reply:
    if req.get("InferenceComponentName") or req.get("TargetModel") or req.get("TargetContainerHostname"):
        raise ServiceError("ValidationError", "InferenceComponentName, TargetModel and TargetContainerHostname "
                           "are not supported by jobforge: an endpoint serves one model per variant.")
    if req.get("SessionId"):
        raise ServiceError("ValidationError", "Stateful sessions (SessionId) are not supported by jobforge.")
    deployment = _deployment(ctx, req["EndpointName"])
    try:
        return ctx.runtime.endpoints.forward(deployment, req["Body"], req.get("ContentType"), req.get("Accept"),
                                             req.get("TargetVariant"), req.get("CustomAttributes"), stream=stream)
    except NoInstance as err:
        raise ServiceError("ServiceUnavailable", str(err), 503) from None
    except ModelFailed as err:
        raise _model_error(ctx, req["EndpointName"], err) from None


def _headers(reply, content_type_member: str) -> dict:
    out = {content_type_member: reply.content_type, "InvokedProductionVariant": reply.variant}
    if reply.custom_attributes:
        out["CustomAttributes"] = reply.custom_attributes
    return out


@handler(SERVICE, "InvokeEndpoint", blocking=True)
def invoke_endpoint(ctx: RequestContext, req: dict) -> dict:
    reply = _call(ctx, req, stream=False)
    return {"Body": reply.body, **_headers(reply, "ContentType")}


@handler(SERVICE, "InvokeEndpointWithResponseStream", blocking=True)
def invoke_endpoint_with_response_stream(ctx: RequestContext, req: dict) -> dict:
    reply = _call(ctx, req, stream=True)

    async def events():
        chunks = reply.chunks
        try:
            while (chunk := await to_thread.run_sync(next, chunks, None)) is not None:
                yield "PayloadPart", {"Bytes": chunk}
        except ModelFailed as err:
            raise ServiceError("ModelStreamError", err.message) from None
        finally:
            await to_thread.run_sync(chunks.close)

    return {"Body": events(), **_headers(reply, "ContentType")}
