"""The base-model catalog: Hugging Face model directories registered under
Bedrock-style identifiers (``meta.llama3-2-1b-instruct-v1:0``), or under
SageMaker JumpStart model ids (``huggingface-reasoning-qwen3-32b``, the name
in a hub-content ARN), which AgentRFT jobs name as their base model.

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
HUB_REGISTER_HINT = "Register it with: jobforge models add {name} PATH_OR_S3_URI --data-dir DIR"
HUB_KEY = "sagemaker-hub/"  # before a JumpStart model id in the catalog's key, apart from Bedrock's ids
HUB_NAME = regex.compile(r"[a-zA-Z0-9](-*[a-zA-Z0-9]){0,62}")
HUB_CONTENT_ARN = regex.compile(r"arn:aws[a-z\-]*:sagemaker:[a-z0-9\-]+:([0-9]{12}|aws):hub-content/[^/]+/Model/"
                                r"(?P<name>[^/]+)(/[^/]+)?")
NAME_LIMIT = 20  # Bedrock's BrandedName, for names given at registration
# Bedrock's display names of the models it customizes (ListFoundationModels' modelName), by id prefix.
DISPLAY_NAMES = (
    ("anthropic.claude-3-5-sonnet", "Claude 3.5 Sonnet"), ("anthropic.claude-3-haiku", "Claude 3 Haiku"),
    ("anthropic.claude-3-sonnet", "Claude 3 Sonnet"), ("anthropic.claude-3-opus", "Claude 3 Opus"),
    ("meta.llama3-2-1b-instruct", "Llama 3.2 1B Instruct"), ("meta.llama3-2-3b-instruct", "Llama 3.2 3B Instruct"),
    ("meta.llama3-2-11b-instruct", "Llama 3.2 11B Instruct"),
    ("meta.llama3-2-90b-instruct", "Llama 3.2 90B Instruct"),
    ("meta.llama3-1-8b-instruct", "Llama 3.1 8B Instruct"), ("meta.llama3-1-70b-instruct", "Llama 3.1 70B Instruct"),
    ("meta.llama3-3-70b-instruct", "Llama 3.3 70B Instruct"),
    ("meta.llama2-13b-chat", "Llama 2 Chat 13B"), ("meta.llama2-70b-chat", "Llama 2 Chat 70B"),
    ("amazon.titan-text-lite", "Titan Text G1 - Lite"), ("amazon.titan-text-express", "Titan Text G1 - Express"),
    ("amazon.titan-text-premier", "Titan Text G1 - Premier"),
    ("amazon.nova-micro", "Nova Micro"), ("amazon.nova-lite", "Nova Lite"), ("amazon.nova-pro", "Nova Pro"),
    ("amazon.nova-premier", "Nova Premier"),
    ("cohere.command-light-text", "Command Light"), ("cohere.command-text", "Command"),
)


@dataclass(frozen=True)
class FoundationModel:
    model_id: str
    location: str
    model_name: str
    provider_name: str
    created_at: float

    def arn(self, region: str) -> str:
        return foundation_model_arn(region, self.model_id)

    @property
    def hub_model(self) -> bool:
        """A JumpStart model (AgentRFT's base models), not one of Bedrock's."""
        return self.model_id.startswith(HUB_KEY)


def foundation_model_arn(region: str, model_id: str) -> str:
    return f"arn:aws:bedrock:{region}::foundation-model/{model_id}"


def _id_pattern() -> regex.Pattern:
    from jobforge.core import service_models

    shape = service_models.service_model("bedrock").shape_for("GetFoundationModelIdentifier")
    return regex.compile(shape.metadata["pattern"])


def check_identifier(model_id: str) -> None:
    """Bedrock's foundation-model id syntax, from the model (ARNs are not ids)."""
    if model_id.startswith("arn:") or not _id_pattern().fullmatch(model_id) or len(model_id) > 140:
        raise ValueError(f"{model_id!r} is not a Bedrock model identifier: use the form provider.model-name-v1:0 "
                         "(lower-case letters, digits and '-', one '.' after the provider, optional ':' suffixes).")


def hub_model_name(identifier: str) -> str | None:
    """The JumpStart model id a hub-content ARN or a bare JumpStart id names; None for anything else
    (Bedrock's ids have a '.' after the provider, which JumpStart ids never have)."""
    found = HUB_CONTENT_ARN.fullmatch(identifier)
    if found:
        return found["name"]
    return identifier if HUB_NAME.fullmatch(identifier) else None


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


def display_name(model_id: str) -> str:
    """Bedrock's name for a model it serves, else the id's model part (``my-model-v1``), whole."""
    if model_id.startswith(HUB_KEY):
        return model_id.removeprefix(HUB_KEY)
    for prefix, name in DISPLAY_NAMES:
        if model_id.startswith(prefix):
            return name
    return model_id.partition(".")[2].split(":")[0]


def provider_display_name(model_id: str) -> str:
    if model_id.startswith(HUB_KEY):
        return "SageMaker JumpStart"
    provider = model_id.partition(".")[0]
    return PROVIDERS.get(provider, provider.capitalize())


def _legacy_default(model_id: str) -> tuple[str, str]:
    """What registration stored before names were derived on reading: cut at 20 characters."""
    return model_id.partition(".")[2].split(":")[0][:NAME_LIMIT], provider_display_name(model_id)[:NAME_LIMIT]


def _model(row) -> "FoundationModel":
    """A catalog row; a name not given at registration (stored empty) is derived from the id."""
    values = {k: v for k, v in row._mapping.items() if k != "updated_at"}
    legacy_name, legacy_provider = _legacy_default(values["model_id"])
    if values["model_name"] in ("", legacy_name):
        values["model_name"] = display_name(values["model_id"])
    if values["provider_name"] in ("", legacy_provider):
        values["provider_name"] = provider_display_name(values["model_id"])
    return FoundationModel(**values)


def _given_name(value: str | None, what: str) -> str:
    if value is None:
        return ""
    if not value.strip() or len(value) > NAME_LIMIT:
        raise ValueError(f"A {what} has 1 to {NAME_LIMIT} characters (Bedrock's limit); got {value!r}.")
    return value


def add(engine: sa.Engine, model_id: str, location: str, model_name: str | None = None,
        provider_name: str | None = None) -> FoundationModel:
    """Register (or re-point) a base model. Raises ValueError on a bad id, location or name.

    Names not given are derived from the id when the catalog is read (``display_name``), never cut short.
    A JumpStart model id (or hub-content ARN) registers a hub model.
    """
    hub_name = hub_model_name(model_id)
    if hub_name is not None:
        model_id = HUB_KEY + hub_name
    else:
        check_identifier(model_id)
    location = check_location(location)
    model_name = _given_name(model_name, "model name")
    provider_name = _given_name(provider_name, "provider name")
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
    hub_name = hub_model_name(model_id)
    if hub_name is not None:
        model_id = HUB_KEY + hub_name
    with engine.begin() as conn:
        return conn.execute(foundation_models.delete().where(foundation_models.c.model_id == model_id)).rowcount > 0


def get(engine: sa.Engine, model_id: str) -> FoundationModel | None:
    with reading(engine) as conn:
        row = conn.execute(sa.select(foundation_models).where(foundation_models.c.model_id == model_id)).first()
    return _model(row) if row else None


def hub_model(engine: sa.Engine, identifier: str) -> FoundationModel | None:
    """The registered JumpStart model a hub-content ARN (or JumpStart id) names."""
    name = hub_model_name(identifier)
    return get(engine, HUB_KEY + name) if name else None


def all_models(engine: sa.Engine) -> list[FoundationModel]:
    with reading(engine) as conn:
        rows = conn.execute(sa.select(foundation_models).order_by(foundation_models.c.model_id)).all()
    return [_model(r) for r in rows]


def model_id_of(identifier: str) -> str:
    """The model id in a foundation-model ARN, or the identifier itself."""
    if identifier.startswith("arn:") and ":foundation-model/" in identifier:
        return identifier.split(":foundation-model/", 1)[1]
    return identifier
