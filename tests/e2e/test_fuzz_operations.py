"""A fuzz corpus over every served operation: invalid input, sent the way real clients send it, always gets a
4xx in the service's own error shape, never a 5xx or a dropped connection, on SQLite and on PostgreSQL.

Inputs are generated from the botocore models with a fixed seed: each case is an operation's required
members with one thing wrong, a missing required member, a wrong type, a length, size or value out of
bounds, a pattern or enum violation, odd Unicode (unpaired surrogates, NUL, right-to-left and zero-width
characters, combining marks, non-characters), an edge value handlers read further (paging tokens, URIs,
extreme dates), a huge list. They go out through botocore's own serializer with client-side validation
off, so every wrong value reaches the wire in the protocol's real shape; what no serializer can write
(invalid UTF-8, NUL in a path, malformed or deeply nested bodies) goes out as raw signed HTTP.
"""

from __future__ import annotations

import datetime as dt
import json
import random
import re
import uuid
from collections import Counter
from dataclasses import dataclass
from urllib.parse import quote, urlsplit
from xml.etree import ElementTree

import pytest
import urllib3
from botocore import parsers, serialize, xform_name
from botocore.auth import S3SigV4Auth, SigV4Auth
from botocore.awsrequest import prepare_request_dict
from botocore.eventstream import EventStream
from botocore.exceptions import (BotoCoreError, ClientError, HTTPClientError, IncompleteReadError,
                                 ResponseStreamingError)
from botocore.parsers import ResponseParserError
from botocore.response import StreamingBody

import rawclient
from selftest_kind import CATEGORY as TEST_CATEGORY, SELFTEST_ENV
from model_values import DEPTH, valid_value
from jobforge.api.base import HANDLERS
from jobforge.core import service_models
from jobforge.server.app import load_api_modules
from jobforge.testing_server import ServerProcess

SEED = 20260603
CASES_PER_OPERATION = 10
RAW_CASES_PER_OPERATION = 3
HUGE_LIST = 5000
MAX_GENERATED_LENGTH = 70_000  # longer strings are not sent: "too long" then means below the minimum

# These would start real work (a training job, a hybrid job, a quantum task, a fine-tuning run) from a valid
# request. Only their invalid forms are sent: every case also leaves out a required member, so the server
# refuses it before any handler runs, while the mutation still goes through parsing and validation.
STARTS_WORK = {("sagemaker", "CreateJob"), ("braket", "CreateJob"), ("braket", "CreateQuantumTask"),
               ("bedrock", "CreateModelCustomizationJob")}

ODD_TEXT = [
    "\ud800x",  # an unpaired high surrogate
    "x\udfff",  # an unpaired low surrogate
    "a\x00b",  # NUL
    "\x00",
    "\u202eevil\u202c.txt",  # right-to-left override
    "zero\u200bwidth\u200d\u2060",  # zero-width space, joiner, word joiner
    "\ufeffbom",
    "e\u0301\u0301\u0301\u0301",  # stacked combining marks
    "\uffff\ufffe\ufdd0",  # non-characters
    "\U0001f600\U0001f916",  # emoji (astral plane)
    "\U000e0041\U000e007f",  # tag characters
    "\x07\x1b[31mred\x1b[0m",  # control characters
    "\u05d0\u05d1 \u0627\u0644",  # Hebrew and Arabic
    "\u2028\u2029",  # line and paragraph separators
]


def served_operations() -> list[tuple[str, str]]:
    load_api_modules()
    return sorted(HANDLERS)


# -- values from the model -------------------------------------------------------------------------------------


def members(shape, value, path=()):
    """Every (path, shape) below a value built by valid_value, the value itself first."""
    yield path, shape
    if shape.metadata.get("document") or value is None:
        return
    if shape.type_name == "structure":
        for name, item in value.items():
            yield from members(shape.members[name], item, path + (name,))
    elif shape.type_name == "list":
        for index, item in enumerate(value):
            yield from members(shape.member, item, path + (index,))
    elif shape.type_name == "map":
        for key, item in value.items():
            yield from members(shape.value, item, path + (key,))


