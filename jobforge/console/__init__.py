"""The web console: every job family at a glance, live charts and logs, artifacts, and the resources jobs use.

Served by the same server under ``/_console/`` (no S3 bucket can be named that). Pages are rendered on the
server (Jinja2); htmx keeps the job list and a job's status current and uPlot draws the metrics, both shipped
in ``static/vendor`` (no CDN). Every change goes through the services' own operations as the signed-in
account (``calls``); what is only read comes from the store through ``job_records``, bounded to that account.
"""

from __future__ import annotations

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from jobforge.console.job_pages import JobPages
from jobforge.console.resource_pages import ResourcePages
from jobforge.console.signin import SignIn
from jobforge.console.web import PREFIX, SECURITY_HEADERS, STATIC, Forbidden, Web
from jobforge.server.protocol.http import HttpRequest
from jobforge.server.protocol.restxml import virtual_bucket


def handles(scope) -> bool:
    """Whether a request is the console's: its path, on a host that does not name an S3 bucket."""
    path = scope["path"]
    if path != PREFIX and not path.startswith(PREFIX + "/"):
        return False
    host = next((value.decode("latin-1") for name, value in scope["headers"] if name == b"host"), "")
    return virtual_bucket(HttpRequest(scope["method"], path, "", {"host": host})) is None


def create_console(runtime) -> Starlette:
    web = Web(runtime)
    signin, jobs, resources = SignIn(web), JobPages(web), ResourcePages(web)

    async def forbidden(request: Request, err: Forbidden) -> Response:
        return web.render(request, "not_found.html", 403, session=web.session_of(request), title="Refused",
                          what=str(err))

    routes = [
        Route(PREFIX, jobs.index), Route(PREFIX + "/", jobs.index),
        Route(PREFIX + "/signin", signin.form, methods=["GET"]),
        Route(PREFIX + "/signin", signin.with_keys, methods=["POST"]),
        Route(PREFIX + "/federation", signin.with_token, methods=["GET"]),
        Route(PREFIX + "/signout", signin.sign_out, methods=["POST"]),
        Route(PREFIX + "/jobs", jobs.list_page),
        Route(PREFIX + "/jobs/rows", jobs.rows),
        Route(PREFIX + "/jobs/{job_id:str}", jobs.job_page),
        Route(PREFIX + "/jobs/{job_id:str}/status", jobs.status),
        Route(PREFIX + "/jobs/{job_id:str}/artifacts", jobs.artifacts),
        Route(PREFIX + "/jobs/{job_id:str}/stop", jobs.stop, methods=["POST"]),
        Route(PREFIX + "/jobs/{job_id:str}/delete", jobs.delete, methods=["POST"]),
        Route(PREFIX + "/api/jobs/{job_id:str}/updates", jobs.updates),
        Route(PREFIX + "/s3", resources.buckets),
        Route(PREFIX + "/s3/{bucket:str}", resources.objects),
        Route(PREFIX + "/s3/{bucket:str}/download", resources.download),
        Route(PREFIX + "/s3/{bucket:str}/upload", resources.upload, methods=["POST"]),
        Route(PREFIX + "/s3/{bucket:str}/delete", resources.delete_object, methods=["POST"]),
        Route(PREFIX + "/s3/{bucket:str}/presign", resources.presign, methods=["POST"]),
        Route(PREFIX + "/models", resources.models),
        Route(PREFIX + "/endpoints", resources.endpoints),
        Route(PREFIX + "/endpoints/{name:str}", resources.endpoint),
        Route(PREFIX + "/api/endpoints/{name:str}/metrics", resources.endpoint_metrics),
        Route(PREFIX + "/quantum-tasks", resources.quantum_tasks),
        Route(PREFIX + "/quantum-task", resources.quantum_task),
        Route(PREFIX + "/functions", resources.functions),
        Route(PREFIX + "/functions/{name:str}", resources.function),
        Route(PREFIX + "/agents/{runtime_id:str}", resources.agent),
        Mount(PREFIX + "/static", StaticFiles(directory=STATIC), name="static"),
    ]
    app = Starlette(routes=routes, exception_handlers={Forbidden: forbidden})
    app.state.web = web
    return app


__all__ = ["create_console", "handles", "SECURITY_HEADERS"]
