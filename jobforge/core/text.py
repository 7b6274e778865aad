"""Text no store can keep: a NUL (PostgreSQL refuses it) or an unpaired surrogate (invalid UTF-8 read with
``surrogateescape``, or a lone surrogate a client sent as a JSON escape)."""

from __future__ import annotations

import re

_SURROGATE = re.compile("[\ud800-\udfff]")


def unstorable_text(value: str) -> str | None:
    """The constraint a string breaks by its characters alone, or None."""
    if "\x00" in value:
        return "Member must not contain the NUL character"
    if _SURROGATE.search(value):
        return "Member must be valid Unicode text (invalid UTF-8 or an unpaired surrogate)"
    return None
