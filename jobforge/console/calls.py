"""The console's way to act: the server's own operations, called in-process as the signed-in account.

Each call goes through what a client's request goes through once it is authenticated: the operation's input
shape (botocore's model, the same validation), then its handler with a request context of the session's
account, principal and access key. There is no other path to change anything, so every account check a
handler makes holds for the console too.
"""

from __future__ import annotations

import uuid

from anyio import to_thread

from jobforge.api.base import HANDLERS, RequestContext, not_implemented
from jobforge.console.sessions import Session
from jobforge.core import service_models
from jobforge.server import router
from jobforge.server.protocol.validate import check_input

# A handler's streamed members (an S3 body) are given after validation, as the app does with staged bodies.
UNVALIDATED = ("Body",)


class Caller:
    def __init__(self, runtime, session: Session, region: str, limiter):
        self.runtime = runtime
        self.session = session
        self.region = region
        self.limiter = limiter

    def call_now(self, service: str, operation: str, params: dict | None = None) -> dict:
        """The operation's result as its handler returns it (Python values); a ServiceError as a client gets it."""
        found = HANDLERS.get((service, operation))
        if found is None:
            raise not_implemented(service, operation)
        params = dict(params or {})
        streamed = {name: params.pop(name) for name in UNVALIDATED if name in params}
        checked = check_input(service_models.operation(service, operation).input_shape, params,
                              router.protocol_name(service))
        checked.update(streamed)
        ctx = RequestContext(self.runtime, self.session.account_id, self.session.principal_arn,
                             self.session.access_key_id, str(uuid.uuid4()), self.region, service, operation, {})
        return found.fn(ctx, checked) or {}

    async def call(self, service: str, operation: str, params: dict | None = None) -> dict:
        """call_now in a worker thread: handlers read the store and may block."""
        return await to_thread.run_sync(self.call_now, service, operation, params,
                                        limiter=self.limiter)
