"""CloudWatch Logs (awsJson1.1) over the job store's log lines and the stored log events.

A job kind exposes its jobs' output as a log group by declaring one
(``JobKind.log_group``): each job of the kind is one log stream of the
group, named by the kind, holding every line of the job's log. The group
exists for an account once the account has a job of the kind, as on AWS,
where a service creates its group with its first job. The server's other
sources (Lambda functions, …) write groups, streams and events through
``core.log_events``; both kinds of group answer the same calls. Reads only:
DescribeLogGroups, DescribeLogStreams, GetLogEvents, FilterLogEvents, and
Logs Insights queries (StartQuery, GetQueryResults, StopQuery) in the subset
of ``logs_insights``.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import re
import time
import uuid
from dataclasses import dataclass

import sqlalchemy as sa

from jobforge.api import logs_insights
from jobforge.api.base import RequestContext, handler
from jobforge.core import kinds, log_events, paging
from jobforge.core.errors import ServiceError
from jobforge.core.jobs import Job
from jobforge.core.store import job_logs, jobs_table, log_queries, reading

UTC = dt.timezone.utc
MAX_EVENTS = 10_000
DEFAULT_STREAMS = 50


@dataclass(frozen=True)
class LogGroup:
    """A group whose streams are the jobs of the kinds that declare it, each job's lines its events."""

    name: str
    kind_names: tuple[str, ...]  # the kinds whose jobs are the group's streams
    table = job_logs
    key = job_logs.c.job_id

    @staticmethod
    def stream(job: Job) -> str:
        """The job's stream name, as its kind names it."""
        return kinds.of(job).log_group.stream(job)

    def jobs(self, ctx: RequestContext, name: str | None = None, name_prefix: str | None = None) -> list[Job]:
        query = sa.select(jobs_table).where(jobs_table.c.account_id == ctx.account_id,
                                            jobs_table.c.region == ctx.region, jobs_table.c.family.in_(self.kind_names))
        if name is not None:
            query = query.where(jobs_table.c.name == name)
        if name_prefix:
            query = query.where(jobs_table.c.name.startswith(name_prefix, autoescape=True))
        with reading(ctx.engine) as conn:
            return [Job.from_row(row) for row in conn.execute(query.order_by(jobs_table.c.created_at))]

    def created(self, ctx: RequestContext) -> float | None:
        """When the group came to be for the caller (its first job), None while it does not exist."""
        with reading(ctx.engine) as conn:
            return conn.execute(sa.select(sa.func.min(jobs_table.c.created_at)).where(
                jobs_table.c.account_id == ctx.account_id, jobs_table.c.region == ctx.region,
                jobs_table.c.family.in_(self.kind_names))).scalar()

    def streams(self, ctx: RequestContext, prefix: str | None = None) -> dict:
        """Stream key (job id) → stream name, for the streams whose names start with prefix."""
        jobs = self.jobs(ctx, name_prefix=prefix.split("/", 1)[0] if prefix else None)
        named = {job.id: self.stream(job) for job in jobs}
        return {key: name for key, name in named.items() if not prefix or name.startswith(prefix)}

    def stream_key(self, ctx: RequestContext, stream: str) -> str:
        for job in self.jobs(ctx, name=stream.split("/", 1)[0]):
            if self.stream(job) == stream:
                return job.id
        raise _no_stream()


@dataclass(frozen=True)
class StoredGroup:
    """A group written through ``core.log_events`` (Lambda functions and the other long-lived sources)."""

    name: str
    id: int
    created_at: float
    table = log_events.log_events
    key = log_events.log_events.c.stream_id

    def created(self, ctx: RequestContext) -> float:
        return self.created_at

    def streams(self, ctx: RequestContext, prefix: str | None = None) -> dict:
        return {key: name for key, name in log_events.streams(ctx.engine, self.id).items()
                if not prefix or name.startswith(prefix)}

    def stream_key(self, ctx: RequestContext, stream: str) -> int:
        for key, name in log_events.streams(ctx.engine, self.id).items():
            if name == stream:
                return key
        raise _no_stream()


def _no_stream() -> ServiceError:
    return ServiceError("ResourceNotFoundException", "The specified log stream does not exist.")