def replaced(value, path, new):
    if not path:
        return new
    copy = dict(value) if isinstance(value, dict) else list(value)
    if new is _DROP and len(path) == 1:
        del copy[path[0]]
        return copy
    copy[path[0]] = replaced(value[path[0]], path[1:], new)
    return copy


_DROP = object()


# -- mutations ---------------------------------------------------------------------------------------------------


def _wrong_type(shape, rng):
    kind = shape.type_name
    if shape.metadata.get("document"):
        return None
    choices = {
        "string": [12345, True, ["x"], {"x": "y"}, 1.5],
        "integer": ["12", "twelve", 1.5, True, [1]], "long": ["12", "x", 2.5, False, {"a": 1}],
        "double": ["1.5", "x", True, [1.0]], "float": ["1.5", "x", True],
        "boolean": ["yes", 1, "TRUE", [True]],
        "list": ["notalist", {"a": 1}, 7], "map": ["notamap", [1, 2], 7], "structure": ["x", [1, 2], 7],
        "timestamp": [True, [1], {"t": 1}], "blob": [123, ["x"], {"b": 1}],
    }.get(kind)
    return rng.choice(choices) if choices else None


def _out_of_bounds(shape, rng):
    meta, kind = shape.metadata, shape.type_name
    if kind == "string":
        options = []
        if "max" in meta and meta["max"] < MAX_GENERATED_LENGTH:
            options.append("w" * (meta["max"] + 1))
        if meta.get("min", 0) > 0:
            options.append("w" * (meta["min"] - 1))
        return rng.choice(options) if options else None
    if kind in ("list", "map"):
        item = valid_value(shape.member if kind == "list" else shape.value, DEPTH)
        options = []
        if "max" in meta and meta["max"] < HUGE_LIST:
            options.append(meta["max"] + 1)
        if meta.get("min", 0) > 0:
            options.append(meta["min"] - 1)
        if not options:
            return None
        size = rng.choice(options)
        if kind == "list":
            return [item] * size
        return {f"k{i}": item for i in range(size)}
    if kind in ("integer", "long", "double", "float"):
        options = [2 ** 31, 2 ** 63, -(2 ** 63) - 1, 10 ** 30, -1]
        if "max" in meta:
            options.append(meta["max"] + 1)
        if "min" in meta:
            options.append(meta["min"] - 1)
        if kind in ("double", "float"):
            options += [1e308, float("inf"), float("nan")]
        return rng.choice(options)
    if kind == "timestamp":
        return rng.choice([-(10 ** 12), 10 ** 15, 0])
    return None


def _broken_constraint(shape, rng):
    meta = shape.metadata
    if shape.type_name != "string":
        return None
    if meta.get("enum"):
        return rng.choice(["NotAnEnumValue", meta["enum"][0].lower() + "x", ""])
    if meta.get("pattern"):
        return rng.choice(["!! not valid !!", "../../etc/passwd", "a b", "*"])
    return None


def _odd_text(shape, rng):
    return rng.choice(ODD_TEXT) if shape.type_name == "string" else None


# Values a model usually accepts that handlers decode or interpret further: paging tokens, documents, URIs,
# ARNs, numbers and dates written as text.
EDGE_TEXT = ["eyJhIjogMX0=", "W10=", "bnVsbA==", "AAAA", "=", "null", "{}", "[]", '{"a":', "-1", "0",
             "99999999999999999999", "1e400", "NaN", "2026-02-30T25:61:00Z", "s3://", "s3://b", "s3:///k",
             "s3://bucket/../../k", "arn:aws:iam::000000000000:role/other", "arn:", "*", "%", "%00", "..", "/"]


