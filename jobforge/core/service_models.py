"""Service models, loaded from the installed botocore: the specification."""

from __future__ import annotations

from functools import lru_cache

import botocore.session
from botocore.model import OperationModel, ServiceModel

_session = botocore.session.get_session()


@lru_cache(maxsize=None)
def service_model(name: str) -> ServiceModel:
    return _session.get_service_model(name)


@lru_cache(maxsize=None)
def operation(service: str, name: str) -> OperationModel:
    return service_model(service).operation_model(name)


@lru_cache(maxsize=None)
def error_index(service: str) -> dict[str, tuple[int, str | None]]:
    """Wire error code → (HTTP status, message member name) for every modelled error."""
    model = service_model(service)
    index: dict[str, tuple[int, str | None]] = {}
    for shape in model.error_shapes:
        error = shape.metadata.get("error", {})
        status = error.get("httpStatusCode", 400)
        member = next((m for m in shape.members if m.lower() == "message"), None)
        index[shape.name] = (status, member)
        if error.get("code"):
            index[error["code"]] = (status, member)
    return index


def message_member(service: str) -> str:
    """The casing a service uses for error messages (SageMaker: 'Message')."""
    counts = {"message": 0, "Message": 0}
    for _, member in error_index(service).values():
        if member in counts:
            counts[member] += 1
    return "Message" if counts["Message"] > counts["message"] else "message"
