"""Invoke: RequestResponse (run now, answer with the result), Event (queued, 202), DryRun (204).

Limits are AWS's: 6 MB in and out for a synchronous invocation, 1 MB for an
Event. An error the function raises, or its runtime hits (a timeout, its
memory, a result that is not JSON), answers 200 with
``X-Amz-Function-Error: Unhandled`` and the error document, as on AWS.
"""

from __future__ import annotations

import base64
import binascii
import json

from jobforge.api.base import RequestContext, handler
from jobforge.api.lambda_functions.common import function_of, host, lambda_error
from jobforge.core import functions as records
from jobforge.execution.function_host import Throttled

MAX_SYNC_PAYLOAD = 6 * 1024 * 1024
MAX_EVENT_PAYLOAD = 1024 * 1024
MAX_CLIENT_CONTEXT = 3583


def _invalid_content(message: str):
    return lambda_error("InvalidRequestContentException", message, 400)


def _client_context(encoded: str | None) -> dict | None:
    if not encoded:
        return None
    if len(encoded) > MAX_CLIENT_CONTEXT:
        raise lambda_error("InvalidParameterValueException",
                           f"Client context must be at most {MAX_CLIENT_CONTEXT} bytes, base64-encoded.")
    try:
        document = json.loads(base64.b64decode(encoded, validate=True))
    except (binascii.Error, ValueError):
        document = None
    if not isinstance(document, dict):
        raise _invalid_content("Client context must be a valid Base64-encoded JSON object.")
    return document


@handler("lambda", "Invoke", blocking=True)
def invoke(ctx: RequestContext, req: dict) -> dict:
    function = function_of(ctx, req["FunctionName"], req.get("Qualifier"))
    kind = req.get("InvocationType", "RequestResponse")
    payload = req.get("Payload") or b"{}"
    limit = MAX_EVENT_PAYLOAD if kind == "Event" else MAX_SYNC_PAYLOAD
    if len(payload) > limit:
        raise lambda_error("RequestTooLargeException",
                           f"Request must be smaller than {limit} bytes for the InvokeFunction operation", 413)
    try:
        json.loads(payload)
    except (ValueError, UnicodeDecodeError) as err:
        raise _invalid_content(f"Could not parse request body into json: {err}") from None
    if function.state != records.ACTIVE:
        raise lambda_error("ResourceConflictException", "The operation cannot be performed at this time. The "
                           f"function is currently in the following state: {function.state}")
    if function.package_type == records.IMAGE and host(ctx).containers is None:
        raise lambda_error("ResourceConflictException", "The function's container image cannot run: this server "
                           "was started without a container engine (jobforge serve --container-engine docker or "
                           "podman).")
    client_context = _client_context(req.get("ClientContext"))
    if kind == "DryRun":
        return {"StatusCode": 204}
    if kind == "Event":
        host(ctx).enqueue(function, payload, ctx.request_id)
        return {"StatusCode": 202}
    invoked_arn = function.arn + (f":{req['Qualifier']}" if req.get("Qualifier") else "")
    try:
        outcome = host(ctx).invoke(function, payload, ctx.request_id, client_context, invoked_arn)
    except Throttled as err:
        raise lambda_error("TooManyRequestsException", "Rate Exceeded.", 429, Reason=err.reason) from None
    except OSError as err:
        raise lambda_error("ServiceException", f"The function's execution environment could not start: {err}",
                           500) from None
    out = {"StatusCode": 200, "Payload": outcome.payload, "ExecutedVersion": records.LATEST}
    if outcome.function_error:
        out["FunctionError"] = outcome.function_error
    if req.get("LogType") == "Tail":
        out["LogResult"] = outcome.tail()
    return out
