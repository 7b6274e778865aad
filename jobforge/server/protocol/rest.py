"""What restJson1 and restXml share: URI-template routing, and the HTTP bindings
of members (labels, query string, headers, status code) in requests and responses."""

from __future__ import annotations

import base64
# URI templates compile to plain patterns: the stdlib engine matches them several times faster than
# ``regex`` (which the validator needs for botocore's patterns), and every request tries many routes.
import re
from dataclasses import dataclass
from functools import lru_cache
from typing import Iterator
from urllib.parse import unquote

from jobforge.core import service_models
from jobforge.server.protocol.http import HttpRequest, HttpResponse
from jobforge.server.protocol.wire import format_timestamp, from_text

# What an HTTP/1.1 field value can carry: visible characters, space, tab and obs-text (Latin-1).
_UNSENDABLE = re.compile(r"[^\t\x20-\x7e\x80-\xff]")


@dataclass(frozen=True)
class Route:
    operation: str
    method: str
    pattern: re.Pattern
    query_literals: tuple[tuple[str, str | None], ...]
    rank: tuple


def _compile(template: str) -> tuple[re.Pattern, int, int]:
    literal_chars, greedy = 0, 0
    parts = []
    for piece in re.split(r"(\{[^}]+\})", template):
        if piece.startswith("{"):
            name = piece[1:-1]
            if name.endswith("+"):
                greedy += 1
                parts.append(f"(?P<{_group(name[:-1])}>.+)")
            else:
                parts.append(f"(?P<{_group(name)}>[^/]+)")
        else:
            literal_chars += len(piece)
            parts.append(re.escape(piece))
    return re.compile("".join(parts) + "/?"), literal_chars, greedy


def _group(label: str) -> str:
    return "L_" + label.replace("-", "_")


@lru_cache(maxsize=None)
def routes(service: str) -> tuple[Route, ...]:
    model = service_models.service_model(service)
    table = []
    for name in model.operation_names:
        operation = service_models.operation(service, name)
        http = operation.http
        path, _, query = http["requestUri"].partition("?")
        literals = tuple(
            (key, value if sep else None)
            for key, sep, value in (item.partition("=") for item in query.split("&") if item)
        )
        pattern, literal_chars, greedy = _compile(path)
        # A deprecated operation yields its request to the one replacing it (GetBucketLifecycleConfiguration).
        rank = (-len(literals), -literal_chars, greedy, bool(operation.deprecated))
        table.append(Route(name, http["method"], pattern, literals, rank))
    return tuple(sorted(table, key=lambda r: r.rank))


def path_matches(service: str, raw_path: str, query: dict[str, str]) -> Iterator[tuple[Route, re.Match]]:
    """The routes whose URI template and query literals the request fits (any method), best ranked first."""
    for route in routes(service):
        found = route.pattern.fullmatch(raw_path)
        if found is None:
            continue
        if any(key not in query or (value is not None and query[key] != value) for key, value in route.query_literals):
            continue
        yield route, found


def match(service: str, request: HttpRequest) -> str | None:
    path_matched = False
    for route, found in path_matches(service, request.raw_path, dict(request.query())):
        path_matched = True
        if route.method == request.method:
            request.scratch["labels"] = decoded_labels(found)
            return route.operation
    request.scratch["path_matched"] = path_matched
    return None


def decoded_labels(found: re.Match) -> dict[str, str]:
    """The URI labels of a matched route, percent-decoded after splitting.

    An invalid UTF-8 percent-encoding decodes to unpaired surrogates rather than being silently replaced,
    so the validator refuses the member that carried it.
    """
    return {k[2:]: unquote(v, errors="surrogateescape") for k, v in found.groupdict().items()}


def bound_members(service: str, operation: str, request: HttpRequest) -> tuple[dict, list[str]]:
    """Members bound to the URI, query string and headers; and the names left for the body."""
    shape = service_models.operation(service, operation).input_shape
    params: dict = {}
    body_members: list[str] = []
    if shape is None:
        return params, body_members
    labels = request.scratch.get("labels", {})
    query = request.query()
    claimed = {m.serialization.get("name", n) for n, m in shape.members.items()
               if m.serialization.get("location") == "querystring" and m.type_name != "map"}
    for name, member in shape.members.items():
        location = member.serialization.get("location")
        wire = member.serialization.get("name", name)
        if location == "uri":
            if wire in labels:
                params[name] = from_text(member, labels[wire])
        elif location == "querystring":
            if member.type_name == "map":
                values = {k: v for k, v in query if k not in claimed}
                if values:
                    params[name] = values
            elif member.type_name == "list":
                values = [from_text(member.member, v) for k, v in query if k == wire]
                if values:
                    params[name] = values
            else:
                value = next((v for k, v in query if k == wire), None)
                if value is not None:
                    params[name] = from_text(member, value)
        elif location == "headers" or (location == "header" and member.type_name == "map"):
            prefix = wire.lower()
            values = {k[len(prefix):]: v for k, v in request.headers.items() if k.startswith(prefix)}
            if values:
                params[name] = values
        elif location == "header":
            value = request.headers.get(wire.lower())
            if value is not None:
                if member.type_name == "list":
                    params[name] = [from_text(member.member, v.strip()) for v in value.split(",")]
                else:
                    params[name] = from_text(member, value)
        elif location != "statusCode":
            body_members.append(name)
    return params, body_members


def bind_output(shape, result: dict, response: HttpResponse) -> dict:
    """Puts the output members bound to headers and the status code on the response; returns the members
    left for the body (the payload member apart)."""
    payload = shape.serialization.get("payload")
    body_members = {}
    for name, member in shape.members.items():
        value = result.get(name)
        location = member.serialization.get("location")
        wire = member.serialization.get("name", name)
        if location == "header":
            if value is not None:
                response.header(wire, header_text(member, value))
        elif location == "headers":
            for key, item in (value or {}).items():
                response.header(wire + key, header_value(str(item)))
        elif location == "statusCode":
            if value is not None:
                response.status = int(value)
        elif name != payload and value is not None:
            body_members[name] = value
    return body_members


def header_text(member, value) -> str:
    """A member bound to a header, as its value goes on the wire."""
    if member.type_name == "timestamp":
        return str(format_timestamp(value, member.serialization.get("timestampFormat", "rfc822")))
    if member.type_name == "boolean":
        return "true" if value else "false"
    return header_value(str(value))


def header_value(text: str) -> str:
    """A header value as it can go on the wire, never with a line break that would end it.

    Text a header cannot carry is sent RFC 2047-encoded, as S3 returns non-ASCII metadata.
    """
    if not _UNSENDABLE.search(text):
        return text
    return "=?UTF-8?B?" + base64.b64encode(text.encode("utf-8", "replace")).decode() + "?="
