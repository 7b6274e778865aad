"""SageMaker MLflow Apps, per account and region, and the one-use URLs and browser sessions that open them.

An app is one workspace of the server's MLflow tracking store (``mlflow_tracking``), named after the app's id,
so that its experiments, runs and artifacts are its own. A presigned URL carries a token that opens one
browser session of the app; only digests of tokens are kept. A token of an expired or used URL, or of an
expired session, opens nothing.
"""

from __future__ import annotations

import hashlib
import secrets
import time
import uuid
from dataclasses import dataclass

import sqlalchemy as sa

from jobforge.core import sagemaker_tags, tags
from jobforge.core.errors import ServiceError
from jobforge.core.regional_records import RegionalTable
from jobforge.core.store import metadata, reading

CREATED = "Created"
UPDATED = "Updated"
URL = "url"
SESSION = "session"

mlflow_apps = sa.Table(
    "mlflow_apps", metadata,
    sa.Column("id", sa.String(32), primary_key=True),  # app-<hex>: the ARN's resource id and the workspace name
    sa.Column("account_id", sa.String(12), nullable=False),
    sa.Column("region", sa.String(32), nullable=False),
    sa.Column("name", sa.String(256), nullable=False),
    sa.Column("arn", sa.String(2048), nullable=False, unique=True),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("spec", sa.JSON, nullable=False),  # the settings Create and Update take
    # Two of them again, for ListMlflowApps' filters: ENABLED or DISABLED, and ",d-1,d-2," (DefaultDomainIdList)
    sa.Column("account_default_status", sa.String(8), nullable=False),
    sa.Column("default_domains", sa.Text, nullable=False),
    sa.Column("created_by", sa.JSON, nullable=False),
    sa.Column("last_modified_by", sa.JSON, nullable=False),
    sa.Column("created_at", sa.Float, nullable=False),
    sa.Column("updated_at", sa.Float, nullable=False),
    sa.Index("ix_mlflow_apps_account_region", "account_id", "region"),
)
sagemaker_tags.register("mlflow-app", mlflow_apps)

mlflow_app_tokens = sa.Table(
    "mlflow_app_tokens", metadata,
    sa.Column("token_hash", sa.String(64), primary_key=True),
    sa.Column("kind", sa.String(8), nullable=False),  # URL (a presigned URL's) or SESSION (a browser's cookie)
    sa.Column("app_id", sa.String(32), nullable=False, index=True),
    sa.Column("session_seconds", sa.Integer),  # for a URL: how long the session it opens lasts
    sa.Column("expires_at", sa.Float, nullable=False),
)


@dataclass(frozen=True)
class App:
    id: str
    account_id: str
    region: str
    name: str
    arn: str
    status: str
    spec: dict
    account_default_status: str
    default_domains: str
    created_by: dict
    last_modified_by: dict
    created_at: float
    updated_at: float

    @property
    def workspace(self) -> str:
        return self.id


APPS = RegionalTable(mlflow_apps, App, "MLflow App")


def app_arn(region: str, account_id: str, app_id: str) -> str:
    return f"arn:aws:sagemaker:{region}:{account_id}:mlflow-app/{app_id}"


def arn_parts(arn: str) -> tuple[str, str, str] | None:
    """(region, account, app id) of an MLflow App ARN; None for anything else."""
    parts = arn.split(":", 5)
    if len(parts) != 6 or parts[2] != "sagemaker" or not parts[5].startswith("mlflow-app/"):
        return None
    return parts[3], parts[4], parts[5].removeprefix("mlflow-app/")


def not_found(arn: str) -> ServiceError:
    return ServiceError("ResourceNotFound", f"MLflow App {arn} does not exist.")


def _domains(spec: dict) -> str:
    return "," + ",".join(spec.get("DefaultDomainIdList", [])) + ","


def new_app(account_id: str, region: str, name: str, spec: dict, created_by: dict) -> App:
    app_id = "app-" + uuid.uuid4().hex[:12]
    now = time.time()
    return App(app_id, account_id, region, name, app_arn(region, account_id, app_id), CREATED, spec,
               spec["AccountDefaultStatus"], _domains(spec), created_by, created_by, now, now)