def _edge_value(shape, rng):
    meta, kind = shape.metadata, shape.type_name
    if kind == "string":
        if meta.get("enum"):
            return rng.choice(meta["enum"])
        options = EDGE_TEXT + ["", "e" * min(meta.get("max", 1024), MAX_GENERATED_LENGTH)]
        return rng.choice(options)
    if kind in ("integer", "long", "double", "float"):
        return rng.choice([meta.get("min", 0), meta.get("max", 2 ** 31 - 1), 0, -1])
    if kind in ("list", "map"):
        return [] if kind == "list" else {}
    if kind == "timestamp":
        return rng.choice([dt.datetime(1970, 1, 1, tzinfo=dt.timezone.utc),
                           dt.datetime(9999, 12, 31, 23, 59, tzinfo=dt.timezone(dt.timedelta(hours=-12))),
                           dt.datetime(1, 1, 1, tzinfo=dt.timezone(dt.timedelta(hours=14)))])
    return None


def _huge_list(shape, rng):
    if shape.type_name != "list":
        return None
    return [valid_value(shape.member, DEPTH)] * HUGE_LIST


MUTATIONS = {"wrong type": _wrong_type, "out of bounds": _out_of_bounds, "broken constraint": _broken_constraint,
             "odd text": _odd_text, "edge value": _edge_value, "huge list": _huge_list}
# Each operation's cases walk this rotation, so every kind of mutation is tried on every operation.
ROTATION = ["missing required", "odd text", "wrong type", "out of bounds", "broken constraint", "edge value",
            "odd text", "huge list", "edge value", "wrong type"]


@dataclass
class Case:
    service: str
    operation: str
    kind: str
    where: str
    params: dict

    def __str__(self):
        return f"{self.service}.{self.operation} [{self.kind} at {self.where or 'input'}]"


def _required_paths(shape, value):
    return [path + (name,) for path, member in members(shape, value)
            if member.type_name == "structure" and not member.metadata.get("document")
            for name in member.required_members]


def skeleton(shape, value, keep=()):
    """A full value cut down to its required members, and the members along the path keep."""
    if shape.metadata.get("document"):
        return value
    step, rest = (keep[0], keep[1:]) if keep else (None, ())
    if shape.type_name == "structure":
        wanted = set(shape.required_members) | {step} | (set(value) if shape.metadata.get("union") else set())
        return {name: skeleton(shape.members[name], item, rest if name == step else ())
                for name, item in value.items() if name in wanted}
    if shape.type_name == "list":
        return [skeleton(shape.member, item, rest if index == step else ()) for index, item in enumerate(value)]
    if shape.type_name == "map":
        return {key: skeleton(shape.value, item, rest if key == step else ()) for key, item in value.items()}
    return value


def _framing(member) -> bool:
    """Content-Length is HTTP framing, not a value: a wrong one makes the server wait for bytes that never
    come, which is the connection limits' concern (the idle and body timeouts), not this corpus'."""
    return member.serialization.get("location") == "header" and \
        member.serialization.get("name", "").lower() == "content-length"


def _where(path) -> str:
    return ".".join(str(step) for step in path)


def _mutation(kind, targets, rng):
    """(path, new value) for one target the mutation applies to, or None."""
    options = [(path, MUTATIONS[kind](member, rng)) for path, member in targets]
    options = [(path, new) for path, new in options if new is not None]
    return rng.choice(options) if options else None


def with_resources(shape, value, resources: dict[str, str]):
    """A value whose members naming a resource (Bucket, Key, RoleName, …) name one that exists."""
    if shape.type_name == "structure" and not shape.metadata.get("document"):
        return {name: resources[name] if name in resources and shape.members[name].type_name == "string"
                else with_resources(shape.members[name], item, resources) for name, item in value.items()}
    if shape.type_name == "list":
        return [with_resources(shape.member, item, resources) for item in value]
    return value


