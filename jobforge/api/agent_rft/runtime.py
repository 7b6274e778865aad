"""The SageMaker job runtime API (``sagemakerjobruntime``): Sample, SampleWithResponseStream, CompleteRollout,
UpdateReward, forwarded to the policy server of the running job the ARN names.

The job must be an AgentRFT or AgentRFTEvaluation job of the caller's account and region; any other
ARN is not found, so another account's trajectories are unreachable. The policy server (in the job's
worker) registered its address and a secret in the job's result; the call goes there with the secret
and its answer, or its error in the runtime API's shape, comes back. A Sample whose body asks for
``stream`` and SampleWithResponseStream pass the server-sent events through as they come.

The same Sample answers at ``/chat/completions`` and ``/v1/chat/completions`` (see the router), so an
agent written with the OpenAI client reaches it with ``base_url`` set to the endpoint.
"""

from __future__ import annotations

import json
import time

import urllib3

from jobforge.api import sagemaker_jobs
from jobforge.api.agent_rft import documents
from jobforge.api.base import HEADER_MEMBERS_IN_BODY, PATH_ALIASES, RequestContext, handler
from jobforge.core import jobs
from jobforge.core.blobs import BlockingBody
from jobforge.core.errors import ServiceError

SERVICE = "sagemakerjobruntime"
CATEGORIES = (documents.TRAINING, documents.EVALUATION)
SAMPLE_SECONDS = 900  # the longest one turn may take to sample
# The SDK's bearer-token feedback client sends the job ARN in the body rather than the header.
HEADER_MEMBERS_IN_BODY[(SERVICE, "CompleteRollout")] = ("JobArn",)
HEADER_MEMBERS_IN_BODY[(SERVICE, "UpdateReward")] = ("JobArn",)
# An OpenAI client POSTs to {base_url}/chat/completions: with the endpoint, or the endpoint + "/v1", as base_url.
PATH_ALIASES["/chat/completions"] = PATH_ALIASES["/v1/chat/completions"] = (SERVICE, "Sample")
# Kept-alive connections to the running jobs' policy servers (never retried: a Sample must not run twice).
_CONNECTIONS = urllib3.PoolManager(num_pools=64, maxsize=256, retries=False)
KNOWN_SECONDS = 2.0  # how long a job's policy server is remembered without looking at the job again
_KNOWN_SERVERS: dict[tuple[str, str, str], tuple[float, dict]] = {}


def _not_found(arn: str) -> ServiceError:
    return ServiceError("ResourceNotFoundException", f"Job {arn} not found.")


def _policy_server(ctx: RequestContext, arn: str, fresh: bool = False) -> dict:
    """The running job's policy server address and secret; not found for any job the caller cannot reach.
    Remembered for a moment (a rollout's calls come in quick succession); ``fresh`` looks again."""
    key = (ctx.account_id, ctx.region, arn)
    known = _KNOWN_SERVERS.get(key)
    if known and not fresh and time.monotonic() - known[0] < KNOWN_SECONDS:
        return known[1]
    parts = arn.split(":", 5)
    resource = parts[5].split("/") if len(parts) == 6 else []
    if len(resource) != 3 or resource[1] not in CATEGORIES or parts[4] != ctx.account_id or parts[3] != ctx.region:
        raise _not_found(arn)
    kind = sagemaker_jobs.served(resource[1])
    try:
        job = jobs.get(ctx.engine, ctx.account_id, kind, resource[2], region=ctx.region)
    except ServiceError:
        raise _not_found(arn) from None
    server = job.result.get("PolicyServer")
    if job.state != "RUNNING" or not server:
        raise ServiceError("ResourceNotFoundException",
                           f"Job {arn} has no running session to sample from (its status is {job.status}).")
    if len(_KNOWN_SERVERS) > 1024:
        _KNOWN_SERVERS.clear()
    _KNOWN_SERVERS[key] = (time.monotonic(), server)
    return server


def _forward(ctx: RequestContext, arn: str, path: str, body: bytes, headers: dict | None = None):
    """The policy server's response to the call (open, for the caller to read, then release), or its error
    raised. Connections to the policy servers are kept alive between calls: a rollout makes many."""
    for fresh in (False, True):
        server = _policy_server(ctx, arn, fresh)
        try:
            response = _CONNECTIONS.request("POST", server["url"] + path, body=body, preload_content=False,
                                            timeout=urllib3.Timeout(connect=10, read=SAMPLE_SECONDS), headers={
                                                "Authorization": f"Bearer {server['secret']}",
                                                "Content-Type": "application/json", **(headers or {})})
            break
        except urllib3.exceptions.NewConnectionError as err:  # nothing was sent: look at the job again
            if fresh:
                raise ServiceError("InternalServiceError", f"The job's policy server is not reachable: {err}",
                                   500) from None
        except urllib3.exceptions.HTTPError as err:  # the worker went away: the caller's retry finds the next one
            raise ServiceError("InternalServiceError", f"The job's policy server is not reachable: {err}",
                               500) from None
    if response.status >= 400:
        try:
            detail = json.loads(response.read())
        except ValueError:
            detail = {}
        finally:
            response.release_conn()
        raise ServiceError(detail.get("code", "InternalServiceError"),
                           detail.get("message", f"The job's policy server answered {response.status}"),
                           response.status)
    return response


def _sample(ctx: RequestContext, req: dict, path: str) -> dict:
    response = _forward(ctx, req["JobArn"], path, req["Body"],
                        {"X-Amzn-SageMaker-Trajectory-Id": req["TrajectoryId"]})
    content_type = response.headers.get("Content-Type", "application/json")
    if content_type.startswith("text/event-stream"):
        return {"ContentType": content_type,
                "Body": BlockingBody(iter(lambda: response.read1(65536), b""), close=response.close)}
    try:
        return {"ContentType": content_type, "Body": response.read()}
    finally:
        response.release_conn()


@handler(SERVICE, "Sample", blocking=True)
def sample(ctx: RequestContext, req: dict) -> dict:
    return _sample(ctx, req, "/sample")


@handler(SERVICE, "SampleWithResponseStream", blocking=True)
def sample_with_response_stream(ctx: RequestContext, req: dict) -> dict:
    return _sample(ctx, req, "/sample-with-response-stream")


def _report(ctx: RequestContext, req: dict, path: str, members: tuple[str, ...]) -> dict:
    body = {name: req[name] for name in members if name in req}
    response = _forward(ctx, req["JobArn"], path, json.dumps(body).encode())
    response.read()
    response.release_conn()
    return {}


@handler(SERVICE, "CompleteRollout", blocking=True)
def complete_rollout(ctx: RequestContext, req: dict) -> dict:
    return _report(ctx, req, "/complete-rollout", ("TrajectoryId", "Status", "ClientToken"))


@handler(SERVICE, "UpdateReward", blocking=True)
def update_reward(ctx: RequestContext, req: dict) -> dict:
    return _report(ctx, req, "/update-reward", ("TrajectoryId", "Rewards", "ClientToken"))
