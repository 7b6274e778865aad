"""Bedrock Provisioned Throughputs, per account and region: a name for a model (a foundation model's context-window
variant or a custom model) that bedrock-runtime serves once it is in service.

Model units and the commitment term are recorded as bought; they set no capacity on this server.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import sqlalchemy as sa

from jobforge.core.errors import ServiceError
from jobforge.core.idempotency import ClientToken
from jobforge.core.regional_records import RegionalTable
from jobforge.core.store import metadata

CREATING, IN_SERVICE, UPDATING, FAILED = "Creating", "InService", "Updating", "Failed"
LOADING = (CREATING, UPDATING)  # the states in which the model is being brought into service
COMMITMENT_SECONDS = {"OneMonth": 30 * 86400, "SixMonths": 182 * 86400}

provisioned_models = sa.Table(
    "provisioned_models", metadata,
    sa.Column("id", sa.String(12), primary_key=True),
    sa.Column("account_id", sa.String(12), nullable=False),
    sa.Column("region", sa.String(32), nullable=False),  # the region of the request that created it
    sa.Column("name", sa.String(63), nullable=False),
    sa.Column("arn", sa.String(1011), nullable=False, unique=True),
    sa.Column("model_arn", sa.String(1011), nullable=False),  # the model served
    sa.Column("desired_model_arn", sa.String(1011), nullable=False),  # the model an update brings in
    sa.Column("foundation_model_arn", sa.String(1011), nullable=False),
    sa.Column("model_units", sa.Integer, nullable=False),
    sa.Column("desired_model_units", sa.Integer, nullable=False),
    sa.Column("status", sa.String(16), nullable=False),  # Creating | InService | Updating | Failed
    sa.Column("failure_message", sa.Text),
    sa.Column("commitment_duration", sa.String(16)),  # OneMonth | SixMonths; None: no commitment
    sa.Column("commitment_expires_at", sa.Float),
    sa.Column("created_at", sa.Float, nullable=False),
    sa.Column("updated_at", sa.Float, nullable=False),
    sa.UniqueConstraint("account_id", "region", "name", name="uq_provisioned_models_account_region_name"),
)


@dataclass
class ProvisionedModel:
    id: str
    account_id: str
    region: str
    name: str
    arn: str
    model_arn: str
    desired_model_arn: str
    foundation_model_arn: str
    model_units: int
    desired_model_units: int
    status: str
    failure_message: str | None
    commitment_duration: str | None
    commitment_expires_at: float | None
    created_at: float
    updated_at: float


def provisioned_model_arn(region: str, account_id: str, provisioned_id: str) -> str:
    return f"arn:aws:bedrock:{region}:{account_id}:provisioned-model/{provisioned_id}"


RECORDS = RegionalTable(provisioned_models, ProvisionedModel, "Provisioned Throughput")
find, get, delete, list_page = RECORDS.find, RECORDS.get, RECORDS.delete, RECORDS.page


def insert(engine: sa.Engine, model: ProvisionedModel, token: ClientToken | None = None) -> ProvisionedModel:
    return RECORDS.insert(engine, model, token, ServiceError(
        "ValidationException", f"A Provisioned Throughput named {model.name} already exists. "
        "Choose a different provisionedModelName."))


def loading(engine: sa.Engine, account_id: str, region: str) -> list[ProvisionedModel]:
    """The account's Provisioned Throughputs in the region whose model is being brought into service."""
    return RECORDS.select(engine, account_id, region, provisioned_models.c.status.in_(LOADING))


def update(engine: sa.Engine, provisioned_id: str, **values) -> None:
    with engine.begin() as conn:
        conn.execute(provisioned_models.update().where(provisioned_models.c.id == provisioned_id)
                     .values(updated_at=time.time(), **values))


def rename(engine: sa.Engine, model: ProvisionedModel, name: str) -> None:
    try:
        update(engine, model.id, name=name)
    except sa.exc.IntegrityError:
        raise ServiceError("ValidationException", f"A Provisioned Throughput named {name} already exists. "
                           "Choose a different desiredProvisionedModelName.") from None


def finish_loading(engine: sa.Engine, provisioned_id: str, model_arn: str, failure: str | None) -> None:
    """Record the end of bringing ``model_arn`` into service, unless an update asked for another model since."""
    values = {"status": FAILED, "failure_message": failure[:2048]} if failure else \
        {"status": IN_SERVICE, "failure_message": None, "model_arn": model_arn}
    with engine.begin() as conn:
        conn.execute(provisioned_models.update().where(
            provisioned_models.c.id == provisioned_id, provisioned_models.c.desired_model_arn == model_arn,
            provisioned_models.c.status.in_(LOADING)).values(updated_at=time.time(), **values))


def serving(conn: sa.Connection, account_id: str, model_arn: str) -> str | None:
    """The name of a Provisioned Throughput of the account that serves, or is being moved to, the model."""
    row = conn.execute(sa.select(provisioned_models.c.name).where(
        provisioned_models.c.account_id == account_id,
        sa.or_(provisioned_models.c.model_arn == model_arn,
               provisioned_models.c.desired_model_arn == model_arn))).first()
    return row.name if row else None
