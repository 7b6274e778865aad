"""Server-side input checking against the model, in AWS's wording.

One walk over the input shape does three things: checks wire types (a
mismatch is a ``SerializationException``, as AWS JSON services answer),
converts wire values to Python ones (timestamps to UTC datetimes, blobs to
bytes), and checks every constraint the SDKs leave to the server (required,
length, range, enum, pattern) for a ``ValidationException`` that lists every
violation the way AWS's Coral validator does.

Every string member, wherever the protocol read it from (body, URI label,
query string, header, form field, XML), is also refused when it holds text no
store can keep: a NUL character (PostgreSQL text cannot hold one) or an
unpaired surrogate (no UTF-8 form; the protocol layer decodes invalid UTF-8
in percent-encodings to such surrogates so that they are refused here).
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import math
import unicodedata
from functools import lru_cache

import regex
from botocore.model import Shape

from jobforge.core.errors import ServiceError
from jobforge.core.text import unstorable_text

UTC = dt.timezone.utc
_UNPRINTABLE = {"Cc", "Cf", "Cs", "Cn"}  # control, format, surrogate, unassigned (U+FFFE, U+FFFF among them)
# The wire ranges of the model's integer types (AWS reads them as Java int and long).
_INTEGER_BITS = {"integer": 32, "long": 64}


@lru_cache(maxsize=4096)
def _pattern(expr: str):
    try:
        return regex.compile(expr)
    except regex.error:
        return None


def parse_timestamp(value) -> dt.datetime:
    if isinstance(value, bool):
        raise ValueError(value)
    if isinstance(value, (int, float)):
        return dt.datetime.fromtimestamp(value, UTC)
    if isinstance(value, str):
        text = value.strip()
        try:
            return dt.datetime.fromtimestamp(float(text), UTC)
        except ValueError:
            pass
        try:
            parsed = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
        except ValueError:
            from email.utils import parsedate_to_datetime

            parsed = parsedate_to_datetime(text)
        return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
    raise ValueError(value)


def printable(text: str) -> str:
    """Text safe to echo in any protocol's error: control, format, surrogate and non-characters as escapes.

    An echoed NUL, surrogate or U+FFFF could not be written as UTF-8 or XML 1.0, and a right-to-left
    override would reorder the rest of the message on screen.
    """
    if text.isprintable():
        return text
    return "".join(_escape(c) if unicodedata.category(c) in _UNPRINTABLE else c for c in text)


def _escape(char: str) -> str:
    code = ord(char)
    return f"\\u{code:04x}" if code <= 0xFFFF else f"\\U{code:08x}"


# How much of a list or map an error quotes: a refused request of megabytes must not come back as one.
QUOTED_COLLECTION = 1024


def _quote(value) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "'" + str(value).lower() + "'"
    if isinstance(value, bytes):
        return "'java.nio.HeapByteBuffer'"
    text = str(value)
    if isinstance(value, (list, dict)) and len(text) > QUOTED_COLLECTION:
        text = text[:QUOTED_COLLECTION] + "..."
    return f"'{text}'"


def _child_path(path: str, name: str) -> str:
    name = name[:1].lower() + name[1:]
    return f"{path}.{name}" if path else name


class Checker:
    def __init__(self):
        self.type_errors: list[str] = []
        self.violations: list[str] = []

    def violation(self, value, path, constraint):
        self.violations.append(f"Value {_quote(value)} at '{path}' failed to satisfy constraint: {constraint}")

    def check(self, shape: Shape, value, path: str):
        if shape.metadata.get("document"):
            return self._document(value, path)
        kind = shape.type_name
        handler = getattr(self, "_" + kind, None)
        if handler is None:
            return value
        return handler(shape, value, path)

    def _structure(self, shape, value, path):
        if not isinstance(value, dict):
            self.type_errors.append(f"Expected an object at '{path or 'input'}'")
            return value
        out = {}
        members = shape.members
        for name in shape.required_members:
            if value.get(name) is None:
                self.violation(None, _child_path(path, name), "Member must not be null")
        for name, item in value.items():
            member = members.get(name)
            if member is None or item is None:
                continue  # AWS ignores unknown members
            out[name] = self.check(member, item, _child_path(path, name))
        if shape.metadata.get("union") and len([v for v in out.values() if v is not None]) != 1:
            self.violations.append(f"Exactly one member of '{path or 'input'}' must be set")
        return out

    def _list(self, shape, value, path):
        if not isinstance(value, list):
            self.type_errors.append(f"Expected a list at '{path}'")
            return value
        if self._size(shape, value, path):
            return value  # refused whole: its items are not worth reading
        return [self.check(shape.member, item, f"{path}.{i}.member") for i, item in enumerate(value, 1)]

    def _map(self, shape, value, path):
        if not isinstance(value, dict):
            self.type_errors.append(f"Expected a map at '{path}'")
            return value
        if self._size(shape, value, path):
            return value
        out = {}
        for key, item in value.items():
            self.check(shape.key, key, f"{path}.{key}.key")
            out[key] = self.check(shape.value, item, f"{path}.{key}.member")
        return out

    def _document(self, value, path):
        """Any JSON value, taken as it is; only its text is checked (keys and strings alike)."""
        pending = [value]
        while pending:
            item = pending.pop()
            if isinstance(item, dict):
                pending.extend(item.keys())
                pending.extend(item.values())
            elif isinstance(item, list):
                pending.extend(item)
            elif isinstance(item, str):
                broken = unstorable_text(item)
                if broken:
                    self.violation(item, path, broken)
                    break
        return value

    def _size(self, shape, value, path) -> bool:
        """Check value's length against its shape; whether it is longer than allowed."""
        meta = shape.metadata
        if "min" in meta and len(value) < meta["min"]:
            self.violation(value, path, f"Member must have length greater than or equal to {meta['min']}")
        if "max" in meta and len(value) > meta["max"]:
            self.violation(value, path, f"Member must have length less than or equal to {meta['max']}")
            return True
        return False

    def _string(self, shape, value, path):
        if not isinstance(value, str):
            self.type_errors.append(f"Expected a string at '{path}'")
            return value
        broken = unstorable_text(value)
        if broken:
            self.violation(value, path, broken)
        self._size(shape, value, path)
        enum = shape.metadata.get("enum")
        if enum and value not in enum:
            self.violation(value, path, f"Member must satisfy enum value set: [{', '.join(enum)}]")
        expr = shape.metadata.get("pattern")
        if expr:
            compiled = _pattern(expr)
            if compiled is not None and compiled.fullmatch(value) is None:
                self.violation(value, path, f"Member must satisfy regular expression pattern: {expr}")
        return value

    def _number(self, shape, value, path, integral):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            self.type_errors.append(f"Expected a number at '{path}'")
            return value
        if integral and (isinstance(value, float) and not value.is_integer()):
            self.type_errors.append(f"Expected an integer at '{path}'")
            return value
        if isinstance(value, float) and not math.isfinite(value):
            self.type_errors.append(f"Expected a number at '{path}'")
            return value
        value = int(value) if integral else value
        bits = _INTEGER_BITS.get(shape.type_name)
        if bits and not -(2 ** (bits - 1)) <= value < 2 ** (bits - 1):
            self.type_errors.append(f"Expected a {bits}-bit integer at '{path}'")
            return value
        meta = shape.metadata
        if "min" in meta and value < meta["min"]:
            self.violation(value, path, f"Member must have value greater than or equal to {meta['min']}")
        if "max" in meta and value > meta["max"]:
            self.violation(value, path, f"Member must have value less than or equal to {meta['max']}")
        return value

    def _integer(self, shape, value, path):
        return self._number(shape, value, path, True)

    _long = _integer

    def _double(self, shape, value, path):
        return self._number(shape, value, path, False)

    _float = _double

    def _boolean(self, shape, value, path):
        if not isinstance(value, bool):
            self.type_errors.append(f"Expected a boolean at '{path}'")
        return value

    def _timestamp(self, shape, value, path):
        if isinstance(value, dt.datetime):
            return value
        try:
            return parse_timestamp(value).astimezone(UTC)  # in UTC, so no handler meets an instant past year 9999
        except (ValueError, TypeError, OverflowError, OSError):
            self.type_errors.append(f"Expected a timestamp at '{path}'")
            return value

    def _blob(self, shape, value, path):
        if isinstance(value, bytes):
            self._size(shape, value, path)
            return value
        if not isinstance(value, str):
            self.type_errors.append(f"Expected base64 data at '{path}'")
            return value
        try:
            data = base64.b64decode(value, validate=True)
        except (binascii.Error, ValueError):
            self.type_errors.append(f"Invalid base64 data at '{path}'")
            return value
        self._size(shape, data, path)
        return data


