"""awsQuery (IAM, STS): form-encoded in, XML out."""

from __future__ import annotations

from urllib.parse import parse_qsl
from xml.sax.saxutils import escape

from jobforge.core import service_models
from jobforge.core.errors import ServiceError
from jobforge.server.protocol.http import HttpRequest, HttpResponse
from jobforge.server.protocol.validate import ERROR_CODES, printable
from jobforge.server.protocol.wire import from_text, to_xml

XML = "text/xml"


def form(request: HttpRequest) -> dict[str, str]:
    if "form" not in request.scratch:
        pairs = request.query()
        if request.body:
            try:
                pairs += parse_qsl(request.body.decode("utf-8"), keep_blank_values=True, errors="surrogateescape")
            except UnicodeDecodeError:
                raise ServiceError("MalformedInput", "The request body is not valid form data", 400) from None
        request.scratch["form"] = dict(pairs)
    return request.scratch["form"]


def match(service: str, request: HttpRequest) -> str | None:
    action = form(request).get("Action")
    if action is None:
        return None
    if action not in service_models.service_model(service).operation_names:
        raise ServiceError("InvalidAction", f"Could not find operation {printable(action)} for version "
                           f"{service_models.service_model(service).api_version}", 400)
    return action


# The entries below one node of a form's key paths: (the rest of the key after this node, or None for the
# node's own value; the value). The top of "Tags.member.1.Key=a" holds ("Tags.member.1.Key", "a").
Entries = list[tuple[str | None, str]]


def _split(entries: Entries) -> tuple[str | None, dict[str, Entries]]:
    """A node's own value, and the entries below it grouped by their next key segment.

    Each level of the shape splits only the keys under it, once, so parsing costs time in proportion to
    the form's size (keys the shape does not ask for are never looked at again).
    """
    own, children = None, {}
    for rest, value in entries:
        if rest is None:
            own = value
            continue
        head, dot, tail = rest.partition(".")
        children.setdefault(head, []).append((tail if dot else None, value))
    return own, children


def _own(entries: Entries | None) -> str | None:
    return next((value for rest, value in entries if rest is None), None) if entries else None


def _member_path(path: str, name: str) -> str:
    """A member's path as the validator names it (members in lower camel case)."""
    name = name[:1].lower() + name[1:]
    return f"{path}.{name}" if path else name


def _numbered(shape, children: dict[str, Entries], path: str) -> list[Entries]:
    """The entries of items 1, 2, … up to the first missing number.

    A list or map longer than the model allows is refused here, before any of its items is read.
    """
    limit = shape.metadata.get("max")
    items: list[Entries] = []
    while (item := children.get(str(len(items) + 1))) is not None:
        if limit is not None and len(items) == limit:
            raise ServiceError(ERROR_CODES["query"][1], f"1 validation error detected: Value at '{path}' failed to "
                               f"satisfy constraint: Member must have length less than or equal to {limit}", 400)
        items.append(item)
    return items


def _unflatten(shape, entries: Entries | None, path: str):
    if entries is None:
        return None
    kind = shape.type_name
    if kind == "structure":
        _, children = _split(entries)
        out = {}
        for name, member in shape.members.items():
            value = _unflatten(member, children.get(member.serialization.get("name", name)),
                               _member_path(path, name))
            if value is not None:
                out[name] = value
        return out
    if kind == "list":
        own, children = _split(entries)
        if own == "":
            return []
        if not shape.serialization.get("flattened"):
            _, children = _split(children.get(shape.member.serialization.get("name", "member"), []))
        items = [_unflatten(shape.member, item, f"{path}.{n}.member")
                 for n, item in enumerate(_numbered(shape, children, path), 1)]
        return items or None
    if kind == "map":
        _, children = _split(entries)
        if not shape.serialization.get("flattened"):
            _, children = _split(children.get("entry", []))
        key_name = shape.key.serialization.get("name", "key")
        value_name = shape.value.serialization.get("name", "value")
        out = {}
        for item in _numbered(shape, children, path):
            _, fields = _split(item)
            key = _own(fields.get(key_name))
            if key is not None:
                out[key] = _unflatten(shape.value, fields.get(value_name), f"{path}.{key}.member")
        return out or None
    value = _own(entries)
    return None if value is None else from_text(shape, value)


def parse(service: str, operation: str, request: HttpRequest) -> dict:
    shape = service_models.operation(service, operation).input_shape
    if shape is None:
        return {}
    return _unflatten(shape, list(form(request).items()), "")


def _namespace(service: str) -> str:
    return service_models.service_model(service).metadata.get("xmlNamespace", "")


def serialize(service: str, operation: str, result: dict, request_id: str) -> HttpResponse:
    shape = service_models.operation(service, operation).output_shape
    inner = ""
    if shape is not None:
        inner = to_xml(shape, result, shape.serialization.get("resultWrapper", f"{operation}Result"))
    body = (f'<{operation}Response xmlns="{_namespace(service)}">{inner}'
            f"<ResponseMetadata><RequestId>{request_id}</RequestId></ResponseMetadata></{operation}Response>")
    return HttpResponse(200, [("Content-Type", XML), ("x-amzn-RequestId", request_id)], body.encode())


def error(service: str, err: ServiceError, request_id: str) -> HttpResponse:
    status, _ = service_models.error_index(service).get(err.code, (400, None))
    body = (f'<ErrorResponse xmlns="{_namespace(service)}"><Error><Type>Sender</Type>'
            f"<Code>{escape(err.code)}</Code><Message>{escape(err.message)}</Message></Error>"
            f"<RequestId>{request_id}</RequestId></ErrorResponse>")
    return HttpResponse(err.status or status, [("Content-Type", XML), ("x-amzn-RequestId", request_id)], body.encode())
