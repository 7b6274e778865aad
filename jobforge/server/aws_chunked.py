"""Decoding ``Content-Encoding: aws-chunked`` request bodies, verifying chunk signatures.

botocore and awscrt only encode aws-chunked bodies (``AwsChunkedWrapper``);
no library decodes them on the receiving side, so this incremental decoder is
written by hand, following the S3 documentation of the format::

    <hex size>[;chunk-signature=<sig>]\\r\\n<data>\\r\\n ... 0[;chunk-signature=<sig>]\\r\\n
    [<trailer name>:<value>\\r\\n ... [x-amz-trailer-signature:<sig>\\r\\n]]\\r\\n
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass

from jobforge.core.errors import ServiceError

EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()
MAX_LINE = 4096


def _malformed(message: str) -> ServiceError:
    return ServiceError("IncompleteBody", f"The aws-chunked request body is malformed: {message}", 400)


def _bad_signature() -> ServiceError:
    return ServiceError("SignatureDoesNotMatch", "The request signature we calculated does not match the signature "
                        "you provided. Check your key and signing method.", 403)


@dataclass
class ChunkSigner:
    """What chains the chunk signatures: the signing key, the request's date and scope, the seed signature."""

    key: bytes
    amz_date: str
    scope: str
    previous: str

    def _sign(self, kind: str, digest: str) -> str:
        text = "\n".join([kind, self.amz_date, self.scope, self.previous, *([EMPTY_SHA256] if kind.endswith("PAYLOAD")
                                                                            else []), digest])
        return hmac.new(self.key, text.encode(), hashlib.sha256).hexdigest()

    def verify_chunk(self, data_sha256: str, signature: str) -> None:
        expected = self._sign("AWS4-HMAC-SHA256-PAYLOAD", data_sha256)
        if not hmac.compare_digest(expected, signature):
            raise _bad_signature()
        self.previous = expected

    def verify_trailer(self, trailer_text: bytes, signature: str) -> None:
        expected = self._sign("AWS4-HMAC-SHA256-TRAILER", hashlib.sha256(trailer_text).hexdigest())
        if not hmac.compare_digest(expected, signature):
            raise _bad_signature()


class AwsChunkedDecoder:
    """Feed raw body bytes, get payload bytes back; ``trailers`` holds what followed the last chunk."""

    def __init__(self, signer: ChunkSigner | None = None, signed_trailer: bool = False):
        self.signer = signer
        self.signed_trailer = signed_trailer
        self.trailers: dict[str, str] = {}
        self._trailer_text = b""
        self._state = "size"
        self._line = bytearray()
        self._remaining = 0
        self._signature: str | None = None
        self._chunk_hash = None
        self.done = False

    def feed(self, data: bytes) -> list[memoryview]:
        out: list[memoryview] = []
        view, pos, end = memoryview(data), 0, len(data)
        while pos < end:
            if self.done:
                raise _malformed("data after the final chunk")
            if self._state == "data":
                take = min(self._remaining, end - pos)
                piece = view[pos:pos + take]
                out.append(piece)
                if self._chunk_hash is not None:
                    self._chunk_hash.update(piece)
                pos += take
                self._remaining -= take
                if self._remaining == 0:
                    self._state = "data-end"
                continue
            newline = data.find(b"\n", pos)
            if newline < 0:
                self._line += view[pos:]
                if len(self._line) > MAX_LINE:
                    raise _malformed("chunk header too long")
                return out
            self._line += view[pos:newline + 1]
            pos = newline + 1
            line = bytes(self._line)
            self._line.clear()
            if not line.endswith(b"\r\n"):
                raise _malformed("lines must end with CRLF")
            self._on_line(line[:-2])
        return out

    def _on_line(self, line: bytes) -> None:
        if self._state == "size":
            size_text, _, extension = line.partition(b";")
            try:
                size = int(size_text, 16)
            except ValueError:
                raise _malformed("bad chunk size") from None
            self._signature = None
            if extension:
                name, _, value = extension.partition(b"=")
                if name.strip() != b"chunk-signature":
                    raise _malformed("unknown chunk extension")
                self._signature = value.strip().decode("ascii", "replace")
            if self.signer is not None and self._signature is None:
                raise _malformed("missing chunk signature")
            if size == 0:
                self._check_signature(EMPTY_SHA256)
                self._state = "trailer"
            else:
                self._remaining = size
                self._chunk_hash = hashlib.sha256() if self.signer is not None else None
                self._state = "data"
        elif self._state == "data-end":
            if line:
                raise _malformed("chunk longer than its declared size")
            if self._chunk_hash is not None:
                self._check_signature(self._chunk_hash.hexdigest())
            self._state = "size"
        elif self._state == "trailer":
            if not line:
                if self.signed_trailer and self.signer is not None and "x-amz-trailer-signature" not in self.trailers:
                    raise _malformed("missing trailer signature")
                self.done = True
                return
            name, sep, value = line.decode("latin-1").partition(":")
            if not sep:
                raise _malformed("bad trailer line")
            name, value = name.strip().lower(), value.strip()
            if name == "x-amz-trailer-signature":
                if self.signer is not None:
                    self.signer.verify_trailer(self._trailer_text, value)
            else:
                self._trailer_text += f"{name}:{value}\n".encode("latin-1")
            self.trailers[name] = value

    def _check_signature(self, data_sha256: str) -> None:
        if self.signer is not None:
            self.signer.verify_chunk(data_sha256, self._signature or "")

    def close(self) -> None:
        if not self.done:
            # Some encoders end the body right after the last trailer line, without the final CRLF.
            if self._state == "trailer" and not self._line:
                self.done = True
                return
            raise ServiceError("IncompleteBody", "The request body terminated unexpectedly", 400)
