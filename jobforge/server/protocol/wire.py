"""Python values → wire values, walking the output shape.

Handlers return plain Python (datetimes, bytes, dicts); the shape decides how
each value is written: timestamps per protocol default or the member's
``timestampFormat`` trait, blobs as base64 in JSON, members not in the shape
are dropped.
"""

from __future__ import annotations

import base64
import datetime as dt
import math
import re
from email.utils import format_datetime
from xml.sax.saxutils import escape

from botocore.model import Shape

UTC = dt.timezone.utc
NON_FINITE = {"nan": "NaN", "inf": "Infinity", "-inf": "-Infinity"}
_XML_REFERENCED = re.compile("[\x00-\x08\x0b-\x1f\ufffe\uffff]")


def format_timestamp(value, fmt: str):
    if not isinstance(value, dt.datetime):
        value = dt.datetime.fromtimestamp(float(value), UTC)
    elif value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    if fmt == "unixTimestamp":
        return round(value.timestamp(), 3)
    if fmt == "rfc822":
        return format_datetime(value.astimezone(UTC), usegmt=True)
    value = value.astimezone(UTC)
    return value.strftime("%Y-%m-%dT%H:%M:%S.") + f"{value.microsecond // 1000:03d}Z"


def to_json(shape: Shape, value, ts_default: str):
    if shape.metadata.get("document"):  # botocore models a document as a structure without members
        return value
    kind = shape.type_name
    if kind == "structure":
        out = {}
        for name, member in shape.members.items():
            item = value.get(name)
            if item is not None:
                out[member.serialization.get("name", name)] = to_json(member, item, ts_default)
        return out
    if kind == "list":
        return [to_json(shape.member, item, ts_default) for item in value]
    if kind == "map":
        return {key: to_json(shape.value, item, ts_default) for key, item in value.items()}
    if kind == "timestamp":
        return format_timestamp(value, shape.serialization.get("timestampFormat", ts_default))
    if kind == "blob":
        return base64.b64encode(value).decode() if isinstance(value, bytes) else value
    if kind in ("float", "double") and not math.isfinite(value):
        return NON_FINITE[str(value)]  # JSON has no NaN: Smithy's JSON protocols write these as strings
    return value


def to_xml(shape: Shape, value, name: str, ts_default: str = "iso8601") -> str:
    """One element per member; lists as <member> children unless flattened."""
    kind = shape.type_name
    if kind == "structure":
        inner = "".join(_xml_member(member, value[key], key, ts_default)
                        for key, member in shape.members.items() if value.get(key) is not None)
        return f"<{name}>{inner}</{name}>"
    if kind == "list":
        item_name = shape.member.serialization.get("name", "member")
        inner = "".join(to_xml(shape.member, item, item_name, ts_default) for item in value)
        return f"<{name}>{inner}</{name}>"
    if kind == "map":
        key_name = shape.key.serialization.get("name", "key")
        value_name = shape.value.serialization.get("name", "value")
        inner = "".join(
            f"<entry>{to_xml(shape.key, k, key_name, ts_default)}{to_xml(shape.value, v, value_name, ts_default)}</entry>"
            for k, v in value.items())
        return f"<{name}>{inner}</{name}>"
    return f"<{name}>{xml_text(_scalar_text(shape, value, ts_default))}</{name}>"


def xml_text(text: str) -> str:
    """Text as XML element content, as S3 writes it: markup escaped, and a carriage return or a character
    XML 1.0 cannot hold as a character reference (a raw CR would be read back as LF)."""
    return _XML_REFERENCED.sub(lambda found: f"&#x{ord(found.group()):X};", escape(text))


def _xml_member(member: Shape, value, key: str, ts_default: str) -> str:
    name = member.serialization.get("name", key)
    if member.type_name == "list" and member.serialization.get("flattened"):
        item_name = member.member.serialization.get("name", name)
        return "".join(to_xml(member.member, item, item_name, ts_default) for item in value)
    return to_xml(member, value, name, ts_default)


def _scalar_text(shape: Shape, value, ts_default: str) -> str:
    kind = shape.type_name
    if kind == "timestamp":
        return str(format_timestamp(value, shape.serialization.get("timestampFormat", ts_default)))
    if kind == "boolean":
        return "true" if value else "false"
    if kind == "blob":
        return base64.b64encode(value).decode() if isinstance(value, bytes) else str(value)
    return str(value)


def from_text(shape: Shape, text: str):
    """A scalar sent as text (URI label, query string, header, form field).

    Left as text when it does not parse, so the validator reports the type.
    """
    kind = shape.type_name
    try:
        if kind in ("integer", "long"):
            return int(text)
        if kind in ("double", "float"):
            return float(text)
    except ValueError:
        return text
    if kind == "boolean":
        lowered = text.lower()
        return True if lowered == "true" else False if lowered == "false" else text
    return text
