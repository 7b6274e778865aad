"""S3 request and response bodies, streamed in bounded memory.

An S3 request's body is read only after the request is routed and
authenticated. A body that is an object's data (PutObject, UploadPart) goes
to a staging file, hashed on the way (MD5 for the ETag, the checksums the
client asked for, SHA-256 when the payload is signed) in a worker thread while
the next buffer arrives; other bodies (small XML documents) stay in memory.
aws-chunked bodies are decoded on the fly, their chunk signatures and trailing
checksums verified. Response bodies are read from blobs in a worker thread.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import re
from typing import AsyncIterator, Callable, Iterator

from jobforge.core import checksums
from jobforge.core import service_models
from jobforge.core.blobs import StagedBody, StagingFile
from jobforge.core.errors import ServiceError
from jobforge.server.auth import credential_scope, request_amz_date, signing_key
from jobforge.server.aws_chunked import AwsChunkedDecoder, ChunkSigner

FLUSH_BYTES = 1024 * 1024  # hand this much to the hashing thread at a time
MAX_IN_MEMORY = 16 * 1024 * 1024  # XML documents (CompleteMultipartUpload of 10,000 parts is ~1 MB)
MAX_OTHER_BODY = 64 * 1024 * 1024  # non-S3 services reached by an unsigned request
SIGNED_STREAMING = {"STREAMING-AWS4-HMAC-SHA256-PAYLOAD": False, "STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER": True}
UNSIGNED_STREAMING = {"STREAMING-UNSIGNED-PAYLOAD-TRAILER"}
_SHA256_HEX = re.compile(r"[0-9a-f]{64}")


def streams_body(request) -> bool:
    """Whether the app should leave the body unread for ``receive_body`` (S3 requests)."""
    scope = credential_scope(request)
    if scope is not None:
        return scope.service == "s3"
    if request.raw_path.startswith("/_jobforge/") or "x-amz-target" in request.headers:
        return False
    return "x-www-form-urlencoded" not in request.headers.get("content-type", "") \
        and "Action=" not in request.query_string


def left_unread(request) -> bool:
    """Whether the request failed before its body was read (so the connection cannot be reused)."""
    return "receive" in request.scratch and (request.headers.get("content-length", "0") != "0"
                                             or "transfer-encoding" in request.headers)


def _payload_member(service: str, operation: str):
    shape = service_models.operation(service, operation).input_shape
    payload = shape.serialization.get("payload") if shape is not None else None
    return (payload, shape.members[payload]) if payload else (None, None)


def checksums_the_body(service: str, operation: str) -> bool:
    """Whether x-amz-checksum-* headers describe the request's body: in operations whose model gives a request
    checksum (httpChecksum). CompleteMultipartUpload's describe the whole object it assembles."""
    return "requestAlgorithmMember" in service_models.operation(service, operation).http_checksum


def requested_algorithms(headers: dict) -> list[str]:
    """Checksum algorithms the client sent (as headers or announced trailers), in a stable order."""
    named = {name[len("x-amz-checksum-"):].upper() for name in headers if name.startswith("x-amz-checksum-")}
    named.update(trailer.strip()[len("x-amz-checksum-"):].upper()
                 for trailer in headers.get("x-amz-trailer", "").lower().split(",")
                 if trailer.strip().startswith("x-amz-checksum-"))
    found = sorted(named & set(checksums.ALGORITHMS))
    if headers.get("x-amz-sdk-checksum-algorithm"):
        found = sorted(set(found) | {checksums.algorithm_of(headers["x-amz-sdk-checksum-algorithm"])})
    return found


def _signer(ctx, request) -> ChunkSigner | None:
    if ctx.runtime.settings.auth == "none":
        return None
    scope = credential_scope(request)
    credential = ctx.runtime.keys.get(ctx.access_key_id)
    seed = request.headers.get("authorization", "").rpartition("Signature=")[2].strip()
    return ChunkSigner(signing_key(credential.secret_key, scope.date, scope.region, scope.service),
                       request_amz_date(request) or "",  # none when presigned: no chunk signature matches
                       f"{scope.date}/{scope.region}/{scope.service}/aws4_request", seed)


