"""SageMaker MLflow Apps: CreateMlflowApp, DescribeMlflowApp, ListMlflowApps, UpdateMlflowApp, DeleteMlflowApp,
CreatePresignedMlflowAppUrl.

Each app is a workspace of the server's MLflow tracking server (``jobforge.core.mlflow_tracking``), ready when
CreateMlflowApp returns (``Created``; ``Updated`` after an update). Clients reach its tracking API at the
server's own endpoint (``SAGEMAKER_MLFLOW_CUSTOM_ENDPOINT``) with SigV4 and the ``x-sm-mlflow-app-arn`` header,
as the sagemaker-mlflow plugin sends them, and browsers reach its UI through a presigned URL. Artifacts are
kept by the server (under its data dir), not in ``ArtifactStoreUri``, which is recorded as given. Refused:
``KmsKeyId`` (jobforge has no KMS keys) and ``AutoModelRegistrationEnabled`` (models registered in an app are
not copied to the SageMaker model registry).
"""

from __future__ import annotations

from jobforge.api.base import RequestContext, handler
from jobforge.api.roles import require_role
from jobforge.core import mlflow_apps, mlflow_tracking
from jobforge.core.errors import ServiceError, validation_error
from jobforge.core.mlflow_apps import mlflow_apps as apps_table
from jobforge.core.timestamps import from_epoch

URL_PATH = "/_jobforge/mlflow/{app_id}/auth"
DEFAULT_URL_SECONDS = 300
DEFAULT_SESSION_SECONDS = 43200
DEFAULT_PAGE = 10
SETTINGS = ("ArtifactStoreUri", "RoleArn", "ModelRegistrationMode", "WeeklyMaintenanceWindowStart",
            "AccountDefaultStatus", "DefaultDomainIdList")
SORT_COLUMNS = {"Name": "name", "CreationTime": "created_at", "Status": "status"}


def _version() -> str:
    try:
        return mlflow_tracking.version()
    except mlflow_tracking.MlflowUnavailable as err:
        raise validation_error(str(err)) from None


def _identity(ctx: RequestContext) -> dict:
    return {"IamIdentity": {"Arn": ctx.principal_arn}}


def _check_settings(ctx: RequestContext, req: dict, app: mlflow_apps.App | None = None) -> None:
    if req.get("ModelRegistrationMode") == "AutoModelRegistrationEnabled":
        raise validation_error("ModelRegistrationMode AutoModelRegistrationEnabled is not supported by jobforge: "
                               "models registered in an MLflow App are not copied to the SageMaker model registry.")
    if "RoleArn" in req:
        require_role(ctx, req["RoleArn"], "ValidationException", 400)
    if req.get("AccountDefaultStatus") == "ENABLED":
        default = mlflow_apps.account_default(ctx.engine, ctx.account_id, ctx.region)
        if default is not None and (app is None or default.id != app.id):
            raise ServiceError("ConflictException", f"MLflow App {default.arn} is already the account's default; "
                               "set its AccountDefaultStatus to DISABLED first.")


def _app(ctx: RequestContext, arn: str) -> mlflow_apps.App:
    return mlflow_apps.get(ctx.engine, ctx.account_id, ctx.region, arn)


@handler("sagemaker", "CreateMlflowApp", blocking=True)
def create_mlflow_app(ctx: RequestContext, req: dict) -> dict:
    if req.get("KmsKeyId"):
        raise validation_error("KmsKeyId is not supported by jobforge: it has no KMS keys to encrypt an MLflow "
                               "App with.")
    _version()
    _check_settings(ctx, req)
    spec = {key: req[key] for key in SETTINGS if key in req}
    spec.setdefault("ModelRegistrationMode", "AutoModelRegistrationDisabled")
    spec.setdefault("AccountDefaultStatus", "DISABLED")
    app = mlflow_apps.new_app(ctx.account_id, ctx.region, req["Name"], spec, _identity(ctx))
    server = mlflow_tracking.tracking_server(ctx.settings)
    server.create_workspace(app.workspace, f"MLflow App {app.name} ({app.arn})")
    try:
        mlflow_apps.insert(ctx.engine, app, req.get("Tags") or [])
    except Exception:
        server.delete_workspace(app.workspace)
        raise
    return {"Arn": app.arn}


