"""The one exception type every handler raises for a client-visible error."""

from __future__ import annotations


class ServiceError(Exception):
    """An error with the service's modelled code.

    ``status`` is looked up in the service model when left out; ``fields``
    are extra members of the error shape (Braket's ``reason``, …);
    ``headers`` go out with the error response (S3's ETag on a 304, …).
    """

    def __init__(self, code: str, message: str, status: int | None = None, *, headers: dict | None = None,
                 **fields):
        super().__init__(message)
        self.code = code
        self.message = message
        self.status = status
        self.headers = headers or {}
        self.fields = fields


def validation_error(message: str) -> ServiceError:
    return ServiceError("ValidationException", message, 400)
