"""IAM policy documents: validated as IAM validates them, read into statements.

Identity policies (managed and inline) are checked strictly, with IAM's
``MalformedPolicyDocument`` messages; trust policies stored before this check
existed are read leniently (``read_statements``): a statement that cannot be
read grants nothing.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from urllib.parse import unquote

from jobforge.core.errors import ServiceError

VERSIONS = ("2008-10-17", "2012-10-17")
TOP_ELEMENTS = {"Version", "Id", "Statement"}
STATEMENT_ELEMENTS = {"Sid", "Effect", "Principal", "NotPrincipal", "Action", "NotAction", "Resource",
                      "NotResource", "Condition"}
CONDITION_OPERATORS = {
    "StringEquals", "StringNotEquals", "StringEqualsIgnoreCase", "StringNotEqualsIgnoreCase", "StringLike",
    "StringNotLike", "NumericEquals", "NumericNotEquals", "NumericLessThan", "NumericLessThanEquals",
    "NumericGreaterThan", "NumericGreaterThanEquals", "DateEquals", "DateNotEquals", "DateLessThan",
    "DateLessThanEquals", "DateGreaterThan", "DateGreaterThanEquals", "Bool", "BinaryEquals", "IpAddress",
    "NotIpAddress", "ArnEquals", "ArnLike", "ArnNotEquals", "ArnNotLike", "Null"}
SET_PREFIXES = ("ForAnyValue:", "ForAllValues:")
MANAGED_POLICY_CHARS = 6144  # IAM's quotas, counted without white space
ROLE_INLINE_POLICY_CHARS = 10240  # all of a role's inline policies together


@dataclass(frozen=True)
class Position:
    line: int
    column: int


@dataclass(frozen=True)
class Statement:
    effect: str  # "Allow" or "Deny"
    actions: tuple[str, ...] = ()
    not_actions: tuple[str, ...] | None = None  # set when the statement names NotAction
    resources: tuple[str, ...] = ()
    not_resources: tuple[str, ...] | None = None
    principal: object = None  # as written: "*" or {"AWS": ..., "Service": ...}
    not_principal: object = None
    conditions: dict = field(default_factory=dict)
    sid: str | None = None
    start: Position = Position(1, 1)
    end: Position = Position(1, 1)


def malformed(message: str) -> ServiceError:
    return ServiceError("MalformedPolicyDocument", message)


def document_text(policy: str) -> str:
    """The JSON of a policy as a client sent it: some send it URL-encoded, as IAM returns it."""
    return unquote(policy) if policy.lstrip().startswith("%") else policy


def size(policy: str) -> int:
    """A policy's size as IAM's quotas count it: its characters other than white space."""
    return sum(not c.isspace() for c in document_text(policy))


def require_json(policy: str) -> None:
    """A trust policy is checked no further than this: IAM's first check, JSON that parses."""
    try:
        json.loads(document_text(policy))
    except ValueError:
        raise malformed("This policy contains invalid Json") from None


def parse_identity_policy(policy: str) -> list[Statement]:
    """The statements of an identity policy, or ``MalformedPolicyDocument`` saying what is wrong."""
    text = document_text(policy)
    try:
        document = json.loads(text)
    except ValueError:
        raise malformed("This policy contains invalid Json") from None
    if not isinstance(document, dict) or not set(document) <= TOP_ELEMENTS or "Statement" not in document:
        raise malformed("Syntax errors in policy.")
    if document.get("Version") != "2012-10-17":
        if "Version" in document and document["Version"] not in VERSIONS:
            raise malformed("Syntax errors in policy.")
        raise malformed("Policy document must be version 2012-10-17 or greater.")
    raw = document["Statement"]
    raw_list = [raw] if isinstance(raw, dict) else raw
    if not isinstance(raw_list, list) or not raw_list:
        raise malformed("Syntax errors in policy.")
    for item in raw_list:
        _check_statement(item)
    sids = [item["Sid"] for item in raw_list if item.get("Sid")]
    if len(sids) != len(set(sids)):
        raise malformed("Statement IDs (SID) in a single policy must be unique.")
    for item in raw_list:
        if "Action" not in item and "NotAction" not in item or item.get("Action", item.get("NotAction")) == []:
            raise malformed("Policy statement must contain actions.")
        if "Resource" not in item and "NotResource" not in item or item.get("Resource",
                                                                             item.get("NotResource")) == []:
            raise malformed("Policy statement must contain resources.")
        if "Principal" in item or "NotPrincipal" in item:
            raise malformed("Policy document should not specify a principal.")
        for action in _strings(item.get("Action", item.get("NotAction"))):
            _check_action(action)
        for resource in _strings(item.get("Resource", item.get("NotResource"))):
            if resource != "*" and not resource.startswith("arn:"):
                raise malformed(f'Resource {resource} must be in ARN format or "*".')
    return _statements(text, raw_list)


