"""What every console page shares: the signed-in session, CSRF checks, rendering and security headers."""

from __future__ import annotations

import datetime as dt
import json
import re
import threading
import time
from functools import wraps
from pathlib import Path

from anyio import CapacityLimiter
from jinja2 import Environment, PackageLoader, select_autoescape
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response

from jobforge.console import sessions
from jobforge.console.calls import Caller
from jobforge.console.families import label as family_label

PREFIX = "/_console"
SESSION_COOKIE = "jobforge_console"
SIGNIN_COOKIE = "jobforge_console_signin"  # the sign-in form's double-submit token, before any session
CSRF_HEADER = "x-csrf-token"
CSRF_FIELD = "csrf"
SESSION_CACHE_SECONDS = 2.0  # a session is read from the store again after this (a sign-out elsewhere)
REGION = re.compile(r"[a-z]{2}(-[a-z]+)+-\d")
STATIC = Path(__file__).with_name("static")
SECURITY_HEADERS = {
    # Scripts and styles only from the console's own files: no inline script, nothing from elsewhere.
    "Content-Security-Policy": "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
                               "connect-src 'self'; frame-ancestors 'none'; form-action 'self'; base-uri 'none'",
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    # A sign-in URL's token never leaves in a Referer to another site; same-origin forms keep their Origin header.
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}


class Forbidden(Exception):
    """A request the console refuses: no session, a missing or wrong CSRF token, a foreign origin."""


def _when(epoch) -> str:
    if not epoch:
        return ""
    if isinstance(epoch, dt.datetime):
        epoch = epoch.timestamp()
    return dt.datetime.fromtimestamp(epoch, dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _size(value) -> str:
    value = float(value or 0)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return ""


def _as_json(value) -> str:
    return json.dumps(value, indent=2, sort_keys=True, default=lambda v: _when(v) if isinstance(v, dt.datetime)
                      else v.decode(errors="replace") if isinstance(v, bytes) else str(v))


def templates() -> Environment:
    env = Environment(loader=PackageLoader("jobforge.console"), autoescape=select_autoescape(default=True),
                      trim_blocks=True, lstrip_blocks=True)
    env.filters.update(when=_when, size=_size, pretty=_as_json, family=family_label)
    env.globals.update(prefix=PREFIX, static=_static_url)
    return env


def _static_url(name: str) -> str:
    # The file's time in the URL: a browser fetches a changed asset at once and caches the rest.
    return f"{PREFIX}/static/{name}?v={int((STATIC / name).stat().st_mtime)}"


class Web:
    """The console's shared machinery, one per server."""

    def __init__(self, runtime):
        self.runtime = runtime
        self.env = templates()
        self.limiter = CapacityLimiter(8)  # console work never takes more than this many threads
        self._sessions: dict[str, tuple[float, sessions.Session | None]] = {}
        self._lock = threading.Lock()

    # -- sessions ---------------------------------------------------------------------------

    def session_of(self, request: Request) -> sessions.Session | None:
        session_id = request.cookies.get(SESSION_COOKIE)
        if not session_id:
            return None
        cached = self._sessions.get(session_id)
        now = time.monotonic()
        if cached is None or now - cached[0] > SESSION_CACHE_SECONDS:
            cached = (now, sessions.find_session(self.runtime.engine, session_id))
            with self._lock:
                if len(self._sessions) > 10000:
                    self._sessions.clear()
                self._sessions[session_id] = cached
        session = cached[1]
        return session if session is not None and session.expires_at > time.time() else None

    def forget(self, session_id: str) -> None:
        with self._lock:
            self._sessions.pop(session_id, None)

    def start_session(self, request: Request, credential, response: Response) -> Response:
        session_id, session = sessions.open_session(self.runtime.engine, credential)
        response.set_cookie(SESSION_COOKIE, session_id, max_age=int(session.expires_at - time.time()),
                            path=PREFIX, httponly=True, samesite="strict", secure=request.url.scheme == "https")
        return response

    def caller(self, session: sessions.Session, region: str | None = None) -> Caller:
        return Caller(self.runtime, session, region or self.runtime.settings.region, self.limiter)

    # -- checks -----------------------------------------------------------------------------

    @staticmethod
    def check_origin(request: Request) -> None:
        """A state-changing request must come from a console page: same origin when the browser says."""
        origin = request.headers.get("origin")
        if origin is not None and origin != f"{request.url.scheme}://{request.url.netloc}":
            raise Forbidden("This request came from another site.")

    async def check_csrf(self, request: Request, session: sessions.Session, form=None) -> None:
        self.check_origin(request)
        offered = request.headers.get(CSRF_HEADER)
        if offered is None and form is not None:
            offered = form.get(CSRF_FIELD)
        if not session.csrf_matches(offered):
            raise Forbidden("The request lacks this session's CSRF token: reload the page and try again.")

    # -- rendering --------------------------------------------------------------------------

    def render(self, request: Request, template: str, status: int = 200, headers: dict | None = None,
               **values) -> HTMLResponse:
        session = values.get("session")
        values.setdefault("region", request.query_params.get("region") or self.runtime.settings.region)
        values.setdefault("auth_none", self.runtime.settings.auth == "none")
        values["csrf"] = session.csrf_token if session is not None else ""
        values["path"] = request.url.path
        html = self.env.get_template(template).render(request=request, **values)
        return HTMLResponse(html, status, headers={**SECURITY_HEADERS, **(headers or {})})

    def region_of(self, request: Request) -> str:
        region = request.query_params.get("region") or self.runtime.settings.region
        return region if REGION.fullmatch(region) else self.runtime.settings.region


def is_htmx(request: Request) -> bool:
    return request.headers.get("hx-request") == "true"


def signed_in(web_attr: str = "web"):
    """A page handler that needs a session: without one it sends the browser to sign in (an --auth none server
    opens a session of its default account instead); POST, PUT and DELETE need the session's CSRF token."""

    def wrap(fn):
        @wraps(fn)
        async def page(self, request: Request):
            web: Web = getattr(self, web_attr)
            session = web.session_of(request)
            if session is None:
                if request.method == "GET" and web.runtime.settings.auth == "none":
                    response = RedirectResponse(request.url.path + (f"?{request.url.query}" if request.url.query
                                                                    else ""), 303, headers=SECURITY_HEADERS)
                    return web.start_session(request, web.runtime.default_credential, response)
                if request.method == "GET" and not request.url.path.startswith(f"{PREFIX}/api/"):
                    return RedirectResponse(f"{PREFIX}/signin", 303, headers=SECURITY_HEADERS)
                return Response("Sign in first.", 401, headers=SECURITY_HEADERS)
            return await fn(self, request, session)

        return page

    return wrap
