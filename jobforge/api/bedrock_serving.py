"""Bringing a model into service for a Provisioned Throughput or a custom-model deployment.

The record is stored first (``Creating``, or ``Updating`` for a Provisioned Throughput moved to another
model); a thread of the server then copies the model's weights out of S3 when they live there (with the
owning account's access, as bedrock-runtime does) and loads them in the inference process. The record then
becomes ``InService`` (``Active`` for a deployment), or ``Failed`` with the reason. A server stopped meanwhile
leaves the record as it was; the next request that reads the account's records in that region starts the work
again.
"""

from __future__ import annotations

import logging
import threading
from typing import Callable

from jobforge.api import bedrock_objects
from jobforge.api.base import RequestContext
from jobforge.api.bedrock_common import resolve_model
from jobforge.core import custom_models as cm
from jobforge.core import provisioned_models as pm
from jobforge.core.errors import ServiceError
from jobforge.execution.inference import TooManyGenerations

log = logging.getLogger(__name__)

_bringing_in: set[str] = set()  # ARNs of the records this server process is bringing into service
_lock = threading.Lock()


def resume(ctx: RequestContext) -> None:
    """Bring in the models of the account's records in the request's region left loading (by a server that
    stopped, or just created)."""
    for provisioned in pm.loading(ctx.engine, ctx.account_id, ctx.region):
        _start(ctx, provisioned.arn, provisioned.desired_model_arn,
               lambda failure, p=provisioned: pm.finish_loading(ctx.engine, p.id, p.desired_model_arn, failure))
    for deployment in cm.creating_deployments(ctx.engine, ctx.account_id, ctx.region):
        _start(ctx, deployment.arn, deployment.model_arn,
               lambda failure, d=deployment: cm.finish_deployment(ctx.engine, d.id, failure))


def _start(ctx: RequestContext, arn: str, model_arn: str, finish: Callable[[str | None], None]) -> None:
    with _lock:
        if arn in _bringing_in:
            return
        _bringing_in.add(arn)
    threading.Thread(target=_bring_in, args=(ctx, arn, model_arn, finish), name=f"bring-in {arn}",
                     daemon=True).start()


def _bring_in(ctx: RequestContext, arn: str, model_arn: str, finish: Callable[[str | None], None]) -> None:
    try:
        finish(_load(ctx, model_arn))
    except Exception:  # a failure to record the outcome leaves the record loading, for the next request to retry
        log.exception("Bringing %s into service failed", arn)
    finally:
        with _lock:
            _bringing_in.discard(arn)


def _load(ctx: RequestContext, model_arn: str) -> str | None:
    """None once the model is loaded in the inference process, else why it could not be."""
    try:
        model = resolve_model(ctx, model_arn)
        model_dir = bedrock_objects.model_dir(ctx, model.location)
        replies = list(ctx.runtime.inference.load(str(model_dir), ctx.account_id).replies())
    except ServiceError as err:
        return err.message
    except TooManyGenerations:
        return "The inference host is busy with this account's generations; try again."
    return replies[-1].get("error") if replies else "The model could not be loaded."