def groups() -> dict[str, LogGroup]:
    """The log groups the declared job kinds write to, by name."""
    members: dict[str, list[str]] = {}
    for kind in kinds.KINDS.values():
        if kind.log_group is not None:
            members.setdefault(kind.log_group.name, []).append(kind.name)
    return {name: LogGroup(name, tuple(names)) for name, names in members.items()}


def _existing_groups(ctx: RequestContext) -> dict[str, tuple[LogGroup | StoredGroup, float]]:
    """The caller's groups in the request's region: name → (group, creation time)."""
    found = {name: (StoredGroup(name, group_id, created), created)
             for name, (group_id, created) in log_events.groups(ctx.engine, ctx.account_id, ctx.region).items()}
    for name, group in groups().items():
        created = group.created(ctx)
        if created is not None:
            found[name] = (group, created)
    return found


def invalid(message: str) -> ServiceError:
    return ServiceError("InvalidParameterException", message)


def _group_arn(ctx: RequestContext, name: str) -> str:
    return f"arn:aws:logs:{ctx.region}:{ctx.account_id}:log-group:{name}"


def _named(ctx: RequestContext, identifier: str) -> str | None:
    """The group name a logGroupIdentifier (a name or an ARN) gives; None for an ARN of another region."""
    if not identifier.startswith("arn:"):
        return identifier
    if identifier.split(":")[3:4] != [ctx.region]:
        return None
    return identifier.split(":log-group:", 1)[-1].removesuffix(":*")


def _group(ctx: RequestContext, req: dict) -> LogGroup | StoredGroup:
    name = req.get("logGroupName")
    identifier = req.get("logGroupIdentifier")
    if name and identifier:
        raise invalid("Specify either logGroupName or logGroupIdentifier, not both.")
    if identifier:
        name = _named(ctx, identifier)
        if name is None:
            raise ServiceError("ResourceNotFoundException", "The specified log group does not exist.")
    if not name:
        raise invalid("Either logGroupName or logGroupIdentifier is required.")
    group = groups().get(name)
    if group is not None and group.created(ctx) is not None:
        return group
    stored = log_events.groups(ctx.engine, ctx.account_id, ctx.region).get(name)
    if stored is None:
        raise ServiceError("ResourceNotFoundException", "The specified log group does not exist.")
    return StoredGroup(name, *stored)


def _ms(epoch: float) -> int:
    return int(epoch * 1000)


# -- groups and streams ------------------------------------------------------

@handler("logs", "DescribeLogGroups")
def describe_log_groups(ctx: RequestContext, req: dict) -> dict:
    prefix = req.get("logGroupNamePrefix")
    pattern = req.get("logGroupNamePattern")
    identifiers = req.get("logGroupIdentifiers")
    if sum(bool(x) for x in (prefix, pattern, identifiers)) > 1:
        raise invalid("Only one of logGroupNamePrefix, logGroupNamePattern and logGroupIdentifiers can be given.")
    wanted = {_named(ctx, ident) for ident in identifiers or []} - {None}
    found = []
    for name, (group, created) in sorted(_existing_groups(ctx).items()):
        if (prefix and not name.startswith(prefix)) or (pattern and pattern.lower() not in name.lower()) \
                or (identifiers and name not in wanted) or req.get("logGroupClass", "STANDARD") != "STANDARD":
            continue
        stored = sum(size for _, _, size in _stream_stats(ctx, group, list(group.streams(ctx))).values())
        found.append({"logGroupName": name, "creationTime": _ms(created), "metricFilterCount": 0,
                      "arn": _group_arn(ctx, name) + ":*", "logGroupArn": _group_arn(ctx, name),
                      "storedBytes": stored, "logGroupClass": "STANDARD"})
    return _offset_page(found, "logGroups", req.get("limit", 50), req.get("nextToken"),
                        dict(prefix=prefix, pattern=pattern, identifiers=sorted(wanted),
                             log_class=req.get("logGroupClass")))


def _stream_stats(ctx: RequestContext, group, keys: list) -> dict:
    """stream key → (first event time, last event time, bytes) for the streams that have events."""
    if not keys:
        return {}
    table = group.table
    with reading(ctx.engine) as conn:
        rows = conn.execute(sa.select(group.key, sa.func.min(table.c.timestamp), sa.func.max(table.c.timestamp),
                                      sa.func.sum(sa.func.length(table.c.message)))
                            .where(group.key.in_(keys)).group_by(group.key)).all()
    return {row[0]: (row[1], row[2], int(row[3] or 0)) for row in rows}


