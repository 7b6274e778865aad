"""SigV4 verification (header and presigned-query forms), S3's SigV2 (header and presigned-query forms), the
signed policy of an S3 POST form upload, and SageMaker's bearer tokens.

A SageMaker bearer token (``Authorization: Bearer sagemaker-api-key-<base64>``, what the SageMaker SDK's
``generate_token`` makes) carries a SigV4-presigned ``POST https://sagemaker.amazonaws.com/?Action=
CallWithBearerToken`` URL with ``&Version=1`` appended: it is verified as that presigned request (its
key, signature and expiry), and its credential scope stands for the request's.

Written against ``botocore/auth.py`` rather than with it: botocore signs
outgoing requests and has no verifier, and its canonical-request builder needs
an AWSRequest, not the raw bytes a server must check. Every step follows it.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import hmac
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from functools import lru_cache
from urllib.parse import quote, unquote

from botocore.auth import HmacV1Auth
from botocore.utils import normalize_url_path

from jobforge.core.accounts import Credential, KeyRing
from jobforge.core.errors import ServiceError
from jobforge.server.protocol.http import HttpRequest
from jobforge.server.protocol.restxml import addressed

ALGORITHM = "AWS4-HMAC-SHA256"
AMZ_DATE = "%Y%m%dT%H%M%SZ"
MAX_SKEW = dt.timedelta(minutes=15)
UNSIGNED_QUERY_KEYS = frozenset({"X-Amz-Signature"})
SIGV2_HEADER = "AWS "
SIGV2_SUBRESOURCES = frozenset(HmacV1Auth.QSAOfInterest)  # the query keys SigV2 signs as part of the resource
BEARER = "Bearer "
BEARER_KEY_PREFIX = "sagemaker-api-key-"
BEARER_ACTION = "CallWithBearerToken"
BEARER_VERSION = "&Version=1"


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
    signed_request: HttpRequest | None = None  # what the signature covers, when not the request (a bearer token)


def credential_scope(request: HttpRequest) -> Scope | None:
    """The scope a request claims, for routing, before anything is verified (parsed once per request)."""
    if "scope" not in request.scratch:
        request.scratch["scope"] = _parse_scope(request)
    return request.scratch["scope"]


def bearer_request(request: HttpRequest) -> HttpRequest | None:
    """The presigned request a SageMaker bearer token carries; None without one (decoded once per request)."""
    if "bearer" not in request.scratch:
        request.scratch["bearer"] = _decode_bearer(request.headers.get("authorization", ""))
    return request.scratch["bearer"]


def _decode_bearer(header: str) -> HttpRequest | None:
    if not header.startswith(BEARER + BEARER_KEY_PREFIX):
        return None
    try:
        url = base64.b64decode(header[len(BEARER + BEARER_KEY_PREFIX):].strip(), validate=True).decode()
    except (ValueError, UnicodeDecodeError):
        return None
    if not url.endswith(BEARER_VERSION):
        return None
    host, _, rest = url.removesuffix(BEARER_VERSION).partition("/")
    path, _, query = rest.partition("?")
    return HttpRequest("POST", "/" + path, query, {"host": host})


def _parse_scope(request: HttpRequest) -> Scope | None:
    signed = bearer_request(request)
    if signed is not None:
        return _parse_scope(signed)
    header = request.headers.get("authorization", "")
    v2_key = _sigv2_key(request)
    if v2_key is not None:  # S3 alone takes SigV2; the verifier gives the scope its region
        return Scope(v2_key, "", "", "s3")
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


def _sigv2_key(request: HttpRequest) -> str | None:
    """The access key id of a SigV2-signed request (header or query form), None for any other request."""
    header = request.headers.get("authorization", "")
    if header.startswith(SIGV2_HEADER):
        return header[len(SIGV2_HEADER):].rpartition(":")[0].strip()
    if "AWSAccessKeyId=" in request.query_string and "Signature=" in request.query_string:
        return next((unquote(v) for k, v in _raw_pairs(request.query_string) if k == "AWSAccessKeyId"), None)
    return None


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
    if not {"host", ":authority"} & set(signed_headers.lower().split(";")):  # HTTP/2 clients may sign either
        raise AuthError("unsigned_host", "'Host' or ':authority' must be a 'SignedHeader' in the AWS Authorization.")


class Verifier:
    def __init__(self, keys: KeyRing, region: str):
        self.keys = keys
        self.region = region  # what a SigV2 request, which names none, is served in

    def check_before_body(self, request: HttpRequest, now: dt.datetime | None = None) -> None:
        """Everything about a request's signature that does not need its body, so that a request that
        would be refused anyway is refused before its body is read; ``verify`` finishes the check."""
        request.scratch["auth_claim"] = self._claim(request, now or dt.datetime.now(dt.timezone.utc))

    def verify(self, request: HttpRequest, now: dt.datetime | None = None) -> tuple[Identity, Scope]:
        if _sigv2_key(request) is not None:
            return self._verify_v2(request, now or dt.datetime.now(dt.timezone.utc))
        claim = request.scratch.pop("auth_claim", None)
        if claim is None:
            claim = self._claim(request, now or dt.datetime.now(dt.timezone.utc))
        signed = claim.signed_request or request
        if claim.presigned:
            payload = "UNSIGNED-PAYLOAD" if claim.scope.service == "s3" else hashlib.sha256(signed.body).hexdigest()
        else:
            payload = self._payload_hash(request, claim.scope)
        expected = self._signature(signed, claim.credential, claim.scope, claim.amz_date, claim.signed_headers,
                                   payload, claim.skip_query)
        if not hmac.compare_digest(expected, claim.signature):
            raise AuthError("bad_signature", "The request signature we calculated does not match the signature you "
                            "provided. Check your AWS Secret Access Key and signing method.")
        return self._identity(claim.credential), claim.scope

    def _claim(self, request: HttpRequest, now: dt.datetime) -> _Claim:
        header = request.headers.get("authorization")
        if header is not None and header.startswith(BEARER):
            return self._bearer_claim(request, now)
        if header is not None and header.startswith(ALGORITHM):
            return self._header_claim(request, now)
        if "X-Amz-Signature=" in request.query_string:
            return self._presigned_claim(request, now)
        if header or "AWSAccessKeyId=" in request.query_string:
            raise AuthError("bad_signature", "Only AWS Signature Version 4 (AWS4-HMAC-SHA256) is supported here "
                            "(S3 alone also takes Signature Version 2)")
        raise AuthError("missing", "Missing Authentication Token")

    def _bearer_claim(self, request: HttpRequest, now: dt.datetime) -> _Claim:
        signed = bearer_request(request)
        if signed is None:
            raise AuthError("bad_signature", f"A bearer token must be a SageMaker API key ({BEARER_KEY_PREFIX}…, "
                            "as the SageMaker SDK's generate_token makes).")
        action = dict(_raw_pairs(signed.query_string)).get("Action")
        if action != BEARER_ACTION or credential_scope(request) is None or credential_scope(request).service != \
                "sagemaker":
            raise AuthError("bad_signature", f"The bearer token must presign {BEARER_ACTION} for the sagemaker "
                            "service.")
        claim = self._presigned_claim(signed, now)
        return _Claim(claim.credential, claim.scope, claim.amz_date, claim.signed_headers, claim.signature,
                      claim.skip_query, True, signed)

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

    # -- Signature Version 2 (S3 only) ------------------------------------------------

    def _verify_v2(self, request: HttpRequest, now: dt.datetime) -> tuple[Identity, Scope]:
        """A SigV2 request: HMAC-SHA1 over S3's string to sign, in the Authorization header or the query
        (AWSAccessKeyId, Signature, Expires)."""
        params = {k: unquote(v) for k, v in _raw_pairs(request.query_string)}
        header = request.headers.get("authorization", "")
        if header.startswith(SIGV2_HEADER):
            signature = header.rpartition(":")[2].strip()
            when = self._v2_date(request, now)
        else:
            signature, when = params.get("Signature", ""), params.get("Expires", "")
            if not when.isdigit():
                raise AuthError("bad_query", "Query-string authentication requires the Signature, Expires and "
                                "AWSAccessKeyId parameters")
            if now.timestamp() > int(when):
                raise AuthError("access_denied", "Request has expired")
        scope = Scope(_sigv2_key(request), "", self.region, "s3")
        token = request.headers.get("x-amz-security-token") or params.get("x-amz-security-token")
        credential = self._credential(scope, token, now)
        expected = sigv2_signature(credential.secret_key, _sigv2_string_to_sign(request, params, when))
        if not hmac.compare_digest(expected, signature):
            raise AuthError("bad_signature", "The request signature we calculated does not match the signature you "
                            "provided. Check your key and signing method.")
        return self._identity(credential), scope

    @staticmethod
    def _v2_date(request: HttpRequest, now: dt.datetime) -> str:
        """The Date line of a SigV2 header signature: the Date header, or empty when x-amz-date gives the time
        (it is then signed among the x-amz- headers); either must be within 15 minutes of now."""
        date = request.headers.get("x-amz-date") or request.headers.get("date")
        try:
            when = _parse_amz_date(date) if date and date[:8].isdigit() else parsedate_to_datetime(date)
            when = when if when.tzinfo is not None else when.replace(tzinfo=dt.timezone.utc)
        except (AuthError, TypeError, ValueError, OverflowError):
            raise AuthError("access_denied", "AWS authentication requires a valid Date or x-amz-date header") \
                from None
        if abs(now - when) > MAX_SKEW:
            raise AuthError("expired", "The difference between the request time and the current time is too "
                            "large.")
        return "" if "x-amz-date" in request.headers else request.headers["date"]

    # -- POST form uploads (S3 only) -----------------------------------------------------

    def verify_post_form(self, fields: dict[str, str], now: dt.datetime | None = None) -> Identity | None:
        """Who signed an S3 POST form's policy (SigV4 or SigV2 fields, names lower-case); None when it is not
        signed at all."""
        now = now or dt.datetime.now(dt.timezone.utc)
        policy = fields.get("policy")
        if "x-amz-signature" in fields:
            if fields.get("x-amz-algorithm") != ALGORITHM:
                raise AuthError("bad_query", f"Policy-based POST requires x-amz-algorithm {ALGORITHM}")
            parts = fields.get("x-amz-credential", "").split("/")
            if len(parts) != 5 or parts[3] != "s3" or parts[4] != "aws4_request":
                raise AuthError("bad_query", "Invalid x-amz-credential: it must be "
                                "<key id>/<date>/<region>/s3/aws4_request")
            scope = Scope(*parts[:4])
            credential = self._credential(scope, fields.get("x-amz-security-token"), now)
            key = signing_key(credential.secret_key, scope.date, scope.region, scope.service)
            expected = hmac.new(key, (policy or "").encode(), hashlib.sha256).hexdigest()
            signature = fields["x-amz-signature"]
        elif "signature" in fields or "awsaccesskeyid" in fields:
            scope = Scope(fields.get("awsaccesskeyid", ""), "", self.region, "s3")
            credential = self._credential(scope, fields.get("x-amz-security-token"), now)
            expected, signature = sigv2_signature(credential.secret_key, policy or ""), fields.get("signature", "")
        else:
            return None
        if not policy:
            raise AuthError("bad_query", "Bucket POST must contain a field named 'policy' when it is signed")
        if not hmac.compare_digest(expected, signature):
            raise AuthError("bad_signature", "The request signature we calculated does not match the signature you "
                            "provided. Check your key and signing method.")
        return self._identity(credential)

    @staticmethod
    def _identity(credential: Credential) -> Identity:
        return Identity(credential.account_id, credential.principal_arn, credential.access_key_id, credential.job_id)


def sigv2_signature(secret: str, string_to_sign: str) -> str:
    return base64.b64encode(hmac.new(secret.encode(), string_to_sign.encode("utf-8", "surrogateescape"),
                                     hashlib.sha1).digest()).decode()


def _sigv2_string_to_sign(request: HttpRequest, params: dict[str, str], when: str) -> str:
    """S3's SigV2 string to sign: method, Content-MD5, Content-Type, the time (Date, or a presigned URL's
    Expires), the x-amz- headers (a presigned URL's x-amz- parameters among them) and the resource."""
    headers = request.headers
    amz = {name.lower(): value for name, value in params.items() if name.lower().startswith("x-amz-")}
    amz.update({name: value for name, value in headers.items() if name.startswith("x-amz-")})
    lines = [request.method.upper(), headers.get("content-md5", params.get("content-md5", "")).strip(),
             headers.get("content-type", params.get("content-type", "")).strip(), when]
    lines += [f"{name}:{','.join(v.strip() for v in amz[name].split(','))}" for name in sorted(amz)]
    return "\n".join(lines + [_sigv2_resource(request)])


def _sigv2_resource(request: HttpRequest) -> str:
    """The path-style path as sent (a virtual host's bucket first; a bucket's own path ends with "/"), with the
    sub-resources SigV2 signs."""
    resource = addressed(request).raw_path or "/"
    if "/" not in resource[1:]:
        resource += "/" if resource != "/" else ""
    signed = []
    for item in request.query_string.split("&"):
        key, equals, value = item.partition("=")
        if key in SIGV2_SUBRESOURCES:
            signed.append((key, f"{key}={unquote(value)}" if equals else key))
    if signed:
        resource += "?" + "&".join(text for _, text in sorted(signed, key=lambda pair: pair[0]))
    return resource
