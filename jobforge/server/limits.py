"""How large a request body may be, known from its headers before the body is read.

S3 streams its bodies and keeps its own limits (5 GB in one PUT). Every other
service's body is held in memory to be hashed for its signature and parsed, so
it is bounded: by the largest payload its models allow (bedrock-runtime's
InvokeModel body: 25,000,000 bytes) and never below CONTROL_PLANE_BODY, room
for any control-plane document the models allow (an IAM policy of 131,072
characters, form-encoded, is under 1.2 MB).
"""

from __future__ import annotations

from functools import lru_cache

from jobforge.core import service_models
from jobforge.core.errors import ServiceError
from jobforge.server.router import SERVICES_BY_SCOPE

CONTROL_PLANE_BODY = 2 * 1024 * 1024
WORKER_REPORT_BODY = 64 * 1024 * 1024  # the internal API: a worker's batch of log lines and metrics
# Bodies the models do not bound: Lambda's CreateFunction carries a 50 MB ZipFile base64-encoded in JSON, and
# AWS takes such requests up to this size.
SERVICE_BODIES = {"lambda": 69_905_067}


@lru_cache(maxsize=None)
def _largest_payload(service: str) -> int:
    """The largest body-payload blob the service's model bounds (0 when none is bounded)."""
    largest = 0
    model = service_models.service_model(service)
    for name in model.operation_names:
        shape = model.operation_model(name).input_shape
        payload = shape.serialization.get("payload") if shape is not None else None
        member = shape.members[payload] if payload else None
        if member is not None and member.type_name == "blob":
            largest = max(largest, member.metadata.get("max", 0))
    return largest


def body_limit(scope_service: str | None) -> int:
    """The most bytes a non-S3 request signed for scope_service may send (unsigned: a control-plane call)."""
    return max([CONTROL_PLANE_BODY, SERVICE_BODIES.get(scope_service, 0),
                *map(_largest_payload, SERVICES_BY_SCOPE.get(scope_service, ()))])


def check_declared_size(headers: dict, limit: int) -> None:
    """Refuse a body whose Content-Length already says it is too large, before any of it is read."""
    declared = headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise too_large(limit)


def too_large(limit: int) -> ServiceError:
    return ServiceError("RequestEntityTooLarge", f"Request body too large: this service accepts at most {limit} "
                        "bytes", 413)