def insert(engine: sa.Engine, app: App, tag_list: list[dict]) -> None:
    with engine.begin() as conn:
        conn.execute(mlflow_apps.insert().values(vars(app)))
        if tag_list:
            tags.put(conn, app.account_id, app.arn, sagemaker_tags.requested(tag_list))


def get(engine: sa.Engine, account_id: str, region: str, arn: str) -> App:
    """The app an ARN names in the caller's account and region; else ResourceNotFound."""
    found = APPS.find(engine, account_id, region, arn)
    if found is None:
        raise not_found(arn)
    return found


def by_id(engine: sa.Engine, app_id: str) -> App | None:
    with reading(engine) as conn:
        row = conn.execute(sa.select(mlflow_apps).where(mlflow_apps.c.id == app_id)).first()
    return App(**row._mapping) if row else None


def update(engine: sa.Engine, app: App, spec: dict, name: str, modified_by: dict) -> None:
    with engine.begin() as conn:
        conn.execute(mlflow_apps.update().where(mlflow_apps.c.id == app.id).values(
            spec=spec, name=name, status=UPDATED, account_default_status=spec["AccountDefaultStatus"],
            default_domains=_domains(spec), last_modified_by=modified_by, updated_at=time.time()))


def delete(engine: sa.Engine, app: App) -> None:
    with engine.begin() as conn:
        conn.execute(mlflow_apps.delete().where(mlflow_apps.c.id == app.id))
        conn.execute(mlflow_app_tokens.delete().where(mlflow_app_tokens.c.app_id == app.id))
        tags.remove(conn, app.arn)


def account_default(engine: sa.Engine, account_id: str, region: str) -> App | None:
    found = APPS.select(engine, account_id, region, mlflow_apps.c.account_default_status == "ENABLED")
    return found[0] if found else None


# -- presigned URLs and sessions -------------------------------------------------------------------

def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def _issue(engine: sa.Engine, kind: str, app_id: str, seconds: float, session_seconds: int | None = None) -> str:
    token = secrets.token_urlsafe(32)
    now = time.time()
    with engine.begin() as conn:
        conn.execute(mlflow_app_tokens.delete().where(mlflow_app_tokens.c.expires_at < now))
        conn.execute(mlflow_app_tokens.insert().values(token_hash=_digest(token), kind=kind, app_id=app_id,
                                                       session_seconds=session_seconds, expires_at=now + seconds))
    return token


def presign(engine: sa.Engine, app: App, expires_in: int, session_seconds: int) -> str:
    """The token of a presigned URL: it opens one session of ``session_seconds`` within ``expires_in``."""
    return _issue(engine, URL, app.id, expires_in, session_seconds)


def open_session(engine: sa.Engine, app_id: str, url_token: str) -> tuple[str, int] | None:
    """(session token, its lifetime in seconds) for a presigned URL's token, which is spent; None when the
    token is unknown, already used, expired, or another app's."""
    with engine.begin() as conn:
        row = conn.execute(sa.select(mlflow_app_tokens).where(
            mlflow_app_tokens.c.token_hash == _digest(url_token), mlflow_app_tokens.c.kind == URL,
            mlflow_app_tokens.c.app_id == app_id, mlflow_app_tokens.c.expires_at > time.time())).first()
        if row is None:
            return None
        spent = conn.execute(mlflow_app_tokens.delete().where(
            mlflow_app_tokens.c.token_hash == row.token_hash)).rowcount
    if not spent:  # another request used it first
        return None
    seconds = row.session_seconds
    return _issue(engine, SESSION, app_id, seconds), seconds


def session_app(engine: sa.Engine, app_id: str, session_token: str) -> App | None:
    """The app a browser session opens, while the session lasts and the app exists."""
    with reading(engine) as conn:
        row = conn.execute(sa.select(mlflow_app_tokens.c.app_id).where(
            mlflow_app_tokens.c.token_hash == _digest(session_token), mlflow_app_tokens.c.kind == SESSION,
            mlflow_app_tokens.c.app_id == app_id, mlflow_app_tokens.c.expires_at > time.time())).first()
    return by_id(engine, app_id) if row else None
