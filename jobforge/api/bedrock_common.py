"""What Bedrock's job and model modules share: the resolution of a model identifier to the weights it
names (for customization jobs and for bedrock-runtime), timestamps, and client tokens."""

from __future__ import annotations

from dataclasses import dataclass

from jobforge.api.base import RequestContext
from jobforge.core import custom_models as cm
from jobforge.core import idempotency, models_catalog, provisioned_models
from jobforge.core.errors import validation_error
from jobforge.core.idempotency import ClientToken

INVALID_MODEL = "The provided model identifier is invalid."


def epoch(req: dict, key: str) -> float | None:
    return req[key].timestamp() if key in req else None


# -- resolution ---------------------------------------------------------------
@dataclass(frozen=True)
class ResolvedModel:
    family_id: str  # the foundation-model id whose family rules apply
    location: str  # local directory or S3 prefix of the Hugging Face model
    arn: str  # the foundation-model or custom-model ARN
    custom: cm.CustomModel | None = None


def foundation(ctx: RequestContext, identifier: str) -> ResolvedModel | None:
    model_id = models_catalog.model_id_of(identifier)
    found = models_catalog.get(ctx.engine, model_id)
    if found is None:
        return None
    return ResolvedModel(found.model_id, found.location, found.arn(ctx.region))


def is_foundation_identifier(identifier: str) -> bool:
    """A foundation-model id (``provider.name-v1:0``) or ARN, not a custom model, deployment or name."""
    if identifier.startswith("arn:"):
        return ":foundation-model/" in identifier
    return "." in identifier


def unregistered(identifier: str) -> str:
    """Bedrock's wording for a model that does not exist; the way to register one only for foundation models."""
    if not is_foundation_identifier(identifier):
        return INVALID_MODEL
    model_id = models_catalog.model_id_of(identifier)
    return (f"{INVALID_MODEL} Model {model_id} is not registered on this server. "
            + models_catalog.REGISTER_HINT.format(model_id=model_id))


def resolve_model(ctx: RequestContext, identifier: str, custom_allowed: bool = True) -> ResolvedModel:
    """A foundation model (id or ARN) or, when allowed, an Active custom model (ARN or name)."""
    found = foundation(ctx, identifier)
    if found is not None:
        return found
    if custom_allowed and ":foundation-model/" not in identifier:
        model = cm.find_model(ctx.engine, ctx.account_id, ctx.region, identifier)
        if model is not None:
            return _custom(model)
    raise validation_error(unregistered(identifier))


def _custom(model: cm.CustomModel) -> ResolvedModel:
    if model.status != "Active":
        raise validation_error(f"Custom model {model.name} is {model.status}, not Active.")
    return ResolvedModel(model.base_model_id or "", model.location, model.arn, model)


def resolve_for_inference(ctx: RequestContext, model_id: str) -> ResolvedModel:
    """bedrock-runtime's modelId: a foundation model, a custom model, a custom-model deployment or a
    Provisioned Throughput (by its ARN)."""
    if ":provisioned-model/" in model_id:
        return _provisioned(ctx, model_id)
    if ":custom-model-deployment/" in model_id or (not model_id.startswith("arn:") and "." not in model_id):
        deployment = cm.find_deployment(ctx.engine, ctx.account_id, ctx.region, model_id)
        if deployment is not None:
            if deployment.status != "Active":
                _resume_serving(ctx)
                raise validation_error(f"Deployment {deployment.name} is {deployment.status}, not Active.")
            model = cm.find_model(ctx.engine, ctx.account_id, ctx.region, deployment.model_arn)
            if model is None:
                raise validation_error(INVALID_MODEL)
            return _custom(model)
        if model_id.startswith("arn:"):  # a deployment that does not exist (or was deleted)
            raise validation_error(INVALID_MODEL)
    if ":inference-profile/" in model_id:
        raise validation_error(f"{INVALID_MODEL} Inference profiles are not served here; use a foundation model, "
                               "a custom model, a custom-model deployment or a Provisioned Throughput.")
    return resolve_model(ctx, model_id)


def _provisioned(ctx: RequestContext, arn: str) -> ResolvedModel:
    """The model a Provisioned Throughput serves: the one it was bought for (or moved to), once in service, and
    the earlier one while an update brings in the next."""
    provisioned = provisioned_models.find(ctx.engine, ctx.account_id, ctx.region, arn)
    if provisioned is None:
        raise validation_error(INVALID_MODEL)
    if provisioned.status in provisioned_models.LOADING:
        _resume_serving(ctx)
    if provisioned.status not in (provisioned_models.IN_SERVICE, provisioned_models.UPDATING):
        raise validation_error(f"Provisioned Throughput {provisioned.name} is {provisioned.status}, not InService.")
    return resolve_model(ctx, provisioned.model_arn)


def replayed(ctx: RequestContext, token: ClientToken | None) -> str | None:
    """The ARN created earlier with this client token, or a ConflictException for other parameters."""
    return idempotency.earlier(ctx.engine, token, idempotency.reused("ConflictException"))


def _resume_serving(ctx: RequestContext) -> None:
    from jobforge.api import bedrock_serving  # which resolves models with this module

    bedrock_serving.resume(ctx)