async def receive_body(ctx, request) -> None:
    """Read the body the app left unread: into ``request.body``, or staged for a streaming payload member."""
    receive = request.scratch["receive"]  # removed once the whole body is read (see left_unread)
    if ctx.service != "s3":
        request.body = await read_all(receive, MAX_OTHER_BODY)
        del request.scratch["receive"]
        return
    headers = request.headers
    payload, member = _payload_member(ctx.service, ctx.operation)
    to_disk = member is not None and member.type_name == "blob"
    content_sha256 = headers.get("x-amz-content-sha256", "")
    decoder = None
    if content_sha256 in SIGNED_STREAMING:
        decoder = AwsChunkedDecoder(_signer(ctx, request),
                                    signed_trailer=SIGNED_STREAMING[content_sha256])
    elif content_sha256 in UNSIGNED_STREAMING or "aws-chunked" in headers.get("content-encoding", ""):
        decoder = AwsChunkedDecoder()
    algorithms = requested_algorithms(headers) if checksums_the_body(ctx.service, ctx.operation) else []
    if to_disk:
        store = ctx.runtime.object_store
        bucket = request.scratch.get("labels", {}).get("Bucket")
        if bucket:
            store.bucket(ctx.account_id, bucket)  # fail before receiving data for a bucket one cannot use
        staged_algorithms = algorithms or [checksums.DEFAULT]
        if ctx.operation == "UploadPart" and checksums.DEFAULT not in staged_algorithms:
            staged_algorithms = [*algorithms, checksums.DEFAULT]  # parts' CRCs combine into S3's default checksum
        sink = store.blobs.staging(staged_algorithms, bool(_SHA256_HEX.fullmatch(content_sha256)))
    else:
        sink = StagingFile(None, algorithms, bool(_SHA256_HEX.fullmatch(content_sha256)))
    loop = asyncio.get_running_loop()
    try:
        await pump(receive, decoder, sink, None if to_disk else MAX_IN_MEMORY)
        del request.scratch["receive"]
        staged = await loop.run_in_executor(None, sink.finish)
    except BaseException:
        await loop.run_in_executor(None, sink.abort)
        raise
    _verify(staged, headers, decoder, algorithms, content_sha256)
    if to_disk:
        request.scratch["streamed_payload"] = {payload: staged}
    else:
        request.body = staged.data


async def pump(receive, decoder, sink: StagingFile, limit: int | None) -> None:
    """Write a body to sink as it arrives, through decoder (whose feed(data) yields the bytes to keep and
    close() checks the end: an aws-chunked decoder, a POST form reader) when there is one."""
    loop = asyncio.get_running_loop()
    buffer, pending, total = bytearray(), None, 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ServiceError("IncompleteBody", "The request body terminated unexpectedly", 400)
        data = message.get("body", b"")
        if decoder is None:
            buffer += data
        else:
            for piece in decoder.feed(data):
                buffer += piece
        more = message.get("more_body", False)
        if limit is not None and total + len(buffer) > limit:
            raise ServiceError("MaxMessageLengthExceeded", "Your request was too big.", 400)
        if len(buffer) >= FLUSH_BYTES or (not more and buffer):
            if pending is not None:
                await pending
            total += len(buffer)
            pending = loop.run_in_executor(None, sink.write, buffer)
            buffer = bytearray()
        if not more:
            break
    if pending is not None:
        await pending
    if decoder is not None:
        decoder.close()


def _verify(staged: StagedBody, headers: dict, decoder, algorithms: list[str], content_sha256: str) -> None:
    declared = headers.get("x-amz-decoded-content-length")
    if decoder is not None and declared is not None and declared.isdigit() and int(declared) != staged.size:
        raise ServiceError("IncompleteBody", "You did not provide the number of bytes specified by the "
                           "X-Amz-Decoded-Content-Length header", 400)
    content_md5 = headers.get("content-md5")
    if content_md5 is not None:
        try:
            digest = base64.b64decode(content_md5, validate=True)
        except (binascii.Error, ValueError):
            digest = b""
        if len(digest) != 16:
            raise ServiceError("InvalidDigest", "The Content-MD5 you specified was invalid.", 400)
        if digest.hex() != staged.md5:
            raise ServiceError("BadDigest", "The Content-MD5 you specified did not match what we received.", 400)
    if staged.sha256 is not None and staged.sha256 != content_sha256:
        raise ServiceError("XAmzContentSHA256Mismatch", "The provided 'x-amz-content-sha256' header does not match "
                           "what was computed.", 400)
    trailers = decoder.trailers if decoder is not None else {}
    for algorithm in algorithms:
        name = checksums.header(algorithm)
        expected = headers.get(name) or trailers.get(name)
        if expected is None:
            if name in headers.get("x-amz-trailer", "").lower():
                raise ServiceError("InvalidRequest", f"The announced trailer {name} was not sent", 400)
            continue  # only the algorithm was named: the checksum is computed, not checked
        checksums.check(algorithm, expected, staged.checksums[algorithm])


async def read_all(receive, limit: int) -> bytes:
    """A whole request body held in memory, refused beyond limit bytes."""
    chunks, size = [], 0
    while True:
        message = await receive()
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise ServiceError("RequestEntityTooLarge", "Request body too large", 413)
        chunks.append(chunk)
        if not message.get("more_body"):
            return b"".join(chunks)


class ThreadedStream:
    """An async iterator over a blocking iterator of bytes, each step in a worker thread.

    ``close`` (if given) releases what the chunks are read from; it runs once the response is sent or
    abandoned (``aclose``).
    """

    def __init__(self, chunks: Iterator[bytes], close: Callable[[], None] | None = None):
        self._chunks = chunks
        self._close = close

    def __aiter__(self) -> AsyncIterator[bytes]:
        return self

    async def __anext__(self) -> bytes:
        chunk = await asyncio.get_running_loop().run_in_executor(None, next, self._chunks, None)
        if chunk is None:
            raise StopAsyncIteration
        return chunk

    async def aclose(self) -> None:
        close, self._close = self._close, None
        if close is not None:
            await asyncio.get_running_loop().run_in_executor(None, close)
