"""The part of the CloudWatch Logs Insights query language jobforge answers.

Commands ``fields``/``display``, ``filter``, ``sort`` and ``limit``; filter
conditions ``FIELD [not] like /regex/``, ``FIELD [not] like "text"``,
``FIELD =~ /regex/``, ``FIELD = "value"``, ``FIELD != "value"`` and numeric
comparisons (``FIELD < 5``, ``<=``, ``>``, ``>=``), joined with ``and`` and
``or`` (``and`` binding tighter); ``stats`` with ``count``, ``sum``, ``avg``,
``min`` and ``max`` (``as`` names them), grouped ``by`` fields or
``bin(period)``. That covers the queries SDKs send (the Braket SDK's metrics
query is ``fields @timestamp, @message | filter @logStream like /^job\\/id\\//
| filter @message like /Metrics - /``). Anything else is refused with
``MalformedQueryException`` rather than answered wrongly.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass, field
from typing import Callable

from jobforge.core.errors import ServiceError

_TOKEN = re.compile(r"""\s*(?:
    (?P<regex>/(?:\\.|[^/\\])*/) |
    (?P<text>"(?:\\.|[^"\\])*"|'(?:\\.|[^'\\])*') |
    (?P<pipe>\|) |
    (?P<paren>[()*]) |
    (?P<op>!=|=~|<=|>=|=|<|>|,) |
    (?P<word>[@\w.$-]+)
)""", re.VERBOSE)

DEFAULT_FIELDS = ("@timestamp", "@message")


def malformed(message: str) -> ServiceError:
    return ServiceError("MalformedQueryException", message)


AGGREGATES = {
    "count": lambda values: len(values),
    "sum": lambda values: sum(values),
    "avg": lambda values: sum(values) / len(values) if values else None,
    "min": lambda values: min(values) if values else None,
    "max": lambda values: max(values) if values else None,
}
_PERIODS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400}


@dataclass
class Stats:
    aggregates: list[tuple[str, str, str | None]]  # (column name, function, field or None for *)
    groups: list[tuple[str, str | None, float | None]]  # (column name, field, bin period in seconds)

    def rows(self, events: list[dict]) -> list[dict]:
        buckets: dict[tuple, list[dict]] = {}
        for event in events:
            key = tuple(_bin(event.get("@timestamp"), period) if period else event.get(name)
                        for _, name, period in self.groups)
            buckets.setdefault(key, []).append(event)
        rows = []
        for key, members in buckets.items():
            row = {column: value for (column, _, _), value in zip(self.groups, key) if value is not None}
            for column, function, name in self.aggregates:
                values = members if name is None else [
                    number for event in members if (number := _number(event.get(name))) is not None]
                if function == "count" and name is not None:
                    values = [event for event in members if event.get(name) is not None]
                result = AGGREGATES[function](values)
                if result is not None:
                    row[column] = int(result) if float(result).is_integer() and function != "avg" else result
            rows.append(row)
        return rows


@dataclass
class Query:
    fields: tuple[str, ...] = DEFAULT_FIELDS
    conditions: list[Callable[[dict], bool]] = field(default_factory=list)
    sort: tuple[str, bool] | None = None  # (field, descending)
    limit: int | None = None
    stats: Stats | None = None

    def run(self, events: list[dict], limit: int) -> tuple[list[dict], int]:
        """(the result rows: matching events or their stats, sorted and limited; how many events matched)."""
        matched = [event for event in events if all(condition(event) for condition in self.conditions)]
        rows = self.stats.rows(matched) if self.stats else matched
        if self.sort:
            name, descending = self.sort
            rows.sort(key=lambda row: (row.get(name) is None, row.get(name)), reverse=descending)
        return rows[:min(limit, self.limit or limit)], len(matched)


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
        elif name == "stats":
            if query.stats is not None:
                raise malformed("jobforge answers one stats command per query")
            query.stats = _stats(args)
            query.fields = tuple(column for column, _, _ in query.stats.groups) + \
                tuple(column for column, _, _ in query.stats.aggregates)
        elif name == "limit":
            if len(args) != 1 or not args[0][1].isdigit() or not 1 <= int(args[0][1]) <= 10000:
                raise malformed("limit takes a number from 1 to 10000")
            query.limit = int(args[0][1])
        else:
            raise malformed(f"The {name} command is not supported by jobforge; supported: fields, display, "
                            "filter, stats, sort, limit")
    return query


def _stats(args: list[tuple[str, str]]) -> Stats:
    """``stats F(arg) [as name], … [by field | bin(period) [as name], …]``."""
    words = [value.lower() if kind == "word" else None for kind, value in args]
    split = words.index("by") if "by" in words else len(args)
    aggregates = []
    for item in _comma_separated(args[:split]):
        values = [value for _, value in item]
        if len(values) < 4 or values[0].lower() not in AGGREGATES or values[1] != "(" or values[3] != ")":
            raise malformed("stats takes count, sum, avg, min or max of a field (or count(*))")
        function, argument, rest = values[0].lower(), values[2], values[4:]
        column = _alias(rest, f"{function}({argument})")
        if argument == "*" and function != "count":
            raise malformed(f"{function}(*) is not an aggregate; give a field")
        aggregates.append((column, function, None if argument == "*" else argument))
    groups = []
    for item in _comma_separated(args[split + 1:]) if split < len(args) else []:
        values = [value for _, value in item]
        if values and values[0].lower() == "bin" and len(values) >= 4 and values[1] == "(" and values[3] == ")":
            found = re.fullmatch(r"(\d+)(ms|s|m|h|d)", values[2])
            if not found:
                raise malformed(f"bin takes a period such as 5m, not {values[2]}")
            groups.append((_alias(values[4:], f"bin({values[2]})"), None,
                           int(found.group(1)) * _PERIODS[found.group(2)]))
        elif values and values[0] not in "()*":
            groups.append((_alias(values[1:], values[0]), values[0], None))
        else:
            raise malformed("stats … by takes field names or bin(period)")
    if not aggregates:
        raise malformed("stats needs at least one aggregate")
    return Stats(aggregates, groups)


def _comma_separated(tokens: list[tuple[str, str]]) -> list[list[tuple[str, str]]]:
    items, depth = [[]], 0
    for token in tokens:
        depth += {"(": 1, ")": -1}.get(token[1], 0) if token[0] == "paren" else 0
        if token == ("op", ",") and depth == 0:
            items.append([])
        else:
            items[-1].append(token)
    return [item for item in items if item]


def _alias(rest: list[str], default: str) -> str:
    if not rest:
        return default
    if len(rest) == 2 and rest[0].lower() == "as":
        return rest[1]
    raise malformed(f"Unexpected {' '.join(rest)} after {default}")


def _bin(timestamp, period: float) -> str | None:
    """The start of the period a ``@timestamp`` ("YYYY-MM-DD HH:MM:SS.mmm", UTC) falls in, in the same form."""
    if timestamp is None:
        return None
    moment = dt.datetime.strptime(timestamp, "%Y-%m-%d %H:%M:%S.%f").replace(tzinfo=dt.timezone.utc).timestamp()
    start = moment - moment % period
    return dt.datetime.fromtimestamp(start, dt.timezone.utc).strftime("%Y-%m-%d %H:%M:%S.%f")[:-3]


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