def cases_for(service: str, operation: str, rng: random.Random, resources: dict[str, str]) -> list[Case]:
    """Each case is the operation's required members with one thing wrong; the member it breaks may be optional.

    Operations that remove what they name (Delete…, Abort…, Complete…) get names of nothing, so the
    resources stay for the operations after them.
    """
    shape = service_models.operation(service, operation).input_shape
    if shape is None:
        return [Case(service, operation, "no input", "", {})]
    full = valid_value(shape)
    if not operation.startswith(("Delete", "Abort", "Complete")):
        full = with_resources(shape, full, resources)
    targets = [(path, member) for path, member in members(shape, full) if path and not _framing(member)]
    required = _required_paths(shape, full)
    cases = []
    for kind in ROTATION[:CASES_PER_OPERATION]:
        if kind == "missing required" and required:
            path = rng.choice(required)
            params = replaced(skeleton(shape, full, path), path, _DROP)
        else:
            if kind == "missing required":
                kind = "odd text"
            found = _mutation(kind, targets, rng) or _mutation("wrong type", targets, rng)
            if found is None:
                continue
            path, new = found
            params = replaced(skeleton(shape, full, path), path, new)
        if (service, operation) in STARTS_WORK:
            # Also leave out a top-level required member the mutation did not touch: the request is refused
            # before any handler runs, and so can never start work.
            untouched = [name for name in shape.required_members if name != path[0]]
            if not untouched:
                continue
            params = {name: value for name, value in params.items() if name != untouched[0]}
        cases.append(Case(service, operation, kind, _where(path), params))
    return cases


# -- raw requests: what no serializer writes ---------------------------------------------------------------------


MARK = "FUZZLABEL"


def _raw_base(service: str, operation: str):
    """The request botocore writes for a valid-looking input, its URI labels set to a marker."""
    model = service_models.service_model(service)
    op = model.operation_model(operation)
    params = valid_value(op.input_shape) if op.input_shape is not None else {}
    labels = []
    for name, member in (op.input_shape.members.items() if op.input_shape is not None else ()):
        if member.serialization.get("location") == "uri":
            params[name] = f"{MARK}{len(labels)}"
            labels.append(name)
    serializer = serialize.create_serializer(model.resolved_protocol, include_validation=False)
    request = serializer.serialize_to_request(params, op)
    prepare_request_dict(request, endpoint_url="http://fuzz")
    url = urlsplit(request["url"])
    path = url.path + (f"?{url.query}" if url.query else "")
    body = request["body"]
    if isinstance(body, dict):
        body = "&".join(f"{quote(k)}={quote(str(v))}" for k, v in body.items())
    body = body.encode() if isinstance(body, str) else (body if isinstance(body, bytes) else b"")
    headers = {k: v for k, v in request["headers"].items() if k.lower() not in ("content-length", "content-md5")}
    return model, request["method"], path, body, headers, labels


