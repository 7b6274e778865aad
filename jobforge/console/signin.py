"""Signing in and out: by a one-time URL from ``jobforge console-url``, or with an access key pair."""

from __future__ import annotations

import hmac
import secrets

from anyio import to_thread
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from jobforge.console import sessions
from jobforge.console.web import PREFIX, SECURITY_HEADERS, SESSION_COOKIE, SIGNIN_COOKIE, Forbidden, Web, signed_in

FORM_LIMITS = {"max_files": 0, "max_fields": 8, "max_part_size": 4096}


class SignIn:
    def __init__(self, web: Web):
        self.web = web

    async def form(self, request: Request) -> Response:
        if self.web.session_of(request) is not None:
            return RedirectResponse(f"{PREFIX}/jobs", 303, headers=SECURITY_HEADERS)
        return self._form(request)

    def _form(self, request: Request, error: str | None = None, status: int = 200) -> Response:
        token = secrets.token_urlsafe(24)
        response = self.web.render(request, "signin.html", status, error=error, signin_token=token, session=None)
        response.set_cookie(SIGNIN_COOKIE, token, max_age=900, path=f"{PREFIX}/signin", httponly=True,
                            samesite="strict", secure=request.url.scheme == "https")
        return response

    async def with_keys(self, request: Request) -> Response:
        """The access-key form: a key pair of the account (not a temporary one, which needs its token)."""
        self.web.check_origin(request)
        form = await request.form(**FORM_LIMITS)
        cookie, offered = request.cookies.get(SIGNIN_COOKIE, ""), form.get("signin_token", "")
        if not cookie or not hmac.compare_digest(cookie.encode(), str(offered).encode()):
            raise Forbidden("The sign-in form has expired: reload it and try again.")
        key_id, secret = str(form.get("access_key_id", "")).strip(), str(form.get("secret_access_key", ""))
        credential = await to_thread.run_sync(self.web.runtime.keys.get, key_id, limiter=self.web.limiter) \
            if key_id else None
        if credential is None or not hmac.compare_digest(credential.secret_key.encode(), secret.encode()):
            return self._form(request, "The access key id or secret access key is not right.", 401)
        if credential.session_token is not None:
            return self._form(request, "Temporary credentials cannot sign in here: use an account's access key "
                                       "pair, or a URL from 'jobforge console-url'.", 401)
        return self._signed_in(request, credential)

    async def with_token(self, request: Request) -> Response:
        """A one-time URL: the token is redeemed (gone for anyone else) and a session opened."""
        token = request.query_params.get("token", "")
        engine = self.web.runtime.engine
        key_id = await to_thread.run_sync(sessions.redeem_signin_token, engine, token, limiter=self.web.limiter) \
            if token else None
        credential = self.web.runtime.keys.get(key_id) if key_id else None
        if credential is None:
            return self._form(request, "This sign-in link has expired or has been used already: make another "
                                       "with 'jobforge console-url'.", 401)
        return self._signed_in(request, credential)

    def _signed_in(self, request: Request, credential) -> Response:
        # A page of this site moves on: the session cookie is SameSite=Strict, and a redirect that a link on
        # another site began would arrive without it.
        response = self.web.render(request, "signed_in.html", session=None, account_id=credential.account_id)
        response.delete_cookie(SIGNIN_COOKIE, path=f"{PREFIX}/signin")
        return self.web.start_session(request, credential, response)

    @signed_in()
    async def sign_out(self, request: Request, session) -> Response:
        form = await request.form(**FORM_LIMITS)
        await self.web.check_csrf(request, session, form)
        session_id = request.cookies.get(SESSION_COOKIE, "")
        await to_thread.run_sync(sessions.close_session, self.web.runtime.engine, session_id)
        self.web.forget(session_id)
        response = RedirectResponse(f"{PREFIX}/signin", 303, headers=SECURITY_HEADERS)
        response.delete_cookie(SESSION_COOKIE, path=PREFIX)
        return response
