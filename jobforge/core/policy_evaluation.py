"""IAM policy evaluation: which statements of a set of policies apply to a request, and the decision.

An explicit deny wins over any allow; without an allow the decision is an implicit deny. A condition
key the request does not carry makes its condition false (``IfExists``, ``Null`` and ``ForAllValues``
aside, as IAM evaluates them) and is reported missing.
"""

from __future__ import annotations

import base64
import datetime as dt
import ipaddress
import re
from dataclasses import dataclass, field
from functools import lru_cache

from jobforge.core.policy_documents import SET_PREFIXES, Statement

ALLOWED, EXPLICIT_DENY, IMPLICIT_DENY = "allowed", "explicitDeny", "implicitDeny"


@dataclass(frozen=True)
class Policy:
    source_id: str  # the policy's name as SimulatePrincipalPolicy reports it
    source_type: str  # IAM's PolicySourceType: role, aws-managed, user-managed, none
    statements: tuple[Statement, ...]
    arn: str | None = None  # a managed policy's


@dataclass
class Decision:
    decision: str
    matched: list[tuple[Policy, Statement]] = field(default_factory=list)
    missing_keys: set[str] = field(default_factory=set)


def evaluate(policies: list[Policy], action: str, resource: str, context: dict[str, list[str]]) -> Decision:
    """The decision of these policies on ``action`` over ``resource``; ``context`` maps condition keys
    (any case) to their values."""
    context = {key.lower(): values for key, values in context.items()}
    allows, denies, missing = [], [], set()
    for policy in policies:
        for statement in policy.statements:
            if not (action_matches(statement, action) and _resource_matches(statement, resource, context, missing)):
                continue
            if conditions_hold(statement.conditions, context, missing):
                (allows if statement.effect == "Allow" else denies).append((policy, statement))
    if denies:
        return Decision(EXPLICIT_DENY, denies, missing)
    if allows:
        return Decision(ALLOWED, allows, missing)
    return Decision(IMPLICIT_DENY, [], missing)


def action_matches(statement: Statement, action: str) -> bool:
    if statement.not_actions is not None:
        return not any(wildcard_match(p, action, ignore_case=True) for p in statement.not_actions)
    return any(wildcard_match(p, action, ignore_case=True) for p in statement.actions)


def _resource_matches(statement: Statement, resource: str, context: dict, missing: set) -> bool:
    patterns = statement.not_resources if statement.not_resources is not None else statement.resources
    found = False
    for pattern in patterns:
        pattern = _substituted(pattern, context, missing)
        if pattern is not None and arn_match(pattern, resource):
            found = True
            break
    return not found if statement.not_resources is not None else found


_VARIABLE = re.compile(r"\$\{([^}]*)\}")


def _substituted(pattern: str, context: dict, missing: set) -> str | None:
    """A resource pattern with its policy variables (``${aws:username}``) replaced; None when one has no
    value, which then matches nothing."""
    absent = []

    def value(match: re.Match) -> str:
        name = match.group(1)
        if name in ("*", "?", "$"):
            return "\\" + name if name != "$" else "$"
        values = context.get(name.lower())
        if not values:
            absent.append(name)
            return ""
        return values[0]

    result = _VARIABLE.sub(value, pattern)
    if absent:
        missing.update(absent)
        return None
    return result


@lru_cache(maxsize=4096)
def _wildcard_regex(pattern: str, ignore_case: bool) -> re.Pattern:
    parts = re.split(r"(\\[*?]|[*?])", pattern)
    body = "".join(".*" if p == "*" else "." if p == "?" else re.escape(p[1:] if p in ("\\*", "\\?") else p)
                   for p in parts)
    return re.compile(body, re.DOTALL | (re.IGNORECASE if ignore_case else 0))


def wildcard_match(pattern: str, value: str, ignore_case: bool = False) -> bool:
    """IAM's wildcards: ``*`` any run of characters, ``?`` any one character."""
    return _wildcard_regex(pattern, ignore_case).fullmatch(value) is not None


def arn_match(pattern: str, arn: str) -> bool:
    """ARNs compared as IAM compares them: each of the six colon-separated parts on its own, ``*`` alone
    matching every ARN."""
    if pattern == "*":
        return True
    pattern_parts, arn_parts = pattern.split(":", 5), arn.split(":", 5)
    if len(pattern_parts) != len(arn_parts):
        return wildcard_match(pattern, arn)
    return all(wildcard_match(p, a) for p, a in zip(pattern_parts, arn_parts))


def conditions_hold(conditions: dict, context: dict[str, list[str]], missing: set) -> bool:
    """Every operator block holds, and within a block every key (keys are read in any case)."""
    return all(_key_holds(operator, key, values, context, missing)
               for operator, block in conditions.items() for key, values in block.items())