def raw_cases(service: str, operation: str, rng: random.Random) -> list[tuple[str, str, str, bytes, dict]]:
    model, method, path, body, headers, labels = _raw_base(service, operation)
    protocol = model.resolved_protocol
    found = []
    for index, _ in enumerate(labels):
        marker = f"{MARK}{index}"
        found.append(("invalid UTF-8 in a URI label", method, path.replace(marker, "a%FF%FEb"), body, headers))
        found.append(("%00 in a URI label", method, path.replace(marker, "a%00b"), body, headers))
    clean = re.sub(MARK + r"\d+", "label", path)
    separator = "&" if "?" in clean else "?"
    found.append(("invalid UTF-8 in the query string", method, f"{clean}{separator}x=%FF%FE&Action=%C0%80",
                  body, headers))
    if protocol in ("json", "rest-json") and method in ("POST", "PUT", "PATCH"):
        for name, bad in [("truncated JSON", b'{"a": '), ("invalid UTF-8 in JSON", b'{"a": "\xff\xfe"}'),
                          ("JSON nested 100000 deep", b'{"a": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"),
                          ("a JSON array for a body", b"[1, 2, 3]"), ("a JSON string for a body", b'"text"'),
                          ("a huge JSON number", b'{"a": 1' + b"0" * 5000 + b"}"),
                          ("NaN and Infinity", b'{"a": NaN, "b": Infinity}')]:
            found.append((name, method, clean, bad, headers))
    if protocol == "query":
        for name, bad in [("invalid UTF-8 bytes in a form", body + b"&RoleName=\xff\xfe"),
                          ("invalid UTF-8 percent-encoding in a form", body + b"&RoleName=%FF%FE&Path=%C0%AF"),
                          ("%00 in a form field", body + b"&RoleName=a%00b&Description=%00"),
                          ("a deep form key", body + b"&" + b".member.1" * 2000 + b"=x")]:
            found.append((name, method, clean, bad, headers))
    if protocol == "rest-xml" and body.startswith(b"<"):
        for name, bad in [("malformed XML", b"<Delete><Object>"), ("XML nested 100000 deep",
                                                                   b"<a>" * 100_000 + b"</a>" * 100_000),
                          ("an XML entity", b'<!DOCTYPE d [<!ENTITY e "x">]><Delete>&e;</Delete>'),
                          ("invalid UTF-8 in XML", b"<Tagging><TagSet><Tag><Key>\xff</Key></Tag></TagSet></Tagging>"),
                          ("an XML character reference to NUL", b"<Tagging><TagSet><Tag><Key>&#0;</Key>"
                                                                b"<Value>v</Value></Tag></TagSet></Tagging>")]:
            found.append((name, method, clean, bad, headers))
    rng.shuffle(found)
    return found[:RAW_CASES_PER_OPERATION]


# -- sending ------------------------------------------------------------------------------------------------------


@dataclass
class Tally:
    sent: Counter
    unsendable: Counter  # cases the client itself refused to write (they never reach the server)
    failures: list[str]


def _consume(response: dict) -> None:
    """Read what a streaming output carries, so a failure inside the stream is seen too."""
    for value in response.values():
        if isinstance(value, StreamingBody):
            value.read()
        elif isinstance(value, EventStream):
            for _ in value:
                pass


def server_fault(status: int, code: str | None) -> bool:
    """A 5xx, save S3's 501 NotImplemented: its documented answer to a header asking for what it does not
    offer (KMS encryption, Object Lock), which clients do not retry."""
    return status >= 500 and not (status == 501 and code == "NotImplemented")


class FuzzClient:
    """A botocore client that sends what it is given, noting each answer as the server sent it (botocore's
    S3 client turns a 200 whose XML it cannot read into a 500 of its own)."""

    def __init__(self, server, service: str):
        self.client = server.client(service, parameter_validation=False, read_timeout=60, connect_timeout=5)
        self.client.meta.events.register("response-received", self._received)
        self.answer = None

    def _received(self, response_dict=None, **kwargs):
        self.answer = response_dict

    def call(self, operation: str, params: dict):
        self.answer = None
        return getattr(self.client, xform_name(operation))(**params)


# S3 writes a character XML 1.0 cannot hold (a control character in a key or prefix it echoes) as a numeric
# reference that no XML 1.0 parser reads, botocore's included; clients list such keys with encoding-type=url.
_XML_REFERENCE_TO_INVALID = re.compile(rb"&#x(?:[0-8BCEF]|1[0-9A-F]|FFF[EF]);")


def _kind_of_answer(status: int, code: str | None) -> str:
    return "501 NotImplemented" if (status, code) == (501, "NotImplemented") else f"{status // 100}xx"


def send_case(sender: FuzzClient, case: Case, tally: Tally) -> None:
    try:
        _consume(sender.call(case.operation, case.params))
        tally.sent["2xx"] += 1
    except ClientError as err:
        answer = sender.answer or {}
        status = answer.get("status_code") or err.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
        code = err.response.get("Error", {}).get("Code")
        if status < 300 and _XML_REFERENCE_TO_INVALID.search(answer.get("body") or b""):
            tally.sent["2xx echoing characters XML 1.0 cannot hold, as S3 does"] += 1
            return
        tally.sent[_kind_of_answer(status, code)] += 1
        if server_fault(status, code) or not code:
            tally.failures.append(f"{case}: HTTP {status} {code}: {err}")
    except (HTTPClientError, ResponseStreamingError, IncompleteReadError) as err:
        tally.failures.append(f"{case}: connection dropped or timed out: {err!r}")
    except ResponseParserError as err:
        tally.failures.append(f"{case}: the response is not in the service's shape: {err}")
    except ElementTree.ParseError:
        # botocore's GetBucketLocation hook reads the body of any answer as XML; the HTTP parser's own
        # plain-text 400 (a header value it refuses, such as one with control characters) is not.
        tally.sent["4xx from the HTTP parser"] += 1
    except (BotoCoreError, KeyError, ValueError, TypeError, AttributeError, OverflowError) as err:
        tally.unsendable[type(err).__name__] += 1


def send_raw(server, service: str, operation: str, raw, tally: Tally) -> None:
    name, method, path, body, headers = raw
    model = service_models.service_model(service)
    signing_name = model.metadata.get("signingName", model.endpoint_prefix)
    auth = S3SigV4Auth if service == "s3" else SigV4Auth
    label = f"{service}.{operation} [raw: {name}]"
    try:
        status, response_headers, data = rawclient.send(server.endpoint, method, path, service=signing_name,
                                                        credentials=server.credentials(), body=body,
                                                        headers=headers, auth=auth)
    except urllib3.exceptions.HTTPError as err:
        tally.failures.append(f"{label}: connection dropped or timed out: {err!r}")
        return
    if status < 400 or method == "HEAD":
        tally.sent[_kind_of_answer(status, None)] += 1
        return
    try:
        code = parsers.create_parser(model.resolved_protocol).parse(
            {"status_code": status, "headers": response_headers, "body": data},
            model.operation_model(operation).output_shape).get("Error", {}).get("Code")
    except ResponseParserError:
        code = None
    tally.sent[_kind_of_answer(status, code)] += 1
    if server_fault(status, code) or not code:
        tally.failures.append(f"{label}: HTTP {status} {code}: {data[:300]!r}")


# Faults the corpus found under other seeds, replayed on every run: (service, operation, member path, value).
FOUND = [("s3", "ListParts", ("MaxParts",), -1)]


def found_cases(service: str, operation: str, resources: dict[str, str]) -> list[Case]:
    shape = service_models.operation(service, operation).input_shape
    full = with_resources(shape, valid_value(shape), resources) if shape is not None else {}
    return [Case(service, operation, "found before", _where(path), replaced(skeleton(shape, full, path), path, value))
            for found_service, found_operation, path, value in FOUND
            if (found_service, found_operation) == (service, operation)]


def existing_resources(server) -> dict[str, str]:
    """Resources made before the corpus runs, by the member names that name them, so cases get past
    "not found" into what handlers do with a resource."""
    name = f"fuzz-{uuid.uuid4().hex[:12]}"
    s3 = server.client("s3")
    s3.create_bucket(Bucket=name)
    s3.put_object(Bucket=name, Key="fuzz/key", Body=b"fuzz")
    upload = s3.create_multipart_upload(Bucket=name, Key="fuzz/key")["UploadId"]
    s3.upload_part(Bucket=name, Key="fuzz/key", UploadId=upload, PartNumber=1, Body=b"part")
    server.client("iam").create_role(RoleName=name, AssumeRolePolicyDocument=json.dumps(
        {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Principal": {"Service": "sagemaker.amazonaws.com"},
                                                  "Action": "sts:AssumeRole"}]}))
    return {"Bucket": name, "Key": "fuzz/key", "UploadId": upload, "CopySource": f"{name}/fuzz/key", "RoleName": name}