def read_statements(policy: str) -> list[Statement]:
    """The statements of a stored policy (a trust policy), leaving out any that cannot be read."""
    text = document_text(policy)
    try:
        document = json.loads(text)
    except ValueError:
        return []
    raw = document.get("Statement") if isinstance(document, dict) else None
    raw_list = [raw] if isinstance(raw, dict) else raw if isinstance(raw, list) else []
    readable = []
    for item in raw_list:
        try:
            _check_statement(item)
        except ServiceError:
            item = None
        readable.append(item)
    return [s for s in _statements(text, readable) if s is not None]


def _strings(value) -> list[str]:
    return [value] if isinstance(value, str) else list(value or [])


def _check_statement(item) -> None:
    if not isinstance(item, dict) or not set(item) <= STATEMENT_ELEMENTS:
        raise malformed("Syntax errors in policy.")
    if "Action" in item and "NotAction" in item or "Resource" in item and "NotResource" in item:
        raise malformed("Syntax errors in policy.")
    if item.get("Effect") not in ("Allow", "Deny"):
        raise malformed("Syntax errors in policy.")
    for key in ("Action", "NotAction", "Resource", "NotResource"):
        value = item.get(key, "")
        if not (isinstance(value, str) or isinstance(value, list) and all(isinstance(v, str) for v in value)):
            raise malformed("Syntax errors in policy.")
    if "Sid" in item and not isinstance(item["Sid"], str):
        raise malformed("Syntax errors in policy.")
    conditions = item.get("Condition", {})
    if not isinstance(conditions, dict):
        raise malformed("Syntax errors in policy.")
    for operator, block in conditions.items():
        if not isinstance(block, dict) or base_operator(operator) not in CONDITION_OPERATORS:
            raise malformed("Syntax errors in policy.")
        for values in block.values():
            if not isinstance(values, (str, bool, int, float, list)):
                raise malformed("Syntax errors in policy.")


def base_operator(operator: str) -> str:
    for prefix in SET_PREFIXES:
        operator = operator.removeprefix(prefix)
    return operator.removesuffix("IfExists")


def _check_action(action: str) -> None:
    if action == "*":
        return
    vendor, colon, rest = action.partition(":")
    if not colon:
        raise malformed("Actions/Conditions must be prefaced by a vendor, e.g., iam, sdb, ec2, etc.")
    if ":" in rest:
        raise malformed("Actions/Condition can contain only one colon.")
    if not re.fullmatch(r"[A-Za-z0-9\-.*?]+", vendor):
        raise malformed(f"Vendor {vendor} is not valid")


def _statements(text: str, raw_list: list) -> list:
    spans = _statement_spans(text)
    result = []
    for i, item in enumerate(raw_list):
        if item is None:
            result.append(None)
            continue
        start, end = spans[i] if i < len(spans) else (Position(1, 1), Position(1, 1))
        result.append(Statement(
            effect=item["Effect"], actions=tuple(_strings(item.get("Action"))),
            not_actions=tuple(_strings(item["NotAction"])) if "NotAction" in item else None,
            resources=tuple(_strings(item.get("Resource"))),
            not_resources=tuple(_strings(item["NotResource"])) if "NotResource" in item else None,
            principal=item.get("Principal"), not_principal=item.get("NotPrincipal"),
            conditions=item.get("Condition", {}), sid=item.get("Sid"), start=start, end=end))
    return result


_WHITE = re.compile(r"[ \t\n\r]*")


def _statement_spans(text: str) -> list[tuple[Position, Position]]:
    """Where each statement of a valid document starts and ends, as SimulatePrincipalPolicy reports
    matched statements: the line and column (from 1) just past its opening and its closing brace."""
    decoder = json.JSONDecoder()

    def skip(i: int) -> int:
        return _WHITE.match(text, i).end()

    i = skip(0) + 1  # past the document's "{"
    while True:
        i = skip(i)
        if text[i] == "}":
            return []
        key, i = decoder.raw_decode(text, i)
        i = skip(skip(i) + 1)  # past ":"
        value_start = i
        _, i = decoder.raw_decode(text, i)
        if key == "Statement":
            break
        i = skip(i)
        i += text[i] == ","
    if text[value_start] == "{":
        return [(_position(text, value_start + 1), _position(text, i))]
    spans, i = [], value_start + 1
    while True:
        i = skip(i)
        if text[i] == "]":
            return spans
        start = i + 1
        _, i = decoder.raw_decode(text, i)
        spans.append((_position(text, start), _position(text, i)))
        i = skip(i)
        i += text[i] == ","


def _position(text: str, offset: int) -> Position:
    line = text.count("\n", 0, offset) + 1
    return Position(line, offset - (text.rfind("\n", 0, offset) + 1) + 1)
