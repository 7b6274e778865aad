"""The plain HTTP request and response every protocol codec works on."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import AsyncIterator
from urllib.parse import parse_qsl, unquote


@dataclass
class HttpRequest:
    method: str
    raw_path: str  # still percent-encoded, as signed
    query_string: str  # raw
    headers: dict[str, str]  # lower-case names; repeated headers joined with ","
    body: bytes = b""
    body_file: object = None  # a spooled file when the body was streamed to disk (S3)
    scratch: dict = field(default_factory=dict)  # what routing learnt, reused by parsing

    @property
    def path(self) -> str:
        return unquote(self.raw_path)

    @property
    def host(self) -> str:
        return self.headers.get("host", "")

    def query(self) -> list[tuple[str, str]]:
        """The query string's pairs, percent-decoded; invalid UTF-8 decodes to unpaired surrogates (never
        silently replaced), so the validator refuses the member that carried it."""
        return parse_qsl(self.query_string, keep_blank_values=True, errors="surrogateescape") \
            if self.query_string else []


@dataclass
class HttpResponse:
    status: int = 200
    headers: list[tuple[str, str]] = field(default_factory=list)
    body: bytes | AsyncIterator[bytes] = b""

    def header(self, name: str, value: str) -> "HttpResponse":
        self.headers.append((name, value))
        return self

    def pop_header(self, name: str) -> str | None:
        """Removes the header (any case) and returns its value; None when it is not set."""
        found = next(((key, value) for key, value in self.headers if key.lower() == name.lower()), None)
        if found is None:
            return None
        self.headers.remove(found)
        return found[1]
