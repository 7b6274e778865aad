"""The ASGI app: one port for every service.

A plain ASGI callable rather than a Starlette app: every request goes through
the same model-driven pipeline (route → authenticate → parse → validate →
handle → serialize), so a framework router would add cost and nothing else.
"""

from __future__ import annotations

import asyncio
import importlib
import logging
import pkgutil
import threading
import uuid

from anyio import CapacityLimiter, to_thread

import jobforge.api
from jobforge import console
from jobforge.api.base import HANDLERS, RequestContext, not_implemented
from jobforge.core import service_models
from jobforge.core.blobs import BlockingBody
from jobforge.core.errors import ServiceError
from jobforge.core.server_leases import OwnedElsewhere
from jobforge.server import browser, forwarding, limits, mlflow_gateway, router, streaming
from jobforge.server.auth import AuthError, credential_scope
from jobforge.server.protocol.http import HttpRequest, HttpResponse
from jobforge.server.protocol.validate import check_input, type_error_code
from jobforge.server.runtime import Runtime

log = logging.getLogger("jobforge.server")

# A body this large is hashed, parsed and validated in a worker thread, so that no client waits for another's.
OFF_LOOP_BODY = 64 * 1024
# Blocking handlers run in threads, and some wait on others meanwhile: a Lambda invocation holds its thread while
# the function runs, and the function may call the server back (an agent's Sample) and need a thread of its own.
# anyio's default of 40 threads would deadlock 40 such invocations; this matches Lambda's account concurrency.
BLOCKING_HANDLERS = 1000

# Authentication failures per protocol family: (code, HTTP status[, the service's own message]).
AUTH_ERRORS = {
    "json": {"missing": ("MissingAuthenticationTokenException", 403),
             "unknown_key": ("UnrecognizedClientException", 403),
             "bad_signature": ("InvalidSignatureException", 403),
             "expired": ("InvalidSignatureException", 403),
             "expired_token": ("ExpiredTokenException", 403),
             "access_denied": ("AccessDeniedException", 403),
             "bad_query": ("InvalidSignatureException", 403),
             "scope_date": ("InvalidSignatureException", 403),
             "unsigned_host": ("InvalidSignatureException", 403)},
    "query": {"missing": ("MissingAuthenticationToken", 403),
              "unknown_key": ("InvalidClientTokenId", 403),
              "bad_signature": ("SignatureDoesNotMatch", 403),
              "expired": ("SignatureDoesNotMatch", 403),
              "expired_token": ("ExpiredToken", 403),
              "access_denied": ("AccessDenied", 403),
              "bad_query": ("SignatureDoesNotMatch", 403),
              "scope_date": ("SignatureDoesNotMatch", 403),
              "unsigned_host": ("SignatureDoesNotMatch", 403)},
    "rest-xml": {"missing": ("AccessDenied", 403, "Access Denied"),
                 "unknown_key": ("InvalidAccessKeyId", 403,
                                 "The AWS Access Key Id you provided does not exist in our records."),
                 "bad_signature": ("SignatureDoesNotMatch", 403),
                 "expired": ("RequestTimeTooSkewed", 403),
                 "expired_token": ("ExpiredToken", 400),
                 "access_denied": ("AccessDenied", 403),
                 "bad_query": ("AuthorizationQueryParametersError", 400),
                 "scope_date": ("AuthorizationHeaderMalformed", 400, "The authorization header is malformed; "
                                "Invalid credential date. Date is not the same as X-Amz-Date."),
                 "unsigned_host": ("AccessDenied", 403,
                                   "There were headers present in the request which were not signed")},
}
AUTH_ERRORS["rest-json"] = AUTH_ERRORS["json"]


def load_api_modules(plugins: tuple[str, ...] = ()) -> None:
    """Import every module of jobforge.api, then the plugin modules: importing them registers their
    operations' handlers and the job kinds they declare."""
    for module in pkgutil.walk_packages(jobforge.api.__path__, "jobforge.api."):
        importlib.import_module(module.name)
    for name in plugins:
        importlib.import_module(name)


