"""SigV4 verification (header and presigned-query forms).

Written against ``botocore/auth.py`` rather than with it: botocore signs
outgoing requests and has no verifier, and its canonical-request builder needs
an AWSRequest, not the raw bytes a server must check. Every step follows it.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from functools import lru_cache
from urllib.parse import quote, unquote

from botocore.utils import normalize_url_path

from jobforge.core.accounts import Credential, KeyRing
from jobforge.core.errors import ServiceError
from jobforge.server.protocol.http import HttpRequest

ALGORITHM = "AWS4-HMAC-SHA256"
AMZ_DATE = "%Y%m%dT%H%M%SZ"
MAX_SKEW = dt.timedelta(minutes=15)
UNSIGNED_QUERY_KEYS = frozenset({"X-Amz-Signature"})


class AuthError(Exception):
    """kind: missing | unknown_key | bad_signature | bad_query | expired | expired_token | access_denied |
    scope_date | unsigned_host."""

    def __init__(self, kind: str, message: str):
        super().__init__(message)
        self.kind = kind
        self.message = message


@dataclass(frozen=True)
class Scope:
    access_key_id: str
    date: str
    region: str
    service: str


@dataclass(frozen=True)
class Identity:
    account_id: str
    principal_arn: str
    access_key_id: str
    job_id: str | None = None


@dataclass(frozen=True)
class _Claim:
    """What a request's signature claims, checked as far as it can be without the body."""
    credential: Credential
    scope: Scope
    amz_date: str
    signed_headers: str
    signature: str
    skip_query: frozenset[str]
    presigned: bool


def credential_scope(request: HttpRequest) -> Scope | None:
    """The scope a request claims, for routing, before anything is verified (parsed once per request)."""
    if "scope" not in request.scratch:
        request.scratch["scope"] = _parse_scope(request)
    return request.scratch["scope"]


def _parse_scope(request: HttpRequest) -> Scope | None:
    header = request.headers.get("authorization", "")
    if header.startswith(ALGORITHM):
        credential = _header_fields(request).get("Credential", "")
    else:
        credential = next((unquote(v) for k, v in _raw_pairs(request.query_string) if k == "X-Amz-Credential"), "")
    parts = credential.split("/")
    if len(parts) != 5 or parts[4] != "aws4_request":
        return None
    return Scope(*parts[:4])


def _header_fields(request: HttpRequest) -> dict[str, str]:
    if "auth_fields" not in request.scratch:
        request.scratch["auth_fields"] = _auth_fields(request.headers.get("authorization", ""))
    return request.scratch["auth_fields"]


def _auth_fields(header: str) -> dict[str, str]:
    fields = {}
    for item in header[len(ALGORITHM):].split(","):
        key, _, value = item.strip().partition("=")
        fields[key] = value
    return fields


def _raw_pairs(query_string: str) -> list[tuple[str, str]]:
    return [(k, v) for k, _, v in (p.partition("=") for p in query_string.split("&") if p)]


@lru_cache(maxsize=1024)
def signing_key(secret: str, date: str, region: str, service: str) -> bytes:
    key = hmac.new(("AWS4" + secret).encode(), date.encode(), hashlib.sha256).digest()
    for part in (region, service, "aws4_request"):
        key = hmac.new(key, part.encode(), hashlib.sha256).digest()
    return key


def _canonical_query(query_string: str, skip: set[str]) -> str:
    if not query_string:
        return ""
    pairs = []
    for key, value in _raw_pairs(query_string):
        key, value = quote(unquote(key), safe="-_.~"), quote(unquote(value), safe="-_.~")
        if unquote(key) not in skip:
            pairs.append((key, value))
    return "&".join(f"{k}={v}" for k, v in sorted(pairs))


@lru_cache(maxsize=4096)
def _canonical_uri(raw_path: str, service: str) -> str:
    if service == "s3":
        return raw_path or "/"
    return quote(normalize_url_path(raw_path or "/"), safe="/~")


def _parse_amz_date(text: str) -> dt.datetime:
    """yyyymmddTHHMMSSZ (sliced by hand: strptime costs more than the whole signature check)."""
    try:
        if len(text) != 16 or text[8] != "T" or text[15] != "Z":
            raise ValueError(text)
        return dt.datetime(int(text[0:4]), int(text[4:6]), int(text[6:8]), int(text[9:11]), int(text[11:13]),
                           int(text[13:15]), tzinfo=dt.timezone.utc)
    except ValueError:
        raise AuthError("bad_signature", f"Invalid X-Amz-Date: {text!r}") from None


