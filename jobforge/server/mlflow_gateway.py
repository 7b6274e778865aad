"""The way into an MLflow App's tracking server: who may reach which app, then MLflow's own Flask app.

Two ways in, as on SageMaker:

- SigV4: ``/api/...`` and ``/ajax-api/...`` requests signed for ``sagemaker`` that name the app in the
  ``x-sm-mlflow-app-arn`` header (what the sagemaker-mlflow plugin sends to
  ``SAGEMAKER_MLFLOW_CUSTOM_ENDPOINT``). The app must be of the signer's account and of the region signed for.
- A browser session: ``/_jobforge/mlflow/<app id>/auth?authToken=…`` (CreatePresignedMlflowAppUrl) spends
  the URL's one-use token, sets an HttpOnly cookie scoped to ``/_jobforge/mlflow/<app id>/`` and redirects
  there: the MLflow UI, and its API under the same prefix.

Either way the request reaches MLflow with the app's workspace named, whatever the client said, and MLflow's
server-info tells clients (the UI among them) that workspaces are off: to them an app is one MLflow server, as
on SageMaker. What would leave an app's workspace is refused: the workspace API beyond reading its own, artifact locations chosen by
the client (MLflow would read and write them on the server's disk), the AI gateway proxy.
"""

from __future__ import annotations

import io
import json
import re
import sys
from http.cookies import CookieError, SimpleCookie
from urllib.parse import parse_qs, unquote

from anyio import to_thread

from jobforge.api.sagemaker_mlflow import URL_PATH
from jobforge.core import mlflow_apps, mlflow_tracking
from jobforge.core.blobs import BlockingBody
from jobforge.server.auth import AuthError
from jobforge.server.protocol.http import HttpRequest, HttpResponse

BROWSER_PREFIX = URL_PATH.split("{", 1)[0]  # /_jobforge/mlflow/
API_PREFIXES = ("/api/", "/ajax-api/")
APP_ARN_HEADER = "x-sm-mlflow-app-arn"
COOKIE = "jobforge-mlflow-session"
BODY_LIMIT = 64 * 1024 * 1024  # an artifact uploaded from the UI, held in memory
NOT_FORWARDED = {"authorization", "cookie", "x-mlflow-workspace", APP_ARN_HEADER, "connection", "keep-alive",
                 "transfer-encoding", "content-type", "content-length", "host", "x-amz-date",
                 "x-amz-security-token", "x-amz-content-sha256"}
HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding"}
WORKSPACES = re.compile(r".*/mlflow/workspaces(?:/(?P<name>[^/]+))?/?$")
REFUSED_PATHS = ("/mlflow/gateway-proxy",)
EXPERIMENT_CREATE = re.compile(r"/(?:ajax-)?api/2\.0/mlflow/experiments/create$")
SERVER_INFO = re.compile(r"/(?:ajax-)?api/3\.0/mlflow/server-info/?$")


class Refused(Exception):
    def __init__(self, status: int, code: str, message: str):
        super().__init__(message)
        self.status, self.code = status, code


def browser_path(raw_path: str) -> bool:
    return raw_path.startswith(BROWSER_PREFIX)


def signed_api(request: HttpRequest) -> bool:
    return APP_ARN_HEADER in request.headers and request.raw_path.startswith(API_PREFIXES)


def _single_workspace(response: HttpResponse) -> HttpResponse:
    """MLflow's server-info as one app sees it: a server without workspaces."""
    body = b"".join(response.body.chunks)
    if response.body.close:
        response.body.close()
    info = dict(json.loads(body), workspaces_enabled=False)
    headers = [(k, v) for k, v in response.headers if k.lower() != "content-length"]
    return HttpResponse(200, headers, json.dumps(info).encode())


def _error(status: int, code: str, message: str) -> HttpResponse:
    return HttpResponse(status, [("Content-Type", "application/json")],
                        json.dumps({"error_code": code, "message": message}).encode())


