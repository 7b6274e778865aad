"""CloudWatch metrics: GetMetricStatistics, GetMetricData (MetricStat queries), ListMetrics and PutMetricData.

What the server publishes itself lives in ``AWS/SageMaker`` (endpoints' invocation metrics, see
``jobforge.core.endpoint_metrics``); ``PutMetricData`` adds a caller's own namespaces to the same store.
Data are kept per minute as statistic sets (``jobforge.core.metric_store``), so periods are whole minutes
of data: a period under 60 seconds gets each minute's data at the minute's timestamp. Percentiles and
other extended statistics need the single values, which are not kept: they are refused, as are metric
math expressions, saying so. A namespace nobody published to answers empty, as CloudWatch does.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import math
import time
from collections import defaultdict

from jobforge.api.base import RequestContext, handler
from jobforge.core import metric_store, paging
from jobforge.core.errors import ServiceError
from jobforge.core.metric_store import MINUTE, MetricKey, StatisticSet

SERVICE = "cloudwatch"
STATISTICS = ("SampleCount", "Average", "Sum", "Minimum", "Maximum")
SHORT_PERIODS = (1, 5, 10, 30)
MAX_STATISTICS_DATAPOINTS = 1440  # GetMetricStatistics' limit per call
MAX_DATA_DATAPOINTS = 100_800  # GetMetricData's default MaxDatapoints
LIST_PAGE = 500
LISTED_SECONDS = 14 * 86400  # ListMetrics leaves out metrics with no data for two weeks
RECENTLY_ACTIVE = {"PT3H": 3 * 3600}
PUT_PAST_SECONDS = 14 * 86400  # PutMetricData takes data points up to two weeks old ...
PUT_FUTURE_SECONDS = 2 * 3600  # ... and two hours ahead


def _invalid(message: str) -> ServiceError:
    return ServiceError("InvalidParameterValue", message)


def _combination(message: str) -> ServiceError:
    return ServiceError("InvalidParameterCombination", message)


def _epoch(value: dt.datetime) -> float:
    return value.timestamp()


def _rounded_start(start: float, now: float) -> int:
    """StartTime rounded down as CloudWatch rounds it: to the minute within 15 days, to five minutes within 63,
    to the hour beyond."""
    age = now - start
    step = MINUTE if age < 15 * 86400 else 300 if age < 63 * 86400 else 3600
    return int(start // step) * step


def _check_period(period: int, member: str) -> None:
    if period not in SHORT_PERIODS and period % MINUTE:
        raise _invalid(f"The parameter {member} must be 1, 5, 10, 30, or a multiple of 60.")


def _buckets(rows: list[tuple[int, str, StatisticSet]], start: int, period: int) -> dict[tuple[int, str], StatisticSet]:
    """The stored minutes summed per period (starting at start) and unit: {(period start, unit): set}."""
    out: dict[tuple[int, str], StatisticSet] = {}
    for minute, unit, stats in rows:
        key = (start + (minute - start) // period * period, unit)
        if key in out:
            out[key].add(stats)
        else:
            out[key] = StatisticSet(stats.sample_count, stats.total, stats.minimum, stats.maximum)
    return out


def _statistic(stats: StatisticSet, name: str) -> float:
    return {"SampleCount": stats.sample_count, "Sum": stats.total, "Minimum": stats.minimum,
            "Maximum": stats.maximum, "Average": stats.total / stats.sample_count if stats.sample_count else 0.0}[name]


def _dimensions(req_dimensions) -> tuple[tuple[str, str], ...]:
    names = [d["Name"] for d in req_dimensions or []]
    if len(set(names)) != len(names):
        raise _invalid("The collection Dimensions must not contain duplicate dimension names.")
    return metric_store.dimensions_of((d["Name"], d["Value"]) for d in req_dimensions or [])


def _time_range(req: dict) -> tuple[int, int]:
    start, end = _epoch(req["StartTime"]), _epoch(req["EndTime"])
    if start >= end:
        raise _invalid("The parameter StartTime must be less than the parameter EndTime.")
    return _rounded_start(start, time.time()), math.ceil(end)


def _flush(ctx: RequestContext) -> None:
    """What this server gathered so far, written first, so that a reader sees every invocation it answered."""
    ctx.runtime.endpoint_metrics.flush()


@handler(SERVICE, "GetMetricStatistics", blocking=True)
def get_metric_statistics(ctx: RequestContext, req: dict) -> dict:
    statistics, extended = req.get("Statistics") or [], req.get("ExtendedStatistics") or []
    if statistics and extended:
        raise _combination("The parameters Statistics and ExtendedStatistics are mutually exclusive.")
    if not statistics and not extended:
        raise ServiceError("MissingParameter", "The parameter Statistics or ExtendedStatistics must be specified.")
    if extended:
        raise _invalid(f"The extended statistics {', '.join(extended)} are not available from jobforge: it keeps "
                       "each minute's sample count, sum, minimum and maximum, not the single values that "
                       "percentiles need. Ask for Statistics instead.")
    if len(set(statistics)) != len(statistics):
        raise _invalid("The collection Statistics must not contain duplicates.")
    period = req["Period"]
    _check_period(period, "Period")
    start, end = _time_range(req)
    requested = math.ceil((end - start) / period)
    if requested > MAX_STATISTICS_DATAPOINTS:
        raise _combination(f"You have requested up to {requested} datapoints, which exceeds the limit of "
                           f"{MAX_STATISTICS_DATAPOINTS}. You may reduce the datapoints requested by increasing "
                           "Period, or decreasing the time range.")
    _flush(ctx)
    rows = metric_store.minutes(ctx.engine, ctx.account_id, ctx.region, req["Namespace"], req["MetricName"],
                                _dimensions(req.get("Dimensions")), start, end, req.get("Unit"))
    datapoints = [{"Timestamp": at, "Unit": unit, **{name: _statistic(stats, name) for name in statistics}}
                  for (at, unit), stats in sorted(_buckets(rows, start, period).items())]
    return {"Label": req["MetricName"], "Datapoints": datapoints}


def _query_error(message: str) -> ServiceError:
    return ServiceError("ValidationError", message)


def _checked_queries(ctx: RequestContext, queries: list[dict]) -> list[dict]:
    ids = [query["Id"] for query in queries]
    if len(set(ids)) != len(ids):
        raise _query_error("The values for parameter Id in MetricDataQueries are not unique.")
    for query in queries:
        name = query["Id"]
        if query.get("Expression") is not None:
            raise _query_error(f"The query {name} is a metric math or Metrics Insights expression: jobforge serves "
                               "MetricStat queries only. Ask for each metric with MetricStat and combine them on "
                               "the client.")
        stat = query.get("MetricStat")
        if stat is None:
            raise _query_error(f"The query {name} must have exactly one of MetricStat and Expression.")
        if query.get("AccountId") not in (None, ctx.account_id):
            raise _query_error(f"The query {name} names account {query['AccountId']}: jobforge has no "
                               "cross-account observability, a query reads its caller's account only.")
        if stat["Stat"] not in STATISTICS:
            raise _query_error(f"The statistic {stat['Stat']} of query {name} is not available from jobforge: it "
                               "keeps each minute's sample count, sum, minimum and maximum, so it serves "
                               f"{', '.join(STATISTICS)}.")
        _check_period(stat["Period"], f"MetricStat.Period of query {name}")
    return queries


def _series(ctx: RequestContext, query: dict, start: int, end: int, descending: bool) -> list[tuple[int, float]]:
    stat = query["MetricStat"]
    metric = stat["Metric"]
    if not metric.get("Namespace") or not metric.get("MetricName"):
        raise _query_error(f"The query {query['Id']} must name its metric's Namespace and MetricName.")
    rows = metric_store.minutes(ctx.engine, ctx.account_id, ctx.region, metric["Namespace"], metric["MetricName"],
                                _dimensions(metric.get("Dimensions")), start, end, stat.get("Unit"))
    merged: dict[int, StatisticSet] = {}
    for (at, _unit), stats in _buckets(rows, start, stat["Period"]).items():
        if at in merged:
            merged[at].add(stats)
        else:
            merged[at] = stats
    return sorted(((at, _statistic(stats, stat["Stat"])) for at, stats in merged.items()), reverse=descending)


def _request_digest(req: dict) -> str:
    kept = {key: value for key, value in req.items() if key not in ("NextToken", "MaxDatapoints")}
    return hashlib.sha256(json.dumps(kept, sort_keys=True, default=str).encode()).hexdigest()[:16]


def _offset(token: str | None, digest: str) -> int:
    if not token:
        return 0
    try:
        data = paging.decode(token)
        offset, token_digest = int(data["o"]), data["h"]
    except (ValueError, KeyError, TypeError):
        raise ServiceError("InvalidNextToken", "The NextToken is not one this operation gave.") from None
    if token_digest != digest or offset < 0:
        raise ServiceError("InvalidNextToken", "The NextToken was given for another request.")
    return offset


@handler(SERVICE, "GetMetricData", blocking=True)
def get_metric_data(ctx: RequestContext, req: dict) -> dict:
    queries = _checked_queries(ctx, req["MetricDataQueries"])
    start, end = _time_range(req)
    limit = req.get("MaxDatapoints") or MAX_DATA_DATAPOINTS
    digest = _request_digest(req)
    skip = _offset(req.get("NextToken"), digest)
    descending = req.get("ScanBy", "TimestampDescending") == "TimestampDescending"
    _flush(ctx)
    results, taken, remaining = [], 0, False
    for query in queries:
        series = _series(ctx, query, start, end, descending)
        if query.get("ReturnData") is False:
            continue
        skipped = min(skip, len(series))
        skip -= skipped
        page = series[skipped:skipped + max(0, limit - taken)]
        taken += len(page)
        partial = skipped + len(page) < len(series)
        remaining = remaining or partial
        results.append({"Id": query["Id"], "Label": query.get("Label") or query["MetricStat"]["Metric"]["MetricName"],
                        "Timestamps": [at for at, _ in page], "Values": [value for _, value in page],
                        "StatusCode": "PartialData" if partial else "Complete", "Messages": []})
    out = {"MetricDataResults": results, "Messages": []}
    if remaining:
        out["NextToken"] = paging.encode({"o": _offset(req.get("NextToken"), digest) + taken, "h": digest})
    return out


def _matches(dimensions: tuple[tuple[str, str], ...], filters: list[dict]) -> bool:
    present = dict(dimensions)
    return all(f["Name"] in present and (f.get("Value") is None or present[f["Name"]] == f["Value"])
               for f in filters)


@handler(SERVICE, "ListMetrics", blocking=True)
def list_metrics(ctx: RequestContext, req: dict) -> dict:
    recently = req.get("RecentlyActive")
    if recently is not None and recently not in RECENTLY_ACTIVE:
        raise _invalid(f"The value {recently} for parameter RecentlyActive is invalid: it must be PT3H.")
    filters = req.get("Dimensions") or []
    digest = _request_digest(req)
    offset = _offset(req.get("NextToken"), digest)
    if req.get("OwningAccount") not in (None, ctx.account_id):
        return {"Metrics": []}  # no account is linked to this one: no other account's metrics are visible
    _flush(ctx)
    since = metric_store.minute_of(time.time() - RECENTLY_ACTIVE.get(recently, LISTED_SECONDS))
    found = [(namespace, name, dimensions) for namespace, name, dimensions in metric_store.metrics(
        ctx.engine, ctx.account_id, ctx.region, req.get("Namespace"), req.get("MetricName"), since)
        if _matches(dimensions, filters)]
    page = found[offset:offset + LIST_PAGE]
    out: dict = {"Metrics": [{"Namespace": namespace, "MetricName": name,
                              "Dimensions": [{"Name": n, "Value": v} for n, v in dimensions]}
                             for namespace, name, dimensions in page]}
    if req.get("IncludeLinkedAccounts"):
        out["OwningAccounts"] = [ctx.account_id] * len(page)
    if offset + LIST_PAGE < len(found):
        out["NextToken"] = paging.encode({"o": offset + LIST_PAGE, "h": digest})
    return out


def _datum_sets(datum: dict, index: int) -> list[StatisticSet]:
    """The statistic sets one MetricDatum adds (one per value given)."""
    given = [member for member in ("Value", "Values", "StatisticValues") if datum.get(member) is not None]
    where = f"MetricData.member.{index}"
    if len(given) > 1:
        raise _combination(f"The parameters {where}.{given[0]} and {where}.{given[1]} are mutually exclusive and "
                           "you have specified both.")
    if not given:
        raise ServiceError("MissingParameter", f"The parameter {where}.Value, {where}.Values or "
                           f"{where}.StatisticValues is required.")
    numbers = [datum.get("Value"), *(datum.get("Values") or []), *(datum.get("Counts") or []),
               *(datum.get("StatisticValues") or {}).values()]
    if not all(math.isfinite(n) for n in numbers if n is not None):
        raise _invalid(f"The parameter {where} holds a value that is not a finite number.")
    if "StatisticValues" in given:
        s = datum["StatisticValues"]
        if s["SampleCount"] <= 0 or s["Minimum"] > s["Maximum"]:
            raise _invalid(f"The parameter {where}.StatisticValues must have a positive SampleCount and a "
                           "Minimum no greater than its Maximum.")
        return [StatisticSet(s["SampleCount"], s["Sum"], s["Minimum"], s["Maximum"])]
    if "Value" in given:
        return [StatisticSet.of(datum["Value"])]
    values, counts = datum["Values"], datum.get("Counts")
    if counts is not None and len(counts) != len(values):
        raise _invalid(f"The parameters {where}.Values and {where}.Counts must be of the same size.")
    sets = []
    for value, count in zip(values, counts or [1.0] * len(values)):
        if count > 0:
            sets.append(StatisticSet(count, value * count, value, value))
    return sets


@handler(SERVICE, "PutMetricData", blocking=True)
def put_metric_data(ctx: RequestContext, req: dict) -> dict:
    namespace = req["Namespace"]
    if namespace.startswith("AWS/"):
        raise _invalid(f"The value {namespace} for parameter Namespace is invalid: namespaces beginning with AWS/ "
                       "are reserved for AWS services.")
    if req.get("EntityMetricData"):
        raise _invalid("EntityMetricData is not supported by jobforge: send the data as MetricData.")
    data = req.get("MetricData") or []
    if not data:
        raise ServiceError("MissingParameter", "The parameter MetricData is required.")
    now = time.time()
    sets: dict[tuple[MetricKey, int], StatisticSet] = defaultdict(lambda: StatisticSet(0.0, 0.0, math.inf, -math.inf))
    for index, datum in enumerate(data, 1):
        at = _epoch(datum["Timestamp"]) if datum.get("Timestamp") else now
        if not now - PUT_PAST_SECONDS <= at <= now + PUT_FUTURE_SECONDS:
            raise _invalid(f"The parameter MetricData.member.{index}.Timestamp must be within the past two weeks "
                           "and no more than two hours in the future.")
        key = (MetricKey(ctx.account_id, ctx.region, namespace, datum["MetricName"],
                         _dimensions(datum.get("Dimensions")), datum.get("Unit") or "None"), metric_store.minute_of(at))
        for stats in _datum_sets(datum, index):
            sets[key].add(stats)
    metric_store.add(ctx.engine, {key: stats for key, stats in sets.items() if stats.sample_count > 0})
    return {}