def _streams(ctx: RequestContext, group, prefix: str | None = None) -> list[dict]:
    """The group's streams (those with at least one event), optionally by name prefix."""
    named = group.streams(ctx, prefix)
    stats = _stream_stats(ctx, group, list(named))
    streams = []
    for key, name in named.items():
        if key not in stats:
            continue
        first, last, size = stats[key]
        streams.append({"logStreamName": name, "creationTime": _ms(first), "firstEventTimestamp": _ms(first),
                        "lastEventTimestamp": _ms(last), "lastIngestionTime": _ms(last), "storedBytes": size,
                        "arn": f"{_group_arn(ctx, group.name)}:log-stream:{name}", "_key": key})
    return streams


@handler("logs", "DescribeLogStreams")
def describe_log_streams(ctx: RequestContext, req: dict) -> dict:
    group = _group(ctx, req)
    order = req.get("orderBy", "LogStreamName")
    prefix = req.get("logStreamNamePrefix")
    if order == "LastEventTime" and prefix:
        raise invalid("Cannot order by LastEventTime with a logStreamNamePrefix.")
    streams = _streams(ctx, group, prefix)
    key = "logStreamName" if order == "LogStreamName" else "lastEventTimestamp"
    streams.sort(key=lambda s: s[key], reverse=bool(req.get("descending")))
    for stream in streams:
        del stream["_key"]
    return _offset_page(streams, "logStreams", req.get("limit", DEFAULT_STREAMS), req.get("nextToken"),
                        dict(group=group.name, order=order, prefix=prefix, desc=bool(req.get("descending"))))


def _offset_page(items: list, key: str, limit: int, token: str | None, bind: dict) -> dict:
    digest = hashlib.sha256(json.dumps(bind, sort_keys=True).encode()).hexdigest()[:16]
    offset = 0
    if token:
        try:
            data = paging.decode(token)
            offset, token_digest = int(data["o"]), data["h"]
        except (ValueError, KeyError, TypeError):
            raise invalid("The specified nextToken is invalid.") from None
        if token_digest != digest:
            raise invalid("The nextToken does not match the request's parameters.")
    out = {key: items[offset:offset + limit]}
    if offset + limit < len(items):
        out["nextToken"] = paging.encode({"o": offset + limit, "h": digest})
    return out


# -- events ------------------------------------------------------------------

def _time_conditions(table, req: dict, end_inclusive: bool) -> list:
    """startTime is included; endTime too for FilterLogEvents, not for GetLogEvents (as each documents it)."""
    conditions = []
    if req.get("startTime") is not None:
        conditions.append(table.c.timestamp * 1000 >= req["startTime"])
    if req.get("endTime") is not None:  # at millisecond precision
        conditions.append(table.c.timestamp * 1000 < req["endTime"] + (1 if end_inclusive else 0))
    return conditions


def _event(row) -> dict:
    return {"timestamp": _ms(row.timestamp), "message": row.message}


@handler("logs", "GetLogEvents")
def get_log_events(ctx: RequestContext, req: dict) -> dict:
    """Tokens are ``f/<id>`` (events after that line) and ``b/<id>`` (events before it)."""
    group = _group(ctx, req)
    stream_key = group.stream_key(ctx, req["logStreamName"])
    table = group.table
    limit = req.get("limit", MAX_EVENTS)
    token = req.get("nextToken")
    query = sa.select(table).where(group.key == stream_key, *_time_conditions(table, req, end_inclusive=False))
    if token:
        match = re.fullmatch(r"([fb])/(\d+)", token)
        if not match:
            raise invalid("The specified nextToken is invalid.")
        forward, line = match.group(1) == "f", int(match.group(2))
    else:
        forward, line = bool(req.get("startFromHead")), None
    if forward:
        if line is not None:
            query = query.where(table.c.id > line)
        query = query.order_by(table.c.id).limit(limit)
    else:
        if line is not None:
            query = query.where(table.c.id < line)
        query = query.order_by(table.c.id.desc()).limit(limit)
    with reading(ctx.engine) as conn:
        rows = conn.execute(query).all()
    if not forward:
        rows.reverse()
    if rows:
        first, last = rows[0].id, rows[-1].id
    else:  # nothing new: hand the same position back, as CloudWatch does
        first = last = line or 0
    return {"events": [_event(row) for row in rows], "nextForwardToken": f"f/{last}",
            "nextBackwardToken": f"b/{first}"}