# The error codes of a request that fails its input shape: (wrong types, broken constraints) per protocol.
# The JSON protocols say SerializationException / ValidationException; IAM and STS say ValidationError,
# S3 says InvalidArgument.
ERROR_CODES = {"query": ("ValidationError", "ValidationError"), "rest-xml": ("InvalidArgument", "InvalidArgument")}
JSON_ERROR_CODES = ("SerializationException", "ValidationException")


def type_error_code(protocol: str) -> str:
    """The code of a request whose values are of the wrong type (or cannot be read at all)."""
    return ERROR_CODES.get(protocol, JSON_ERROR_CODES)[0]


def check_input(shape: Shape | None, params: dict, protocol: str = "json") -> dict:
    """Validate and convert request parameters, or raise the AWS error."""
    if shape is None:
        return {}
    checker = Checker()
    out = checker.check(shape, params, "")
    type_code, constraint_code = ERROR_CODES.get(protocol, JSON_ERROR_CODES)
    if checker.type_errors:
        raise ServiceError(type_code, printable("; ".join(checker.type_errors)), 400)
    if checker.violations:
        count = len(checker.violations)
        noun = "error" if count == 1 else "errors"
        raise ServiceError(
            constraint_code, printable(f"{count} validation {noun} detected: " + "; ".join(checker.violations)), 400
        )
    return out