class Gateway:
    def __init__(self, runtime, limiter):
        self.runtime = runtime
        self.limiter = limiter

    async def answer(self, request: HttpRequest) -> HttpResponse:
        try:
            return await to_thread.run_sync(self._answer, request, limiter=self.limiter)
        except Refused as err:
            return _error(err.status, err.code, str(err))
        except mlflow_tracking.MlflowUnavailable as err:
            return _error(501, "NOT_IMPLEMENTED", str(err))

    def _answer(self, request: HttpRequest) -> HttpResponse:
        if browser_path(request.raw_path):
            app_id, _, rest = request.raw_path[len(BROWSER_PREFIX):].partition("/")
            if rest == "auth":
                return self._open_session(app_id, request)
            app = self._session_app(app_id, request)
            script_name, path_info = BROWSER_PREFIX + app_id, "/" + rest
        else:
            app = self._signed_app(request)
            script_name, path_info = "", request.raw_path
        own = self._own_workspace(app, request.method, unquote(path_info))
        if own is not None:
            return own
        self._check_body(unquote(path_info), request)
        response = self._call_mlflow(app, request, script_name, path_info)
        if request.method == "GET" and SERVER_INFO.search(unquote(path_info)) and response.status == 200:
            response = _single_workspace(response)
        return response

    # -- who may reach which app -----------------------------------------------------------------
    def _signed_app(self, request: HttpRequest) -> mlflow_apps.App:
        arn = request.headers[APP_ARN_HEADER]
        parts = mlflow_apps.arn_parts(arn)
        if parts is None:
            raise Refused(400, "INVALID_PARAMETER_VALUE", f"{APP_ARN_HEADER} is not an MLflow App ARN: {arn}")
        region = parts[0]
        if self.runtime.settings.auth == "none":
            account_id = self.runtime.default_credential.account_id
        else:
            try:
                who, scope = self.runtime.verifier.verify(request)
            except AuthError as err:
                raise Refused(403, "PERMISSION_DENIED", err.message) from None
            if scope.service != "sagemaker" or scope.region != region:
                raise Refused(403, "PERMISSION_DENIED", f"An MLflow App's requests are signed for the sagemaker "
                              f"service in the app's region ({region}), not for {scope.service} in {scope.region}.")
            account_id = who.account_id
        app = mlflow_apps.APPS.find(self.runtime.engine, account_id, region, arn)
        if app is None:
            raise Refused(404, "RESOURCE_DOES_NOT_EXIST", f"MLflow App {arn} does not exist.")
        return app

    def _open_session(self, app_id: str, request: HttpRequest) -> HttpResponse:
        token = (parse_qs(request.query_string).get("authToken") or [""])[0]
        opened = mlflow_apps.open_session(self.runtime.engine, app_id, token) if token else None
        if opened is None:
            raise Refused(403, "PERMISSION_DENIED", "This MLflow App URL is invalid, expired or already used: "
                          "create another with CreatePresignedMlflowAppUrl.")
        session, seconds = opened
        path = f"{BROWSER_PREFIX}{app_id}/"
        secure = "; Secure" if request.scratch.get("scheme") == "https" else ""
        return HttpResponse(302, [("Location", path), ("Cache-Control", "no-store"), (
            "Set-Cookie", f"{COOKIE}={session}; Path={path}; Max-Age={seconds}; HttpOnly; SameSite=Lax{secure}")])

    def _session_app(self, app_id: str, request: HttpRequest) -> mlflow_apps.App:
        try:
            cookie = SimpleCookie(request.headers.get("cookie", ""))
        except CookieError:
            cookie = SimpleCookie()
        token = cookie[COOKIE].value if COOKIE in cookie else ""
        app = mlflow_apps.session_app(self.runtime.engine, app_id, token) if token else None
        if app is None:
            raise Refused(403, "PERMISSION_DENIED", "No session of this MLflow App: open it through a URL from "
                          "CreatePresignedMlflowAppUrl.")
        return app

    # -- what stays inside the app's workspace ---------------------------------------------------
    @staticmethod
    def _own_workspace(app: mlflow_apps.App, method: str, path: str) -> HttpResponse | None:
        """The answer to a workspace API call (the app's own workspace alone can be read), None for others."""
        if any(refused in path for refused in REFUSED_PATHS):
            raise Refused(403, "PERMISSION_DENIED", "The MLflow AI gateway is not served by MLflow Apps here.")
        found = WORKSPACES.fullmatch(path)
        if found is None:
            return None
        name = found["name"]
        if method == "GET" and name is None:
            body = {"workspaces": [{"name": app.workspace, "description": f"MLflow App {app.name}"}]}
            return HttpResponse(200, [("Content-Type", "application/json")], json.dumps(body).encode())
        if method == "GET" and name == app.workspace:
            return None
        raise Refused(403, "PERMISSION_DENIED", "An MLflow App is one workspace: its workspaces are managed with "
                      "the SageMaker MLflow App operations.")

    @staticmethod
    def _check_body(path: str, request: HttpRequest) -> None:
        if request.method != "POST" or not EXPERIMENT_CREATE.search(path):
            return
        try:
            location = json.loads(request.body or b"{}").get("artifact_location")
        except (ValueError, AttributeError):
            return  # MLflow answers a malformed body itself
        if location:
            raise Refused(400, "INVALID_PARAMETER_VALUE", "artifact_location cannot be chosen in an MLflow App: "
                          "its experiments keep their artifacts in the app's own artifact store.")

    # -- MLflow itself ---------------------------------------------------------------------------
    def _call_mlflow(self, app: mlflow_apps.App, request: HttpRequest, script_name: str,
                     path_info: str) -> HttpResponse:
        wsgi_app = mlflow_tracking.tracking_server(self.runtime.settings).wsgi_app
        scheme = request.scratch.get("scheme", "http")
        host = request.headers.get("host") or f"{self.runtime.settings.host}:{self.runtime.settings.port}"
        name, _, port = host.rpartition(":") if ":" in host and not host.endswith("]") else (host, "", "")
        environ = {
            "REQUEST_METHOD": request.method, "SCRIPT_NAME": script_name,
            "PATH_INFO": unquote(path_info).encode().decode("latin-1"), "QUERY_STRING": request.query_string,
            "SERVER_NAME": name, "SERVER_PORT": port or ("443" if scheme == "https" else "80"),
            "SERVER_PROTOCOL": "HTTP/1.1", "wsgi.version": (1, 0), "wsgi.url_scheme": scheme,
            "wsgi.input": io.BytesIO(request.body), "wsgi.errors": sys.stderr, "wsgi.multithread": True,
            "wsgi.multiprocess": False, "wsgi.run_once": False, "CONTENT_LENGTH": str(len(request.body)),
            "CONTENT_TYPE": request.headers.get("content-type", ""), "HTTP_HOST": host,
            "HTTP_X_MLFLOW_WORKSPACE": app.workspace,
        }
        for key, value in request.headers.items():
            if key not in NOT_FORWARDED:
                environ["HTTP_" + key.upper().replace("-", "_")] = value
        started = {}

        def start_response(status, headers, exc_info=None):
            started["status"], started["headers"] = status, headers

        body = wsgi_app(environ, start_response)
        headers = [(k, v) for k, v in started["headers"] if k.lower() not in HOP_BY_HOP]
        return HttpResponse(int(started["status"].split()[0]), headers,
                            BlockingBody(iter(body), getattr(body, "close", None)))
