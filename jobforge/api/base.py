"""What every API handler module uses: the registry and the request context.

A handler is ``def op(ctx: RequestContext, req: dict) -> dict``: ``req`` is
the validated input (datetimes and bytes already converted), the returned dict
is serialized through the operation's output shape. Errors are raised as
``ServiceError`` with the service's modelled code.
"""

from __future__ import annotations

import hashlib
import json
import threading
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Callable

import sqlalchemy as sa

from jobforge.config import Settings
from jobforge.core.errors import ServiceError
from jobforge.core.idempotency import ClientToken

if TYPE_CHECKING:  # handlers are given the server's runtime; they never import the server
    from jobforge.server.runtime import Runtime


@dataclass(frozen=True)
class Handler:
    fn: Callable
    blocking: bool  # runs in a worker thread instead of the event loop


HANDLERS: dict[tuple[str, str], Handler] = {}

# Under this key a handler's result may carry response headers that the service sends but its model does not
# declare (Bedrock's token counts on InvokeModel); no output member has such a name.
UNMODELED_HEADERS = "$unmodeledHeaders"

# Members the model binds to a header that some clients send in the JSON body instead, taken from there when
# the header is absent: (service, operation) → member names. Filled by the API modules that accept it.
HEADER_MEMBERS_IN_BODY: dict[tuple[str, str], tuple[str, ...]] = {}

# Paths outside a service's model that answer as one of its operations (an OpenAI-compatible alias of an
# operation): path → (service, operation). Filled by the API modules that serve them.
PATH_ALIASES: dict[str, tuple[str, str]] = {}


def handler(service: str, operation: str, blocking: bool = False):
    """Register fn for a botocore service model name and operation name."""

    def register(fn):
        HANDLERS[(service, operation)] = Handler(fn, blocking)
        return fn

    return register


@dataclass
class RequestContext:
    runtime: Runtime
    account_id: str
    principal_arn: str
    access_key_id: str
    request_id: str
    region: str
    service: str
    operation: str
    headers: dict
    disconnected: threading.Event = field(default_factory=threading.Event)  # set once the client has gone away

    @property
    def engine(self) -> sa.Engine:
        return self.runtime.engine

    @property
    def settings(self) -> Settings:
        return self.runtime.settings


def request_hash(req: dict, exclude: tuple[str, ...] = ()) -> str:
    """A stable digest of a request, for idempotency-token comparison."""
    body = {k: v for k, v in req.items() if k not in exclude}
    return hashlib.sha256(json.dumps(body, sort_keys=True, default=str).encode()).hexdigest()


def client_token(ctx: RequestContext, scope: str, req: dict, member: str) -> ClientToken | None:
    """The request's client token (in ``member``) with the digest of the rest of the request; None without one.
    A token names a resource of the request's region: the same token in another region creates another one."""
    token = req.get(member)
    return ClientToken(ctx.account_id, f"{ctx.region}/{scope}", token, request_hash(req, exclude=(member,))) \
        if token else None


def not_implemented(service: str, operation: str) -> ServiceError:
    return ServiceError("UnknownOperationException", f"{operation} is not supported by jobforge for {service}", 400)
