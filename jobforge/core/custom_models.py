"""Custom models (the result of a customization job, or imported weights) and
their on-demand deployments, per account and region."""

from __future__ import annotations

import secrets
import string
import time
from dataclasses import dataclass

import sqlalchemy as sa

from jobforge.core import idempotency, provisioned_models
from jobforge.core.errors import ServiceError
from jobforge.core.idempotency import ClientToken
from jobforge.core.regional_records import RegionalTable
from jobforge.core.store import metadata, reading

custom_models = sa.Table(
    "custom_models", metadata,
    sa.Column("id", sa.String(12), primary_key=True),
    sa.Column("account_id", sa.String(12), nullable=False),
    sa.Column("region", sa.String(32), nullable=False),  # the region of the request that created it
    sa.Column("name", sa.String(63), nullable=False),
    sa.Column("arn", sa.String(1011), nullable=False, unique=True),
    sa.Column("base_model_id", sa.String(140)),
    sa.Column("job_id", sa.String(64), unique=True),  # the customization job that produced it
    sa.Column("customization_type", sa.String(32), nullable=False),
    sa.Column("location", sa.Text, nullable=False),  # S3 prefix of the Hugging Face model
    sa.Column("status", sa.String(16), nullable=False),  # Creating | Active | Failed
    sa.Column("failure_message", sa.Text),
    sa.Column("details", sa.JSON, nullable=False),  # what GetCustomModel reports about its training
    sa.Column("created_at", sa.Float, nullable=False),
    sa.UniqueConstraint("account_id", "region", "name", name="uq_custom_models_account_region_name"),
)

model_deployments = sa.Table(
    "model_deployments", metadata,
    sa.Column("id", sa.String(12), primary_key=True),
    sa.Column("account_id", sa.String(12), nullable=False),
    sa.Column("region", sa.String(32), nullable=False),
    sa.Column("name", sa.String(63), nullable=False),
    sa.Column("arn", sa.String(1011), nullable=False, unique=True),
    sa.Column("model_arn", sa.String(1011), nullable=False),
    sa.Column("status", sa.String(16), nullable=False),  # Creating | Active | Failed
    sa.Column("description", sa.Text),
    sa.Column("failure_message", sa.Text),
    sa.Column("created_at", sa.Float, nullable=False),
    sa.Column("updated_at", sa.Float, nullable=False),
    sa.UniqueConstraint("account_id", "region", "name", name="uq_model_deployments_account_region_name"),
)

IMPORTED = "imported"  # the base-model segment of an imported model's ARN


def new_resource_id() -> str:
    """Bedrock's 12 lower-case alphanumerics."""
    chars = string.ascii_lowercase + string.digits
    return "".join(secrets.choice(chars) for _ in range(12))


def custom_model_arn(region: str, account_id: str, base_model_id: str | None, model_id: str) -> str:
    return f"arn:aws:bedrock:{region}:{account_id}:custom-model/{base_model_id or IMPORTED}/{model_id}"


def deployment_arn(region: str, account_id: str, deployment_id: str) -> str:
    return f"arn:aws:bedrock:{region}:{account_id}:custom-model-deployment/{deployment_id}"


@dataclass
class CustomModel:
    id: str
    account_id: str
    region: str
    name: str
    arn: str
    base_model_id: str | None
    job_id: str | None
    customization_type: str
    location: str
    status: str
    failure_message: str | None
    details: dict
    created_at: float


@dataclass
class Deployment:
    id: str
    account_id: str
    region: str
    name: str
    arn: str
    model_arn: str
    status: str
    description: str | None
    failure_message: str | None
    created_at: float
    updated_at: float


def name_taken(engine: sa.Engine, account_id: str, region: str, name: str) -> bool:
    with reading(engine) as conn:
        return conn.execute(sa.select(custom_models.c.id).where(
            custom_models.c.account_id == account_id, custom_models.c.region == region,
            custom_models.c.name == name)).first() is not None


def insert_model(engine: sa.Engine, model: CustomModel, token: ClientToken | None = None) -> CustomModel:
    """Insert once: a model already recorded for the same job (or id) is returned as it is.
    ``token`` is the request's client token, written in the same transaction."""
    try:
        with engine.begin() as conn:
            conn.execute(custom_models.insert().values(vars(model)))
            idempotency.remember(conn, token, model.arn)
    except sa.exc.IntegrityError:
        with reading(engine) as conn:
            row = conn.execute(sa.select(custom_models).where(sa.or_(
                custom_models.c.id == model.id,
                custom_models.c.job_id == model.job_id if model.job_id else sa.false()))).first()
        if row is None:
            raise ServiceError("ConflictException",
                               f"A custom model named {model.name} already exists. Choose a different name.") from None
        return CustomModel(**row._mapping)
    return model


MODELS = RegionalTable(custom_models, CustomModel, "Custom model")
DEPLOYMENTS = RegionalTable(model_deployments, Deployment, "Custom model deployment")
find_model, get_model, list_models = MODELS.find, MODELS.get, MODELS.page
find_deployment, get_deployment, list_deployments = DEPLOYMENTS.find, DEPLOYMENTS.get, DEPLOYMENTS.page
delete_deployment = DEPLOYMENTS.delete


def models_with_jobs(engine: sa.Engine, job_ids: list[str]) -> dict[str, CustomModel]:
    if not job_ids:
        return {}
    with reading(engine) as conn:
        rows = conn.execute(sa.select(custom_models).where(custom_models.c.job_id.in_(job_ids))).all()
    return {r.job_id: CustomModel(**r._mapping) for r in rows}


def set_status(engine: sa.Engine, model_id: str, status: str, failure_message: str | None = None) -> None:
    with engine.begin() as conn:
        conn.execute(custom_models.update().where(custom_models.c.id == model_id)
                     .values(status=status, failure_message=failure_message))


def delete_model(engine: sa.Engine, model: CustomModel) -> None:
    with engine.begin() as conn:
        in_use = conn.execute(sa.select(model_deployments.c.name).where(
            model_deployments.c.account_id == model.account_id, model_deployments.c.model_arn == model.arn)).first()
        if in_use:
            raise ServiceError("ConflictException", f"Custom model {model.name} is used by deployment "
                               f"{in_use.name}; delete the deployment first.")
        provisioned = provisioned_models.serving(conn, model.account_id, model.arn)
        if provisioned:
            raise ServiceError("ConflictException", f"Custom model {model.name} is used by Provisioned Throughput "
                               f"{provisioned}; delete the Provisioned Throughput first.")
        conn.execute(custom_models.delete().where(custom_models.c.id == model.id))


def insert_deployment(engine: sa.Engine, deployment: Deployment, token: ClientToken | None = None) -> Deployment:
    return DEPLOYMENTS.insert(engine, deployment, token, ServiceError(
        "ConflictException", f"A custom model deployment named {deployment.name} already exists. "
        "Choose a different name."))


def creating_deployments(engine: sa.Engine, account_id: str, region: str) -> list[Deployment]:
    """The account's deployments in the region whose model is being brought into service."""
    return DEPLOYMENTS.select(engine, account_id, region, model_deployments.c.status == "Creating")


def finish_deployment(engine: sa.Engine, deployment_id: str, failure: str | None) -> None:
    """A deployment whose model was being brought into service: Active, or Failed with the reason."""
    values = {"status": "Failed", "failure_message": failure[:2048]} if failure else {"status": "Active"}
    with engine.begin() as conn:
        conn.execute(model_deployments.update().where(
            model_deployments.c.id == deployment_id, model_deployments.c.status == "Creating").values(
            updated_at=time.time(), **values))



