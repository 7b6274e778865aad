"""What browsers ask of S3 outside the signed API.

- A CORS preflight (OPTIONS): answered from the bucket's CORS rules, before
  and without authentication, as S3 does.
- The Access-Control-* headers of a matching rule on S3's answer to any
  request that names an Origin.
- A POST form upload (multipart/form-data to a bucket's URL): signed, if at
  all, by fields of the form, which are read before the file is staged.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import uuid
from typing import Callable

from anyio import to_thread

from jobforge.api.s3 import cors, post_upload
from jobforge.core.errors import ServiceError
from jobforge.core.objects import valid_bucket_name
from jobforge.server import form_upload, router, streaming
from jobforge.server.auth import AuthError, Identity, credential_scope
from jobforge.server.protocol import restxml
from jobforge.server.protocol.http import HttpRequest, HttpResponse


def _bucket_and_key(request: HttpRequest) -> tuple[str, str]:
    bucket, _, key = restxml.addressed(request).path.lstrip("/").partition("/")
    return bucket, key


def _is_s3(request: HttpRequest) -> bool:
    return router.candidates_or_default(getattr(credential_scope(request), "service", None), request) == "s3"


def handles(request: HttpRequest) -> bool:
    """Whether the request is a CORS preflight or a POST form upload (answered by ``answer``)."""
    if request.method == "OPTIONS":
        return True
    return request.method == "POST" and not request.query_string and "authorization" not in request.headers \
        and form_upload.is_form(request.headers.get("content-type", "")) and not _bucket_and_key(request)[1]


async def answer(runtime, request: HttpRequest, auth_error: Callable[[AuthError, str], ServiceError]) -> HttpResponse:
    request_id = str(uuid.uuid4())
    try:
        try:
            if request.method == "OPTIONS":
                return await _preflight(runtime, request, request_id)
            return await _form_upload(runtime, request, request_id)
        except AuthError as err:
            raise auth_error(err, "s3") from None
    except ServiceError as err:
        return restxml.error("s3", err, request_id)


async def add_cors_headers(runtime, request: HttpRequest, response: HttpResponse) -> None:
    """The Access-Control-* headers S3 adds to its answer to a browser's request, when a rule allows it."""
    origin = request.headers.get("origin")
    if not origin or request.method == "OPTIONS" or not _is_s3(request):
        return
    bucket = _bucket_and_key(request)[0]
    if not valid_bucket_name(bucket):
        return
    headers = await to_thread.run_sync(cors.response_headers, runtime.engine,
                                       cors.BrowserRequest(bucket, origin, request.method))
    for name, value in headers:
        response.header(name, value)


async def _preflight(runtime, request: HttpRequest, request_id: str) -> HttpResponse:
    bucket, key = _bucket_and_key(request)
    origin = request.headers.get("origin")
    method = request.headers.get("access-control-request-method")
    if not origin:
        raise ServiceError("BadRequest", "Insufficient information. Origin request header needed.", 400)
    if not method:
        raise ServiceError("BadRequest", "Invalid Access-Control-Request-Method: null", 400)
    if not valid_bucket_name(bucket):
        raise ServiceError("NoSuchBucket", "The specified bucket does not exist", 404, BucketName=bucket)
    asked = tuple(name.strip().lower() for name in request.headers.get("access-control-request-headers", "")
                  .split(",") if name.strip())
    headers = await to_thread.run_sync(cors.preflight, runtime.engine,
                                       cors.BrowserRequest(bucket, origin, method, asked),
                                       "OBJECT" if key else "BUCKET")
    return HttpResponse(200, [("x-amz-request-id", request_id), *headers])


class _FileSink:
    """Where the form's file is staged, opened once its fields say with which checksums."""

    def __init__(self, blobs):
        self.blobs = blobs
        self.staging = None

    def open(self, algorithms: list[str]) -> None:
        self.staging = self.blobs.staging(algorithms)

    def write(self, data) -> None:
        self.staging.write(data)

    def finish(self):
        return self.staging.finish()

    def abort(self) -> None:
        if self.staging is not None:
            self.staging.abort()


async def _form_upload(runtime, request: HttpRequest, request_id: str) -> HttpResponse:
    bucket = _bucket_and_key(request)[0]
    objects = runtime.object_store
    sink = _FileSink(objects.blobs)
    now = dt.datetime.now(dt.timezone.utc)
    accepted = {}

    def on_fields(fields: dict[str, str], file_name: str | None) -> None:
        """Everything that can be judged before the file: who signed, the policy, the bucket."""
        if runtime.settings.auth == "none":
            credential = runtime.default_credential
            identity = Identity(credential.account_id, credential.principal_arn, credential.access_key_id)
        else:
            identity = runtime.verifier.verify_post_form(fields, now)
            if identity is None:
                raise ServiceError("AccessDenied", "Access Denied", 403)
        accepted["policy"] = post_upload.check_fields(fields.get("policy"), fields, bucket, now)
        objects.bucket(identity.account_id, bucket)
        accepted["identity"] = identity
        sink.open(post_upload.staging_algorithms(fields))

    reader = form_upload.FormReader(request.headers.get("content-type", ""), on_fields)
    loop = asyncio.get_running_loop()
    try:
        await streaming.pump(request.scratch["receive"], reader, sink, None)
        del request.scratch["receive"]
        staged = await loop.run_in_executor(None, sink.finish)
    except BaseException:
        await loop.run_in_executor(None, sink.abort)
        raise
    try:
        info = await to_thread.run_sync(post_upload.store_upload, objects, accepted["identity"].account_id, bucket,
                                        reader.fields, reader.file_name or "", staged, accepted["policy"])
    finally:
        staged.discard()
    virtual = restxml.virtual_bucket(request) is not None
    base = f"{request.scratch.get('scheme', 'http')}://{request.host}"
    done = post_upload.answer(reader.fields, info, post_upload.object_url(base, bucket, info.key, virtual))
    return HttpResponse(done.status, [("x-amz-request-id", request_id), *done.headers], done.body)