class App:
    def __init__(self, runtime: Runtime):
        self.runtime = runtime
        load_api_modules(runtime.settings.plugins)
        from jobforge.server.internal import InternalApi

        self.internal = InternalApi(runtime)
        self.console = console.create_console(runtime)
        self.off_loop = CapacityLimiter(2)  # parsing holds the GIL: more threads would only wait for it
        self.blocking = CapacityLimiter(BLOCKING_HANDLERS)
        self.mlflow = mlflow_gateway.Gateway(runtime, self.blocking)

    async def __call__(self, scope, receive, send):
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
            return
        if scope["type"] != "http":
            return
        if console.handles(scope):  # the web console's pages, under /_console/
            await self.console(scope, receive, send)
            return
        raw_path = scope.get("raw_path") or scope["path"].encode()
        raw_path = raw_path.decode("latin-1")
        request = HttpRequest(scope["method"], raw_path, scope["query_string"].decode("latin-1"),
                              _headers(scope["headers"]))
        # Until the body is read: a refusal before then closes the connection (see streaming.left_unread).
        request.scratch["receive"] = receive
        request.scratch["scheme"] = scope.get("scheme", "http")
        mlflow_browser = mlflow_gateway.browser_path(raw_path)  # an MLflow App's UI: its session cookie decides
        internal = raw_path.startswith("/_jobforge/") and not mlflow_browser
        response = None
        try:
            if internal:  # the workers' API: its path and worker token are judged before the body is read
                response = self.internal.answer_before_body(request)
                if response is None:
                    await self._read_body(request, limits.WORKER_REPORT_BODY)
            elif mlflow_browser:
                await self._read_body(request, mlflow_gateway.BODY_LIMIT)
            elif not streaming.streams_body(request):  # S3 reads its body once the request is authenticated
                await self._receive_body(request)
        except ServiceError as err:
            service = router.candidates_or_default(getattr(credential_scope(request), "service", None), request)
            response = router.protocol_of(service).error(service, err, str(uuid.uuid4()))
            if streaming.left_unread(request):
                response.header("Connection", "close")
            await self._send(send, response)
            return
        disconnected = request.scratch["disconnected"] = threading.Event()  # long handlers stop on it
        if internal:
            response = response or await self.internal.handle(request)
        elif mlflow_browser or mlflow_gateway.signed_api(request):
            response = await self.mlflow.answer(request)
        elif browser.handles(request):  # a CORS preflight or a POST form upload: signed, if at all, in the form
            response = await browser.answer(self.runtime, request, _auth_error)
        else:
            # Once the body is read, what receive gives is the disconnect (S3 bodies are read later).
            watcher = None if "receive" in request.scratch else asyncio.create_task(
                _watch_disconnect(receive, disconnected))
            try:
                response = await self.dispatch(request)
            finally:
                if watcher is not None:
                    watcher.cancel()
            await browser.add_cors_headers(self.runtime, request, response)
        if streaming.left_unread(request):
            response.header("Connection", "close")  # the unread body must not be parsed as the next request
            receive = None  # what is left to receive is body, not a disconnect notice
        await self._send(send, response, receive, disconnected)

    async def _receive_body(self, request: HttpRequest) -> None:
        """Read a non-S3 body whole, once what can be judged without it passes: the size it declares and
        what its signature claims (so an unknown key or a stale date costs the server no body)."""
        scope_service = getattr(credential_scope(request), "service", None)
        if self.runtime.settings.auth != "none":
            try:
                self.runtime.verifier.check_before_body(request)
            except AuthError as err:
                raise _auth_error(err, router.candidates_or_default(scope_service, request)) from None
        await self._read_body(request, limits.body_limit(scope_service))

    @staticmethod
    async def _read_body(request: HttpRequest, limit: int) -> None:
        """The body read whole, refused beyond limit bytes (by its Content-Length before any is read)."""
        limits.check_declared_size(request.headers, limit)
        request.body = await streaming.read_all(request.scratch["receive"], limit)
        del request.scratch["receive"]

    async def _off_loop(self, request: HttpRequest, fn, *args):
        """fn(*args) here for a small body, in a worker thread for one big enough to hold up other clients."""
        if len(request.body) < OFF_LOOP_BODY:
            return fn(*args)
        return await to_thread.run_sync(fn, *args, limiter=self.off_loop)

    async def _send(self, send, response: HttpResponse, receive=None, disconnected=None) -> None:
        headers = [(k.encode("latin-1"), str(v).encode("latin-1")) for k, v in response.headers]
        if isinstance(response.body, (bytes, bytearray)):
            headers.append((b"content-length", str(len(response.body)).encode()))
            await send({"type": "http.response.start", "status": response.status, "headers": headers})
            await send({"type": "http.response.body", "body": bytes(response.body)})
            return
        await send({"type": "http.response.start", "status": response.status, "headers": headers})
        body = response.body
        if isinstance(body, BlockingBody):
            body = streaming.ThreadedStream(body.chunks, close=body.close)
        await self._send_stream(send, body, receive, disconnected)

    async def _send_stream(self, send, body, receive, gone: threading.Event | None = None) -> None:
        """Stream a body, stopping as soon as the client goes away (and setting ``gone`` then).

        The server drops what is sent after a disconnect without raising, so
        without watching ``receive`` an abandoned multi-GB GET would be read to
        its end for nobody.
        """
        if gone is None:
            gone = threading.Event()
        watcher = asyncio.create_task(_watch_disconnect(receive, gone)) if receive is not None else None
        try:
            async for chunk in body:
                if gone.is_set():
                    return
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
            await send({"type": "http.response.body", "body": b""})
        finally:
            if watcher is not None:
                watcher.cancel()
            aclose = getattr(body, "aclose", None)
            if aclose is not None:
                await aclose()

    async def _lifespan(self, receive, send):
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                self.runtime.start(asyncio.get_running_loop())
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await self.runtime.stop()
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def dispatch(self, request: HttpRequest) -> HttpResponse:
        request_id = str(uuid.uuid4())
        scope = credential_scope(request)
        scope_service = scope.service if scope else None
        fallback = router.candidates_or_default(scope_service, request)
        try:
            identity, (service, operation) = await self._off_loop(request, self._identify, request, scope_service,
                                                                  fallback)
        except ServiceError as err:
            return router.protocol_of(fallback).error(fallback, err, request_id)
        protocol = router.protocol_of(service)
        try:
            account_id, principal_arn, access_key_id, region = identity
            ctx = RequestContext(self.runtime, account_id, principal_arn, access_key_id, request_id, region,
                                 service, operation, request.headers, request.scratch["disconnected"])
            found = HANDLERS.get((service, operation))
            if found is None:
                raise not_implemented(service, operation)
            if "receive" in request.scratch:
                await streaming.receive_body(ctx, request)
            params = await self._off_loop(request, _read_params, protocol, service, operation, request)
            params.update(request.scratch.get("streamed_payload", {}))  # staged bodies skip validation
            if found.blocking:
                result = await to_thread.run_sync(found.fn, ctx, params, limiter=self.blocking)
            else:
                result = found.fn(ctx, params)
            return protocol.serialize(service, operation, result or {}, request_id)
        except OwnedElsewhere as moved:
            return await self._forward(request, moved.url, service, protocol, request_id)
        except ServiceError as err:
            return protocol.error(service, err, request_id)
        except Exception:
            log.exception("Internal error in %s.%s", service, operation)
            return protocol.error(service, ServiceError("InternalFailure", "The server hit an internal error", 500),
                                  request_id)

    async def _forward(self, request: HttpRequest, url: str, service: str, protocol, request_id: str
                       ) -> HttpResponse:
        """The answer of the server that runs what the request is for (another server on this database)."""
        if forwarding.forwarded(request):
            return protocol.error(service, ServiceError(
                "ServiceUnavailable", "The server running this resource has changed; retry the request.", 503),
                request_id)
        settings = self.runtime.settings
        try:
            return await to_thread.run_sync(forwarding.forward, request, url, self.runtime.leases.server_id,
                                            str(settings.tls_cert) if settings.tls_cert else None,
                                            limiter=self.blocking)
        except OSError as err:
            return protocol.error(service, ServiceError(
                "ServiceUnavailable", f"The server running this resource cannot be reached ({err}); retry the "
                "request.", 503), request_id)

    def _identify(self, request: HttpRequest, scope_service: str | None, fallback: str):
        """(who sent the request, (service, operation)): the request authenticated, then routed."""
        return self._authenticate(request, fallback), router.route(scope_service, request)

    def _authenticate(self, request: HttpRequest, service: str) -> tuple[str, str, str, str]:
        """(account id, principal ARN, access key id, region), or the auth error in the service's shape."""
        runtime = self.runtime
        if runtime.settings.auth == "none":
            credential = runtime.default_credential
            return (credential.account_id, credential.principal_arn, credential.access_key_id,
                    runtime.settings.region)
        try:
            who, scope = runtime.verifier.verify(request)
        except AuthError as err:
            raise _auth_error(err, service) from None
        return who.account_id, who.principal_arn, who.access_key_id, scope.region