@handler("logs", "FilterLogEvents")
def filter_log_events(ctx: RequestContext, req: dict) -> dict:
    group = _group(ctx, req)
    names, prefix = req.get("logStreamNames"), req.get("logStreamNamePrefix")
    if names and prefix:
        raise invalid("logStreamNames and logStreamNamePrefix cannot both be given.")
    streams = {s["_key"]: s["logStreamName"] for s in _streams(ctx, group, prefix)
               if not names or s["logStreamName"] in names}
    pattern = FilterPattern.parse(req.get("filterPattern") or "")
    table = group.table
    conditions = [group.key.in_(list(streams)), *_time_conditions(table, req, end_inclusive=True)]
    conditions += [table.c.message.contains(term, autoescape=True) for term in pattern.required]
    page = paging.keyset_page(
        ctx.engine, sa.select(table).where(*conditions), table.c.timestamp, table.c.id, True,
        req.get("limit", MAX_EVENTS), req.get("nextToken"),
        dict(group=group.name, streams=sorted(streams.values()), pattern=req.get("filterPattern") or "",
             start=req.get("startTime"), end=req.get("endTime")), invalid)
    # The database narrows by the required terms (LIKE may ignore case); the pattern has the last word.
    events = [dict(_event(row), logStreamName=streams[row._mapping[group.key.name]], eventId=str(row.id),
                   ingestionTime=_ms(row.timestamp)) for row in page.rows if pattern.matches(row.message)]
    out = {"events": events}
    if page.next_token:
        out["nextToken"] = page.next_token
    return out


@dataclass(frozen=True)
class FilterPattern:
    """A CloudWatch Logs filter pattern for unstructured events, case sensitive as CloudWatch's are:
    terms and "quoted phrases" that must all appear, ``-term`` that must not, ``?term`` of which one
    must, or ``%regular expression%``. JSON (``{ $.x = … }``) and space-delimited (``[a, b]``)
    patterns are refused rather than matched wrongly."""

    required: tuple[str, ...] = ()
    excluded: tuple[str, ...] = ()
    any_of: tuple[str, ...] = ()
    regex: re.Pattern | None = None

    @classmethod
    def parse(cls, text: str) -> "FilterPattern":
        text = text.strip()
        if not text:
            return cls()
        if text.startswith(("{", "[")):
            raise invalid("jobforge matches unstructured filter patterns only (terms, \"phrases\", -term, ?term "
                          "or %regex%), not JSON or space-delimited ones.")
        if len(text) > 1 and text.startswith("%") and text.endswith("%"):
            try:
                return cls(regex=re.compile(text[1:-1]))
            except re.error as err:
                raise invalid(f"Invalid regular expression in the filter pattern: {err}") from None
        if text.count('"') % 2:
            raise invalid("Invalid filter pattern: a quoted phrase is not closed.")
        terms = {"": [], "-": [], "?": []}
        for sign, phrase, word in re.findall(r'([-?]?)"([^"]*)"|(\S+)', text):
            if word:
                sign, phrase = (word[0], word[1:]) if word[0] in "-?" and len(word) > 1 else ("", word)
            if phrase:
                terms[sign].append(phrase)
        if terms["?"] and (terms[""] or terms["-"]):
            raise invalid("Invalid filter pattern: ?terms cannot be mixed with other terms.")
        if terms["-"] and not terms[""]:
            raise invalid("Invalid filter pattern: a -term needs at least one term to match.")
        return cls(tuple(terms[""]), tuple(terms["-"]), tuple(terms["?"]))

    def matches(self, message: str) -> bool:
        if self.regex is not None:
            return self.regex.search(message) is not None
        return (all(term in message for term in self.required)
                and not any(term in message for term in self.excluded)
                and (not self.any_of or any(term in message for term in self.any_of)))


# -- Logs Insights -----------------------------------------------------------

