"""The base-model catalog: Hugging Face model directories registered under
Bedrock-style identifiers (``meta.llama3-2-1b-instruct-v1:0``).

A location is a local directory or an S3 prefix. The catalog is global to the
server, like Bedrock's foundation models are to a region; `jobforge models
add` writes it while the server runs, and every request reads it afresh.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import regex
import sqlalchemy as sa

from jobforge.core.store import metadata, reading

foundation_models = sa.Table(
    "foundation_models", metadata,
    sa.Column("model_id", sa.String(140), primary_key=True),
    sa.Column("location", sa.Text, nullable=False),
    sa.Column("model_name", sa.String(20), nullable=False),
    sa.Column("provider_name", sa.String(20), nullable=False),
    sa.Column("created_at", sa.Float, nullable=False),
    sa.Column("updated_at", sa.Float, nullable=False),
)

PROVIDERS = {"amazon": "Amazon", "meta": "Meta", "anthropic": "Anthropic", "cohere": "Cohere",
             "mistral": "Mistral AI", "ai21": "AI21 Labs", "deepseek": "DeepSeek", "qwen": "Qwen"}
REGISTER_HINT = "Register it with: jobforge models add {model_id} PATH_OR_S3_URI --data-dir DIR"


@dataclass(frozen=True)
class FoundationModel:
    model_id: str
    location: str
    model_name: str
    provider_name: str
    created_at: float

    def arn(self, region: str) -> str:
        return foundation_model_arn(region, self.model_id)


def foundation_model_arn(region: str, model_id: str) -> str:
    return f"arn:aws:bedrock:{region}::foundation-model/{model_id}"


def _id_pattern() -> regex.Pattern:
    from jobforge.server.protocol import models

    shape = models.service_model("bedrock").shape_for("GetFoundationModelIdentifier")
    return regex.compile(shape.metadata["pattern"])


def check_identifier(model_id: str) -> None:
    """Bedrock's foundation-model id syntax, from the model (ARNs are not ids)."""
    if model_id.startswith("arn:") or not _id_pattern().fullmatch(model_id) or len(model_id) > 140:
        raise ValueError(f"{model_id!r} is not a Bedrock model identifier: use the form provider.model-name-v1:0 "
                         "(lower-case letters, digits and '-', one '.' after the provider, optional ':' suffixes).")


def check_location(location: str) -> str:
    """An S3 prefix as given, or a local directory (made absolute) holding a Hugging Face model."""
    if location.startswith("s3://"):
        if len(location) <= len("s3://") or location[5] == "/":
            raise ValueError(f"{location!r} names no bucket.")
        return location.rstrip("/") + "/"
    path = Path(location).expanduser().absolute()
    if not (path / "config.json").is_file():
        raise ValueError(f"{path} is not a Hugging Face model directory (no config.json).")
    return str(path)


def add(engine: sa.Engine, model_id: str, location: str, model_name: str | None = None,
        provider_name: str | None = None) -> FoundationModel:
    """Register (or re-point) a base model. Raises ValueError on a bad id or location."""
    check_identifier(model_id)
    location = check_location(location)
    provider, _, rest = model_id.partition(".")
    model_name = (model_name or rest.split(":")[0])[:20]
    provider_name = (provider_name or PROVIDERS.get(provider, provider.capitalize()))[:20]
    now = time.time()
    with engine.begin() as conn:
        existing = conn.execute(sa.select(foundation_models.c.created_at)
                                .where(foundation_models.c.model_id == model_id)).first()
        values = dict(location=location, model_name=model_name, provider_name=provider_name, updated_at=now)
        if existing:
            conn.execute(foundation_models.update().where(foundation_models.c.model_id == model_id).values(values))
        else:
            conn.execute(foundation_models.insert().values(model_id=model_id, created_at=now, **values))
    return get(engine, model_id)


def remove(engine: sa.Engine, model_id: str) -> bool:
    with engine.begin() as conn:
        return conn.execute(foundation_models.delete().where(foundation_models.c.model_id == model_id)).rowcount > 0


def get(engine: sa.Engine, model_id: str) -> FoundationModel | None:
    with reading(engine) as conn:
        row = conn.execute(sa.select(foundation_models).where(foundation_models.c.model_id == model_id)).first()
    return FoundationModel(**{k: v for k, v in row._mapping.items() if k != "updated_at"}) if row else None


def all_models(engine: sa.Engine) -> list[FoundationModel]:
    with reading(engine) as conn:
        rows = conn.execute(sa.select(foundation_models).order_by(foundation_models.c.model_id)).all()
    return [FoundationModel(**{k: v for k, v in r._mapping.items() if k != "updated_at"}) for r in rows]


def model_id_of(identifier: str) -> str:
    """The model id in a foundation-model ARN, or the identifier itself."""
    if identifier.startswith("arn:") and ":foundation-model/" in identifier:
        return identifier.split(":foundation-model/", 1)[1]
    return identifier
