"""What every model server answers with: a ``Predictor``, and the error a bad request gets."""

from __future__ import annotations

from typing import Callable, Iterator, Protocol

from jobforge.workloads.serving import codecs


class ClientError(Exception):
    """A request the model cannot answer as sent: its HTTP status (400, 406, 415) and why."""

    def __init__(self, message: str, status: int = 400):
        super().__init__(message)
        self.status = status


class Predictor(Protocol):
    def invoke(self, body: bytes, content_type: str | None, accept: str | None) -> tuple[bytes, str]:
        """The answer's body and content type."""

    def stream(self, body: bytes, content_type: str | None, accept: str | None) -> tuple[Iterator[bytes], str]:
        """The answer's parts as they are produced, and its content type."""


class ArrayPredictor:
    """A model called on one array decoded from the request; its result encoded for the accept type."""

    def __init__(self, predict: Callable):
        self.predict = predict

    def invoke(self, body: bytes, content_type: str | None, accept: str | None) -> tuple[bytes, str]:
        try:
            data = codecs.decode(body, content_type)
        except codecs.UnsupportedType as err:
            raise ClientError(str(err), 415) from None
        except ValueError as err:
            raise ClientError(f"The request body cannot be read as {codecs.base_type(content_type)}: {err}") \
                from None
        result = self.predict(data)
        try:
            return codecs.encode(result, accept)
        except codecs.UnsupportedType as err:
            raise ClientError(str(err), 406) from None

    def stream(self, body: bytes, content_type: str | None, accept: str | None) -> tuple[Iterator[bytes], str]:
        answer, kind = self.invoke(body, content_type, accept)
        return iter([answer]), kind