@handler("sagemaker", "DescribeMlflowApp")
def describe_mlflow_app(ctx: RequestContext, req: dict) -> dict:
    app = _app(ctx, req["Arn"])
    return {**app.spec, "Arn": app.arn, "Name": app.name, "MlflowVersion": _version(), "Status": app.status,
            "CreationTime": from_epoch(app.created_at), "CreatedBy": app.created_by,
            "LastModifiedTime": from_epoch(app.updated_at), "LastModifiedBy": app.last_modified_by}


@handler("sagemaker", "ListMlflowApps")
def list_mlflow_apps(ctx: RequestContext, req: dict) -> dict:
    version = _version()
    if req.get("MlflowVersion") and req["MlflowVersion"] != version:
        return {"Summaries": []}  # every app runs the server's MLflow
    conditions, bind = [], {}
    if "CreatedAfter" in req:
        conditions.append(apps_table.c.created_at > req["CreatedAfter"].timestamp())
    if "CreatedBefore" in req:
        conditions.append(apps_table.c.created_at < req["CreatedBefore"].timestamp())
    if "Status" in req:
        conditions.append(apps_table.c.status == req["Status"])
    if "AccountDefaultStatus" in req:
        conditions.append(apps_table.c.account_default_status == req["AccountDefaultStatus"])
    if "DefaultForDomainId" in req:
        conditions.append(apps_table.c.default_domains.contains(f",{req['DefaultForDomainId']},", autoescape=True))
    for key in ("CreatedAfter", "CreatedBefore", "Status", "AccountDefaultStatus", "DefaultForDomainId",
                "MlflowVersion"):
        if key in req:
            bind[key] = str(req[key])
    page = mlflow_apps.APPS.page(
        ctx.engine, ctx.account_id, ctx.region, conditions=conditions, bind=bind,
        ascending=req.get("SortOrder", "Descending") == "Ascending", limit=req.get("MaxResults", DEFAULT_PAGE),
        token=req.get("NextToken"), bad_token=validation_error,
        sort=SORT_COLUMNS[req.get("SortBy", "CreationTime")])
    summaries = [{"Arn": app.arn, "Name": app.name, "Status": app.status, "CreationTime": from_epoch(app.created_at),
                  "LastModifiedTime": from_epoch(app.updated_at), "MlflowVersion": version} for app in page.rows]
    out = {"Summaries": summaries}
    if page.next_token:
        out["NextToken"] = page.next_token
    return out


@handler("sagemaker", "UpdateMlflowApp")
def update_mlflow_app(ctx: RequestContext, req: dict) -> dict:
    app = _app(ctx, req["Arn"])
    if req.get("ModelRegistrationMode") == "AutoModelRegistrationEnabled" or "AccountDefaultStatus" in req:
        _check_settings(ctx, req, app)
    spec = dict(app.spec, **{key: req[key] for key in SETTINGS if key in req})
    mlflow_apps.update(ctx.engine, app, spec, req.get("Name", app.name), _identity(ctx))
    return {"Arn": app.arn}


@handler("sagemaker", "DeleteMlflowApp", blocking=True)
def delete_mlflow_app(ctx: RequestContext, req: dict) -> dict:
    app = _app(ctx, req["Arn"])
    mlflow_apps.delete(ctx.engine, app)
    mlflow_tracking.tracking_server(ctx.settings).delete_workspace(app.workspace)
    return {"Arn": app.arn}


@handler("sagemaker", "CreatePresignedMlflowAppUrl")
def create_presigned_mlflow_app_url(ctx: RequestContext, req: dict) -> dict:
    """A URL of the server as the caller reached it: it opens one browser session of the app's UI."""
    app = _app(ctx, req["Arn"])
    token = mlflow_apps.presign(ctx.engine, app, req.get("ExpiresInSeconds", DEFAULT_URL_SECONDS),
                                req.get("SessionExpirationDurationInSeconds", DEFAULT_SESSION_SECONDS))
    host = ctx.headers.get("host") or ctx.settings.endpoint_url.split("://", 1)[1]
    return {"AuthorizedUrl": f"{ctx.settings.scheme}://{host}{URL_PATH.format(app_id=app.id)}?authToken={token}"}