def _insights_events(ctx: RequestContext, group, start: int, end: int) -> list[dict]:
    streams = group.streams(ctx)
    if not streams:
        return []
    table = group.table
    with reading(ctx.engine) as conn:
        rows = conn.execute(sa.select(table).where(group.key.in_(list(streams)), table.c.timestamp >= start,
                                                   table.c.timestamp < end + 1)
                            .order_by(table.c.timestamp, table.c.id)).all()
    log = f"{ctx.account_id}:{group.name}"
    return [{**_json_fields(row.message), "@timestamp": _insights_time(row.timestamp), "@message": row.message,
             "@logStream": streams[row._mapping[group.key.name]], "@log": log, "@ptr": f"{group.name}:{row.id}"}
            for row in rows]


def _json_fields(message: str) -> dict:
    """The fields Logs Insights discovers in a JSON event: its members, nested ones joined with dots."""
    if not message.lstrip().startswith("{"):
        return {}
    try:
        document = json.loads(message)
    except ValueError:
        return {}
    fields: dict = {}

    def walk(value, path):
        if isinstance(value, dict):
            for key, item in value.items():
                walk(item, f"{path}.{key}" if path else str(key))
        elif path:
            fields[path] = value if isinstance(value, (str, int, float, bool)) or value is None else json.dumps(value)

    walk(document, "")
    return fields


def _insights_time(epoch: float) -> str:
    return dt.datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%d %H:%M:%S.%f")[:-3]


@handler("logs", "StartQuery")
def start_query(ctx: RequestContext, req: dict) -> dict:
    if req.get("queryLanguage", "CWLI") != "CWLI":
        raise invalid("jobforge answers Logs Insights (CWLI) queries only.")
    given = [key for key in ("logGroupName", "logGroupNames", "logGroupIdentifiers") if req.get(key)]
    if len(given) != 1:
        raise invalid("Specify exactly one of logGroupName, logGroupNames and logGroupIdentifiers.")
    names = req[given[0]] if given[0] != "logGroupName" else [req["logGroupName"]]
    if req["endTime"] < req["startTime"]:
        raise invalid("endTime must not be earlier than startTime.")
    query = logs_insights.parse(req["queryString"])
    groups = [_group(ctx, {"logGroupIdentifier": name}) for name in names]
    events, scanned = [], 0
    for group in groups:
        found = _insights_events(ctx, group, req["startTime"], req["endTime"])
        scanned += sum(len(e["@message"]) for e in found)
        events.extend(found)
    rows, matched = query.run(events, req.get("limit", MAX_EVENTS))
    results = [[{"field": name, "value": str(row[name])} for name in (*query.fields, "@ptr") if name in row]
               for row in rows]
    statistics = {"recordsMatched": float(matched), "recordsScanned": float(len(events)),
                  "bytesScanned": float(scanned), "logGroupsScanned": float(len(groups))}
    query_id = str(uuid.uuid4())
    with ctx.engine.begin() as conn:
        conn.execute(log_queries.insert().values(
            query_id=query_id, account_id=ctx.account_id, region=ctx.region, status="Complete",
            created_at=time.time(),
            spec={"groups": [g.name for g in groups], "queryString": req["queryString"],
                  "results": results, "statistics": statistics}))
    return {"queryId": query_id}


def _query(ctx: RequestContext, query_id: str):
    with reading(ctx.engine) as conn:
        row = conn.execute(sa.select(log_queries).where(log_queries.c.query_id == query_id,
                                                        log_queries.c.account_id == ctx.account_id,
                                                        log_queries.c.region == ctx.region)).first()
    if row is None:
        raise ServiceError("ResourceNotFoundException", f"Query {query_id} does not exist.")
    return row


@handler("logs", "GetQueryResults")
def get_query_results(ctx: RequestContext, req: dict) -> dict:
    row = _query(ctx, req["queryId"])
    return {"queryLanguage": "CWLI", "status": row.status, "results": row.spec["results"],
            "statistics": row.spec["statistics"]}


@handler("logs", "StopQuery")
def stop_query(ctx: RequestContext, req: dict) -> dict:
    _query(ctx, req["queryId"])
    return {"success": False}  # queries complete within StartQuery: nothing is left to stop