def run_corpus(server) -> Tally:
    rng = random.Random(SEED)
    tally = Tally(Counter(), Counter(), [])
    resources = existing_resources(server)
    senders = {}
    for service, operation in served_operations():
        if service not in senders:
            senders[service] = FuzzClient(server, service)
        for case in cases_for(service, operation, rng, resources) + found_cases(service, operation, resources):
            send_case(senders[service], case, tally)
        for raw in raw_cases(service, operation, rng):
            send_raw(server, service, operation, raw, tally)
    return tally


def _report(database: str, tally: Tally) -> str:
    lines = [f"fuzz corpus on {database}: {len(served_operations())} operations, "
             f"responses {dict(sorted(tally.sent.items()))}, not sendable by the client "
             f"{dict(tally.unsendable) or 0}, failures {len(tally.failures)}"]
    lines += tally.failures
    return "\n".join(lines)


@pytest.fixture(params=["SQLite", "PostgreSQL"])
def any_server(request, tmp_path):
    if request.param == "SQLite":
        yield request.getfixturevalue("server")
        return
    postgres_url = request.getfixturevalue("postgres_url")
    server = ServerProcess(tmp_path / "data", extra_args=["--database-url", postgres_url],
                           env=SELFTEST_ENV).start()
    yield server
    server.stop()