def request_amz_date(request: HttpRequest) -> str | None:
    """The request's time as SigV4 signs it (yyyymmddTHHMMSSZ): X-Amz-Date, else the Date header.

    SigV4 takes either; a Date header usually has the HTTP form ("Mon, 09 Sep 2011 23:36:00 GMT"), and
    its time is what the string to sign holds.
    """
    if "x-amz-date" in request.headers:
        return request.headers["x-amz-date"]
    date = request.headers.get("date")
    if date is None:
        return None
    try:
        _parse_amz_date(date)
        return date
    except AuthError:
        pass
    try:
        parsed = parsedate_to_datetime(date)
        if parsed.tzinfo is None:
            parsed = parsed.replace(tzinfo=dt.timezone.utc)
        return parsed.astimezone(dt.timezone.utc).strftime(AMZ_DATE)
    except (TypeError, ValueError, OverflowError):
        raise AuthError("bad_signature", f"Invalid Date header: {date!r}") from None


def _check_scope_date(scope: Scope, amz_date: str) -> None:
    if scope.date != amz_date[:8]:
        raise AuthError("scope_date", f"Date in Credential scope does not match YYYYMMDD from ISO-8601 version of "
                        f"date from HTTP: '{scope.date}' != '{amz_date[:8]}', from '{amz_date}'.")


def _check_host_signed(signed_headers: str) -> None:
    if "host" not in signed_headers.lower().split(";"):
        raise AuthError("unsigned_host", "'Host' or ':authority' must be a 'SignedHeader' in the AWS Authorization.")


