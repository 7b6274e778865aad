"""The part of the CloudWatch Logs Insights query language jobforge answers.

Commands ``fields``/``display``, ``filter``, ``sort`` and ``limit``; filter
conditions ``FIELD [not] like /regex/``, ``FIELD [not] like "text"``,
``FIELD =~ /regex/``, ``FIELD = "value"``, ``FIELD != "value"`` and numeric
comparisons (``FIELD < 5``, ``<=``, ``>``, ``>=``), joined with ``and`` and
``or`` (``and`` binding tighter). That covers the queries SDKs send (the Braket SDK's metrics
query is ``fields @timestamp, @message | filter @logStream like /^job\\/id\\//
| filter @message like /Metrics - /``). Anything else is refused with
``MalformedQueryException`` rather than answered wrongly.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Callable

from jobforge.core.errors import ServiceError

_TOKEN = re.compile(r"""\s*(?:
    (?P<regex>/(?:\\.|[^/\\])*/) |
    (?P<text>"(?:\\.|[^"\\])*"|'(?:\\.|[^'\\])*') |
    (?P<pipe>\|) |
    (?P<op>!=|=~|<=|>=|=|<|>|,) |
    (?P<word>[@\w.$-]+)
)""", re.VERBOSE)

DEFAULT_FIELDS = ("@timestamp", "@message")


def malformed(message: str) -> ServiceError:
    return ServiceError("MalformedQueryException", message)


@dataclass
class Query:
    fields: tuple[str, ...] = DEFAULT_FIELDS
    conditions: list[Callable[[dict], bool]] = field(default_factory=list)
    sort: tuple[str, bool] | None = None  # (field, descending)
    limit: int | None = None

    def run(self, events: list[dict], limit: int) -> list[dict]:
        """The matching events (dicts of field → value), sorted and limited."""
        matched = [event for event in events if all(condition(event) for condition in self.conditions)]
        if self.sort:
            name, descending = self.sort
            matched.sort(key=lambda event: (event.get(name) is None, event.get(name)), reverse=descending)
        return matched[:min(limit, self.limit or limit)]


def _tokens(text: str) -> list[tuple[str, str]]:
    tokens, position = [], 0
    text = text.strip()
    while position < len(text):
        found = _TOKEN.match(text, position)
        if not found or found.end() == position:
            raise malformed(f"Unexpected character at position {position}: {text[position:position + 20]!r}")
        kind = found.lastgroup
        tokens.append((kind, found.group(kind)))
        position = found.end()
    return tokens


def parse(text: str) -> Query:
    query = Query()
    commands: list[list[tuple[str, str]]] = [[]]
    for token in _tokens(text):
        if token[0] == "pipe":
            commands.append([])
        else:
            commands[-1].append(token)
    for command in commands:
        if not command or command[0][0] != "word":
            raise malformed("Each query command must start with a command name")
        name, args = command[0][1].lower(), command[1:]
        if name in ("fields", "display"):
            names = [value for kind, value in args if kind == "word"]
            if not names or any(kind not in ("word", "op") or (kind == "op" and value != ",") for kind, value in args):
                raise malformed(f"{name} takes a comma-separated list of field names")
            query.fields = tuple(names)
        elif name == "filter":
            query.conditions.append(_filter(args))
        elif name == "sort":
            if not args or args[0][0] != "word" or len(args) > 2 or \
                    (len(args) == 2 and args[1][1].lower() not in ("asc", "desc")):
                raise malformed("sort takes one field name and optionally asc or desc")
            query.sort = (args[0][1], len(args) < 2 or args[1][1].lower() == "desc")
        elif name == "limit":
            if len(args) != 1 or not args[0][1].isdigit() or not 1 <= int(args[0][1]) <= 10000:
                raise malformed("limit takes a number from 1 to 10000")
            query.limit = int(args[0][1])
        else:
            raise malformed(f"The {name} command is not supported by jobforge; supported: fields, display, "
                            "filter, sort, limit")
    return query


def _filter(args: list[tuple[str, str]]) -> Callable[[dict], bool]:
    """Conditions joined by ``and`` within alternatives joined by ``or``."""
    alternatives, conditions, current = [], [], []
    for token in args:
        word = token[1].lower() if token[0] == "word" else None
        if word in ("and", "or"):
            conditions.append(_condition(current))
            current = []
            if word == "or":
                alternatives.append(conditions)
                conditions = []
        else:
            current.append(token)
    conditions.append(_condition(current))
    alternatives.append(conditions)
    return lambda event: any(all(condition(event) for condition in group) for group in alternatives)


def _condition(tokens: list[tuple[str, str]]) -> Callable[[dict], bool]:
    if len(tokens) < 3 or tokens[0][0] != "word":
        raise malformed("A filter condition is FIELD like /regex/, FIELD like \"text\", FIELD = \"value\" or "
                        "FIELD != \"value\"")
    name = tokens[0][1]
    negate = tokens[1] in (("word", "not"), ("word", "NOT"))
    operator, operand = tokens[2 if negate else 1], tokens[3 if negate else 2:]
    if len(operand) != 1:
        raise malformed(f"Unexpected tokens in the filter on {name}")
    kind, value = operand[0]
    if operator[1].lower() in ("like", "=~"):
        if kind == "regex":
            try:
                pattern = re.compile(value[1:-1])
            except re.error as err:
                raise malformed(f"Invalid regular expression {value}: {err}") from None
            test = lambda text: pattern.search(text) is not None  # noqa: E731
        elif kind == "text" and operator[1].lower() == "like":
            needle = _unquote(value)
            test = lambda text: needle in text  # noqa: E731
        else:
            raise malformed(f"{operator[1]} takes a /regular expression/" + (" or a \"string\"" if operator[1] ==
                                                                               "like" else ""))
    elif operator[1] in ("=", "!=") and not negate:
        expected = _unquote(value) if kind == "text" else value
        equal = operator[1] == "="
        number = _number(expected) if kind == "word" else None
        if number is not None:  # a numeric literal compares as a number: 10 = 10.0
            test = lambda text: (_number(text) == number) == equal  # noqa: E731
        else:
            test = lambda text: (text == expected) == equal  # noqa: E731
    elif operator[1] in _ORDER and not negate:
        bound = _number(value) if kind == "word" else None
        if bound is None:
            raise malformed(f"{operator[1]} in the filter on {name} takes a number")
        compare = _ORDER[operator[1]]
        test = lambda text: (found := _number(text)) is not None and compare(found, bound)  # noqa: E731
    else:
        raise malformed(f"Unsupported operator {operator[1]} in the filter on {name}")

    def condition(event: dict) -> bool:
        text = event.get(name)
        return text is not None and test(str(text)) != negate

    return condition


_ORDER = {"<": lambda a, b: a < b, "<=": lambda a, b: a <= b, ">": lambda a, b: a > b,
          ">=": lambda a, b: a >= b}


def _number(text: str) -> float | None:
    try:
        return float(text)
    except (TypeError, ValueError):
        return None


def _unquote(text: str) -> str:
    return re.sub(r"\\(.)", r"\1", text[1:-1])
