"""What the Braket handlers share: the device checks, times, search filters.

The device catalogue (``jobforge.workloads.braket.devices``) imports the
Braket SDK, which takes seconds; it is imported on the first Braket request
that needs it, so servers that never see Braket never pay for it.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass

import sqlalchemy as sa

from jobforge.core.errors import ServiceError, validation_error

UTC = dt.timezone.utc
OFFLINE_CODES = {"OFFLINE": "DeviceOfflineException", "RETIRED": "DeviceRetiredException"}


def catalogue():
    from jobforge.workloads.braket import devices

    return devices


def require_usable_device(device: str) -> str:
    """The catalogue ARN of a device tasks can run on; Braket's modelled error otherwise."""
    devices = catalogue()
    try:
        status = devices.status(device)
    except KeyError:
        raise validation_error(f"Device {device} does not exist.") from None
    if status in OFFLINE_CODES:
        raise ServiceError(OFFLINE_CODES[status], f"Device {device} is {status}: {devices.unavailable_reason(device)}")
    return devices.resolve(device)


_RFC3339 = re.compile(r"(\d{4})-(\d{2})-(\d{2})[Tt](\d{2}):(\d{2}):(\d{2})(?:\.(\d+))?([Zz]|[+-]\d{2}:\d{2})")


def rfc3339_interval(name: str, value: str) -> tuple[float, float]:
    """The epoch-seconds interval ``[start, end)`` an RFC 3339 date-time names, at the precision it is written in.

    ``2026-11-23T17:45:34Z`` is that whole second and ``…34.123Z`` that
    millisecond (the precision GetJob writes ``createdAt`` in), so comparing a
    job's ``createdAt`` with a value copied from GetJob gives the expected answer.
    """
    match = _RFC3339.fullmatch(value.strip()) if isinstance(value, str) else None
    if match is None:
        raise validation_error(f"Invalid value {value} for filter {name}: values must be in RFC 3339 date-time "
                               "format, for example 2024-01-01T00:00:00Z.")
    year, month, day, hour, minute, second, fraction, offset = match.groups()
    try:
        zone = UTC if offset in ("Z", "z") else dt.timezone(
            (1 if offset[0] == "+" else -1) * dt.timedelta(hours=int(offset[1:3]), minutes=int(offset[4:6])))
        start = dt.datetime(int(year), int(month), int(day), int(hour), int(minute), int(second),
                            int((fraction or "")[:6].ljust(6, "0")), tzinfo=zone)
    except ValueError:
        raise validation_error(f"Invalid value {value} for filter {name}: not a valid date-time.") from None
    step = 10.0 ** -min(len(fraction or ""), 6)
    return start.timestamp(), start.timestamp() + step



@dataclass(frozen=True)
class Field:
    column: sa.Column
    kind: str  # "string" or "time"
    choices: tuple[str, ...] = ()  # allowed values of an enumerated string field


SINGLE_VALUE = ("LT", "LTE", "GT", "GTE")


def filter_conditions(filters: list[dict], fields: dict[str, Field]) -> list:
    """SQL conditions for Search* filters: ``{name, operator, values}`` against the named fields."""
    conditions = []
    for item in filters:
        name, operator, values = item["name"], item["operator"], item["values"]
        field = fields.get(name)
        if field is None:
            raise validation_error(f"Filter name {name} is not supported; use one of: {', '.join(fields)}.")
        if field.kind == "time":
            conditions.append(time_condition(field.column, name, operator, values))
            continue
        if operator not in ("EQUAL", "CONTAINS"):
            raise validation_error(f"Operator {operator} is not supported for filter {name}.")
        for value in values if field.choices else ():
            if value not in field.choices:
                raise validation_error(f"Value {value} of filter {name} is not one of: {', '.join(field.choices)}.")
        conditions.append(_condition(name, field, operator, values))
    return conditions


def time_condition(column: sa.Column, name: str, operator: str, values: list[str]):
    """A condition on a time column; each value stands for the interval its precision names (rfc3339_interval)."""
    if operator not in ("EQUAL", "BETWEEN", *SINGLE_VALUE):
        raise validation_error(f"Invalid operator {operator} for filter {name}. Supported operators for {name} "
                               f"are: EQUAL, GT, GTE, LT, LTE, BETWEEN.")
    wanted = 2 if operator == "BETWEEN" else 1
    if len(values) != wanted:
        raise validation_error(f"The {operator} operator for filter {name} requires exactly {wanted} "
                               f"value{'s' if wanted > 1 else ''}.")
    intervals = [rfc3339_interval(name, value) for value in values]
    if operator == "BETWEEN":  # both ends included, whichever is written first
        return sa.and_(column >= min(i[0] for i in intervals), column < max(i[1] for i in intervals))
    start, end = intervals[0]
    return {"EQUAL": sa.and_(column >= start, column < end), "GT": column >= end, "GTE": column >= start,
            "LT": column < start, "LTE": column < end}[operator]


def _condition(name: str, field: Field, operator: str, values: list):
    column = field.column
    if operator == "CONTAINS":
        return sa.or_(*(column.contains(v, autoescape=True) for v in values))
    return column.in_(values)  # EQUAL: any of the values