def _key_holds(operator: str, key: str, wanted, context: dict, missing: set) -> bool:
    quantifier = next((p for p in SET_PREFIXES if operator.startswith(p)), None)
    base = operator.removeprefix(quantifier or "")
    if_exists = base.endswith("IfExists")
    base = base.removesuffix("IfExists")
    wanted = [_text(v) for v in (wanted if isinstance(wanted, list) else [wanted])]
    present = context.get(key.lower())
    if base == "Null":
        return ("true" if not present else "false") in [w.lower() for w in wanted]
    if not present:
        if if_exists or quantifier == "ForAllValues:":
            return True
        missing.add(key)
        return False
    negated, compare = _COMPARISONS[base]
    try:
        if negated:
            outcomes = [not any(compare(v, w) for w in wanted) for v in present]
        else:
            outcomes = [any(compare(v, w) for w in wanted) for v in present]
    except ValueError:  # a value that is no number, date, address or base64: the condition cannot hold
        return False
    return all(outcomes) if quantifier == "ForAllValues:" else any(outcomes)


def _text(value) -> str:
    return ("true" if value else "false") if isinstance(value, bool) else str(value)


def _number(text: str) -> float:
    return float(text)


def _date(text: str) -> float:
    try:
        return float(text)  # epoch seconds
    except ValueError:
        when = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
        return (when if when.tzinfo else when.replace(tzinfo=dt.timezone.utc)).timestamp()


def _in_network(value: str, network: str) -> bool:
    return ipaddress.ip_address(value) in ipaddress.ip_network(network, strict=False)


def _binary(value: str, wanted: str) -> bool:
    return base64.b64decode(value, validate=True) == base64.b64decode(wanted, validate=True)


_ORDER = {"Equals": lambda a, b: a == b, "LessThan": lambda a, b: a < b, "LessThanEquals": lambda a, b: a <= b,
          "GreaterThan": lambda a, b: a > b, "GreaterThanEquals": lambda a, b: a >= b}

# operator -> (negated, does a context value match a policy value)
_COMPARISONS = {
    "StringEquals": (False, lambda v, w: v == w),
    "StringNotEquals": (True, lambda v, w: v == w),
    "StringEqualsIgnoreCase": (False, lambda v, w: v.lower() == w.lower()),
    "StringNotEqualsIgnoreCase": (True, lambda v, w: v.lower() == w.lower()),
    "StringLike": (False, lambda v, w: wildcard_match(w, v)),
    "StringNotLike": (True, lambda v, w: wildcard_match(w, v)),
    "Bool": (False, lambda v, w: v.lower() == w.lower()),
    "BinaryEquals": (False, _binary),
    "IpAddress": (False, _in_network),
    "NotIpAddress": (True, _in_network),
    "ArnEquals": (False, lambda v, w: arn_match(w, v)),
    "ArnLike": (False, lambda v, w: arn_match(w, v)),
    "ArnNotEquals": (True, lambda v, w: arn_match(w, v)),
    "ArnNotLike": (True, lambda v, w: arn_match(w, v)),
    **{f"Numeric{name}": (False, lambda v, w, c=check: c(_number(v), _number(w))) for name, check in _ORDER.items()},
    "NumericNotEquals": (True, lambda v, w: _number(v) == _number(w)),
    **{f"Date{name}": (False, lambda v, w, c=check: c(_date(v), _date(w))) for name, check in _ORDER.items()},
    "DateNotEquals": (True, lambda v, w: _date(v) == _date(w)),
}


def trusts(statements: list[Statement], account_id: str, caller_arn: str, context: dict[str, list[str]],
           action: str = "sts:AssumeRole") -> bool:
    """Whether a role's trust policy lets this caller (the account's root user or a role session of the
    account) take ``action``: some statement allows it, none denies it."""
    context = {key.lower(): values for key, values in context.items()}
    allowed = False
    for statement in statements:
        if not action_matches(statement, action):
            continue
        if statement.not_principal is not None:
            applies = not _names_caller(statement.not_principal, account_id, caller_arn)
        else:
            applies = _names_caller(statement.principal, account_id, caller_arn)
        if applies and conditions_hold(statement.conditions, context, set()):
            if statement.effect == "Deny":
                return False
            allowed = True
    return allowed


def _names_caller(principal, account_id: str, caller_arn: str) -> bool:
    """Whether a Principal element names the caller: everyone, the caller's account (which lets any of its
    principals in), the role whose session the caller is, or the caller's own ARN. A ``Service`` or
    ``Federated`` principal never names a caller that signs with access keys."""
    if principal == "*":
        return True
    if not isinstance(principal, dict):
        return False
    named = principal.get("AWS", [])
    session_role = caller_arn.partition(f"arn:aws:sts::{account_id}:assumed-role/")[2].split("/")[0]
    for value in [named] if isinstance(named, str) else named if isinstance(named, list) else []:
        if value in ("*", account_id, f"arn:aws:iam::{account_id}:root", caller_arn):
            return True
        role_prefix = f"arn:aws:iam::{account_id}:role/"
        if session_role and isinstance(value, str) and value.startswith(role_prefix) \
                and value.rsplit("/", 1)[-1].lower() == session_role.lower():
            return True
    return False