def test_fuzz_corpus(any_server, request):
    tally = run_corpus(any_server)
    report = _report(request.node.callspec.params["any_server"], tally)
    print(report)
    assert not tally.failures, report


# -- text no store can keep, refused by member name ---------------------------------------------------------------


def _refusal(call):
    with pytest.raises(ClientError) as err:
        call()
    return err.value.response["ResponseMetadata"]["HTTPStatusCode"], err.value.response["Error"]


REFUSALS = [  # (service, client method, params, the member named in the refusal, what is wrong with it)
    ("logs", "get_query_results", {"queryId": "\ud800x"}, "queryId", "surrogate"),
    ("logs", "get_query_results", {"queryId": "a\x00b"}, "queryId", "NUL"),
    ("sagemaker", "describe_job", {"JobName": "x\udc00", "JobCategory": TEST_CATEGORY}, "jobName", "surrogate"),
    ("braket", "create_quantum_task", {
        "clientToken": "\ud800x", "deviceArn": "arn:aws:braket:::device/quantum-simulator/amazon/sv1",
        "outputS3Bucket": "amzn-braket-results", "outputS3KeyPrefix": "tasks", "shots": 10, "action": "{}"},
     "clientToken", "surrogate"),
    ("braket", "get_job", {"jobArn": "arn:aws:braket:us-east-1:123456789012:job/a\x00b"}, "jobArn", "NUL"),
    ("braket", "get_quantum_task", {"quantumTaskArn": "arn:aws:braket:us-east-1:123456789012:quantum-task/a\x00b"},
     "quantumTaskArn", "NUL"),
    ("bedrock", "put_model_invocation_logging_configuration",
     {"loggingConfig": {"s3Config": {"bucketName": "a\x00b"}}}, "loggingConfig.s3Config.bucketName", "NUL"),
    ("iam", "get_role", {"RoleName": "a\x00b"}, "roleName", "NUL"),
    ("s3", "get_object", {"Bucket": "any-bucket", "Key": "a\x00b"}, "key", "NUL"),
]
WORDING = {"NUL": "Member must not contain the NUL character",
           "surrogate": "Member must be valid Unicode text (invalid UTF-8 or an unpaired surrogate)"}


def test_unstorable_text_is_refused_by_member(any_server):
    """NUL (PostgreSQL text cannot hold it) and unpaired surrogates (no UTF-8 form) never reach a store:
    the real client's request is refused with the protocol's validation code, naming the member."""
    for service, operation, params, member, problem in REFUSALS:
        status, error = _refusal(lambda: getattr(any_server.client(service), operation)(**params))
        protocol = service_models.service_model(service).resolved_protocol
        expected = {"query": "ValidationError", "rest-xml": "InvalidArgument"}.get(protocol, "ValidationException")
        assert (status, error["Code"]) == (400, expected), (operation, error)
        assert f"at '{member}' failed to satisfy constraint: {WORDING[problem]}" in error["Message"], error
    status, _, body = rawclient.send(any_server.endpoint, "GET", "/quantum-task/a%FF%FEb", service="braket",
                                     credentials=any_server.credentials())
    error = json.loads(body)
    assert (status, error["__type"]) == (400, "ValidationException")
    assert f"Value 'a\\udcff\\udcfeb' at 'quantumTaskArn' failed to satisfy constraint: {WORDING['surrogate']}" \
        in error["message"]


def test_echoed_values_are_printable_in_every_protocol(server):
    """A refused value comes back with its control, format and non-characters escaped: the XML of the
    query protocol stays well-formed and a right-to-left override cannot reorder the message."""
    status, error = _refusal(lambda: server.client("iam").get_role(RoleName="\u202eevil\uffff\x07"))
    assert (status, error["Code"]) == (400, "ValidationError")
    assert "Value '\\u202eevil\\uffff\\u0007' at 'roleName'" in error["Message"]