class Verifier:
    def __init__(self, keys: KeyRing):
        self.keys = keys

    def check_before_body(self, request: HttpRequest, now: dt.datetime | None = None) -> None:
        """Everything about a request's signature that does not need its body, so that a request that
        would be refused anyway is refused before its body is read; ``verify`` finishes the check."""
        request.scratch["auth_claim"] = self._claim(request, now or dt.datetime.now(dt.timezone.utc))

    def verify(self, request: HttpRequest, now: dt.datetime | None = None) -> tuple[Identity, Scope]:
        claim = request.scratch.pop("auth_claim", None)
        if claim is None:
            claim = self._claim(request, now or dt.datetime.now(dt.timezone.utc))
        if claim.presigned:
            payload = "UNSIGNED-PAYLOAD" if claim.scope.service == "s3" else hashlib.sha256(request.body).hexdigest()
        else:
            payload = self._payload_hash(request, claim.scope)
        expected = self._signature(request, claim.credential, claim.scope, claim.amz_date, claim.signed_headers,
                                   payload, claim.skip_query)
        if not hmac.compare_digest(expected, claim.signature):
            raise AuthError("bad_signature", "The request signature we calculated does not match the signature you "
                            "provided. Check your AWS Secret Access Key and signing method.")
        return self._identity(claim.credential), claim.scope

    def _claim(self, request: HttpRequest, now: dt.datetime) -> _Claim:
        header = request.headers.get("authorization")
        if header is not None and header.startswith(ALGORITHM):
            return self._header_claim(request, now)
        if "X-Amz-Signature=" in request.query_string:
            return self._presigned_claim(request, now)
        if header or "AWSAccessKeyId=" in request.query_string:
            raise AuthError("bad_signature", "Only AWS Signature Version 4 (AWS4-HMAC-SHA256) is supported: sign "
                            "with signature_version 's3v4' (the profile jobforge writes does)")
        raise AuthError("missing", "Missing Authentication Token")

    def _header_claim(self, request: HttpRequest, now: dt.datetime) -> _Claim:
        fields = _header_fields(request)
        scope = credential_scope(request)
        if scope is None or "SignedHeaders" not in fields or "Signature" not in fields:
            raise AuthError("bad_signature", "Authorization header requires Credential, SignedHeaders and Signature")
        date = request_amz_date(request)
        if date is None:
            raise AuthError("bad_signature", "Authorization header requires existence of either a 'X-Amz-Date' or "
                            "a 'Date' header.")
        when = _parse_amz_date(date)
        if abs(now - when) > MAX_SKEW:
            raise AuthError("expired", f"Signature expired: {date} is now earlier than "
                            f"{(now - MAX_SKEW).strftime(AMZ_DATE)} ({now.strftime(AMZ_DATE)} - 15 min.)"
                            if when < now else f"Signature not yet current: {date} is still later than "
                            f"{(now + MAX_SKEW).strftime(AMZ_DATE)}")
        _check_scope_date(scope, date)
        _check_host_signed(fields["SignedHeaders"])
        credential = self._credential(scope, request.headers.get("x-amz-security-token"), now)
        if scope.service == "s3":
            self._payload_hash(request, scope)  # S3's claimed payload hash must be there before its body is read
        return _Claim(credential, scope, date, fields["SignedHeaders"], fields["Signature"], frozenset(), False)

    @staticmethod
    def _payload_hash(request, scope: Scope) -> str:
        """The payload hash the signature covers.

        S3 alone takes the client's x-amz-content-sha256 (UNSIGNED-PAYLOAD and
        streaming forms included): its body is checked against that claim as it
        streams in. Every other service signs the hash of the body as received.
        """
        claimed = request.headers.get("x-amz-content-sha256")
        if scope.service == "s3":
            if not claimed:  # S3 reads the body after this check: without the claim nothing would cover it
                raise ServiceError("InvalidRequest", "Missing required header for this request: "
                                   "x-amz-content-sha256", 400)
            return claimed
        actual = hashlib.sha256(request.body).hexdigest()
        if claimed is not None and claimed != actual:
            raise AuthError("bad_signature", "The provided 'x-amz-content-sha256' header does not match what was "
                            "computed.")
        return actual

    def _presigned_claim(self, request: HttpRequest, now: dt.datetime) -> _Claim:
        params = {k: unquote(v) for k, v in _raw_pairs(request.query_string)}
        scope = credential_scope(request)
        if params.get("X-Amz-Algorithm") != ALGORITHM or scope is None or "X-Amz-Date" not in params:
            raise AuthError("bad_signature", "Query-string authentication requires X-Amz-Algorithm, "
                            "X-Amz-Credential, X-Amz-Date, X-Amz-SignedHeaders and X-Amz-Signature")
        when = _parse_amz_date(params["X-Amz-Date"])
        try:
            expires = int(params.get("X-Amz-Expires", "604800"))
        except ValueError:
            raise AuthError("bad_query", "X-Amz-Expires should be a number") from None
        if not 1 <= expires <= 604800:
            raise AuthError("bad_query", "X-Amz-Expires must be less than a week (in seconds) that is 604800")
        if now > when + dt.timedelta(seconds=expires):
            raise AuthError("access_denied", "Request has expired")
        if when - now > MAX_SKEW:
            raise AuthError("expired", "Request is not yet valid")
        if scope.date != params["X-Amz-Date"][:8]:
            raise AuthError("bad_query", "Invalid credential date. Date is not the same as X-Amz-Date.")
        signed = params.get("X-Amz-SignedHeaders", "host")
        _check_host_signed(signed)
        credential = self._credential(scope, params.get("X-Amz-Security-Token"), now)
        return _Claim(credential, scope, params["X-Amz-Date"], signed, params.get("X-Amz-Signature", ""),
                      UNSIGNED_QUERY_KEYS, True)

    def _credential(self, scope: Scope, token: str | None, now: dt.datetime) -> Credential:
        credential = self.keys.get(scope.access_key_id)
        if credential is None:
            raise AuthError("unknown_key", "The security token included in the request is invalid.")
        if credential.session_token is not None:
            if token is None or not hmac.compare_digest(token, credential.session_token):
                raise AuthError("unknown_key", "The security token included in the request is invalid.")
            if credential.expires_at is not None and credential.expires_at < now.timestamp():
                raise AuthError("expired_token", "The security token included in the request is expired")
        return credential

    @staticmethod
    def _signature(request, credential, scope, amz_date, signed_headers, payload, skip_query) -> str:
        names = signed_headers.split(";")
        headers = "".join(f"{n}:{' '.join(request.headers.get(n, '').split())}\n" for n in names)
        canonical = "\n".join([
            request.method.upper(), _canonical_uri(request.raw_path, scope.service),
            _canonical_query(request.query_string, skip_query), headers, signed_headers, payload])
        string_to_sign = "\n".join([
            ALGORITHM, amz_date, f"{scope.date}/{scope.region}/{scope.service}/aws4_request",
            hashlib.sha256(canonical.encode("utf-8", "surrogateescape")).hexdigest()])
        key = signing_key(credential.secret_key, scope.date, scope.region, scope.service)
        return hmac.new(key, string_to_sign.encode(), hashlib.sha256).hexdigest()

    @staticmethod
    def _identity(credential: Credential) -> Identity:
        return Identity(credential.account_id, credential.principal_arn, credential.access_key_id, credential.job_id)
