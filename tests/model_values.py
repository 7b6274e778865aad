"""Valid values for any botocore shape: every member, within its length and range bounds, strings that match
the member's pattern (written with the stdlib's own regex parser), the first enum value.

Optional members below ``DEPTH`` are left out, so recursive shapes stay finite.
"""

from __future__ import annotations

import datetime as dt
import re
from re import _constants as sre_constants  # the stdlib's own regex parser, to write strings a pattern matches
from re import _parser as sre_parse

import regex

DEPTH = 5  # optional members below this depth are left out (recursive shapes)


def _class_char(items) -> str:
    negate = any(op is sre_constants.NEGATE for op, _ in items)
    allowed = []
    for op, arg in items:
        if op is sre_constants.LITERAL:
            allowed.append(chr(arg))
        elif op is sre_constants.RANGE:
            low, high = arg
            allowed.append(next((c for c in "a0A" if low <= ord(c) <= high), chr(low)))
        elif op is sre_constants.CATEGORY:
            allowed.append({sre_constants.CATEGORY_DIGIT: "0", sre_constants.CATEGORY_SPACE: " "}.get(arg, "a"))
    if negate:
        return next(c for c in "a0-_" if c not in allowed)
    return next((c for c in allowed if c.isalnum()), allowed[0] if allowed else "a")


def _emit(items, repeats: int) -> str:
    out = []
    for op, arg in items:
        if op is sre_constants.LITERAL:
            out.append(chr(arg))
        elif op is sre_constants.NOT_LITERAL:
            out.append("b" if arg == ord("a") else "a")
        elif op is sre_constants.ANY:
            out.append("a")
        elif op is sre_constants.IN:
            out.append(_class_char(arg))
        elif op is sre_constants.CATEGORY:
            out.append(_class_char([(op, arg)]))
        elif op in (sre_constants.MAX_REPEAT, sre_constants.MIN_REPEAT):
            low, high, sub = arg
            count = max(low, min(repeats, high))
            out.append(_emit(sub, repeats) * count)
        elif op is sre_constants.SUBPATTERN:
            out.append(_emit(arg[-1], repeats))
        elif op is sre_constants.BRANCH:
            out.append(_emit(arg[1][0], repeats))
    return "".join(out)


def matching_text(pattern: str | None, low: int, high: int | None) -> str:
    """A string the model accepts: it matches the pattern and fits the length bounds, when one can be made."""
    high = 2048 if high is None else high
    if not pattern:
        return "f" * max(low, min(4, high))
    compiled = regex.compile(pattern)
    try:
        tree = sre_parse.parse(re.sub(r"\\[pP]\{\w+\}", "a", pattern))
    except (re.error, sre_constants.error):
        tree = None
    for repeats in (1, 4, max(low, 1)):
        text = _emit(tree, repeats) if tree is not None else "f" * max(low, 1)
        if low <= len(text) <= high and compiled.fullmatch(text):
            return text
    return "f" * max(low, 1)


def _accepts(pattern: str, text: str) -> bool:
    try:
        return regex.fullmatch(pattern, text) is not None
    except regex.error:
        return False


def valid_value(shape, depth: int = 0, free_text: str | None = None):
    """A value the model accepts. free_text, cut to the maximum length, is the value of every string member it
    is valid for (no enum, and a pattern that accepts it); other strings are written from their pattern."""
    kind = shape.type_name
    meta = shape.metadata
    if meta.get("document"):
        return {"key": "value"}
    if kind == "structure":
        names = list(shape.members)
        if meta.get("union"):
            names = names[:1]
        elif depth >= DEPTH:
            names = list(shape.required_members)
        return {name: valid_value(shape.members[name], depth + 1, free_text) for name in names}
    if kind == "list":
        return [valid_value(shape.member, depth + 1, free_text) for _ in range(max(meta.get("min", 1), 1))]
    if kind == "map":  # as many distinct keys as its minimum asks (CloudWatch's entity attributes want two)
        keys: list = []
        for candidate in (free_text, None, *(f"k{i}" for i in range(8))):
            key = valid_value(shape.key, depth + 1, candidate)
            if key not in keys and len(keys) < max(meta.get("min", 1), 1):
                keys.append(key)
        return {key: valid_value(shape.value, depth + 1, free_text) for key in keys}
    if kind == "string":
        if meta.get("enum"):
            return meta["enum"][0]
        if free_text is not None:
            text = free_text[:meta.get("max")]
            if len(text) >= meta.get("min", 0) and (not meta.get("pattern") or _accepts(meta["pattern"], text)):
                return text
        return matching_text(meta.get("pattern"), meta.get("min", 0), meta.get("max"))
    if kind in ("integer", "long"):
        return max(meta.get("min", 1), min(meta.get("max", 1), 1))
    if kind in ("double", "float"):
        return float(max(meta.get("min", 1), min(meta.get("max", 1), 1)))
    if kind == "boolean":
        return True
    if kind == "timestamp":
        return dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc)
    if kind == "blob":
        return b"fuzz"
    return None