def _headers(raw: list[tuple[bytes, bytes]]) -> dict[str, str]:
    """Lower-case names to values; a repeated header's values joined with ",".

    Values are read as UTF-8, as botocore sends and signs them (S3 user metadata, a Content-Disposition
    file name); other bytes are kept as escapes, so a signature is still checked over the bytes sent.
    """
    headers: dict[str, str] = {}
    repeated: dict[str, list[str]] = {}
    for key, value in raw:
        name = key.decode("latin-1").lower()
        text = value.decode("utf-8", "surrogateescape")
        if name in headers:
            repeated.setdefault(name, [headers[name]]).append(text)
        else:
            headers[name] = text
    for name, values in repeated.items():
        headers[name] = ",".join(values)
    return headers


def _auth_error(err: AuthError, service: str) -> ServiceError:
    """An authentication failure in the service's own error shape."""
    code, status, *message = AUTH_ERRORS.get(router.protocol_name(service), AUTH_ERRORS["json"])[err.kind]
    return ServiceError(code, message[0] if message else err.message, status)


def _read_params(protocol, service: str, operation: str, request: HttpRequest) -> dict:
    """The operation's input, parsed from the request and validated against its shape."""
    protocol_name = router.protocol_name(service)
    try:
        return check_input(service_models.operation(service, operation).input_shape,
                           protocol.parse(service, operation, request), protocol_name)
    except RecursionError:  # a body nested deeper than any shape: the client's error, not ours
        raise ServiceError(type_error_code(protocol_name), "The request body is nested too deeply", 400) from None


async def _watch_disconnect(receive, gone: threading.Event) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass
    gone.set()


def create_app(settings) -> App:
    return App(Runtime(settings))
