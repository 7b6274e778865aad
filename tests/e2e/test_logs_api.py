"""CloudWatch Logs API over the job store, through boto3 and the Braket SDK's own log and metric readers.

The jobs here are Braket hybrid jobs on a GPU instance type in a server that
offers no GPU: the scheduler fails them at once, honestly, without running
anything, and the test writes their log lines into the store itself so every
read is deterministic.
"""

from __future__ import annotations

import subprocess
import sys
import time
import uuid

import boto3
import pytest
from botocore.exceptions import ClientError

from jobforge.core import jobs as core_jobs
from jobforge.core.store import create_engine
from jobforge.testing_server import ServerProcess

GROUP = "/aws/braket/jobs"


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    srv = ServerProcess(tmp_path_factory.mktemp("logs") / "data", extra_args=["--gpus", "0"]).start()
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def engine(server):
    return create_engine(f"sqlite:///{server.data_dir / 'jobforge.db'}")


@pytest.fixture(scope="module")
def account(server):
    return server.client("sts").get_caller_identity()["Account"]


def make_job(server, account, name: str) -> dict:
    braket = server.client("braket")
    arn = braket.create_job(
        clientToken=str(uuid.uuid4()), jobName=name, roleArn=f"arn:aws:iam::{account}:role/JobforgeExecutionRole",
        algorithmSpecification={"scriptModeConfig": {"entryPoint": "algo:main", "s3Uri": "s3://b/source.tar.gz",
                                                     "compressionType": "GZIP"}},
        outputDataConfig={"s3Path": "s3://b/out"}, instanceConfig={"instanceType": "ml.g4dn.xlarge",
                                                                   "volumeSizeInGb": 30},
        deviceConfig={"device": "local:braket/braket_sv"})["jobArn"]
    deadline = time.time() + 20
    while (job := braket.get_job(jobArn=arn))["status"] != "FAILED":
        assert time.time() < deadline, job["status"]
        time.sleep(0.1)
    assert "GPU" in job["failureReason"]
    return job


@pytest.fixture(scope="module")
def jobs_with_logs(server, engine, account):
    """Two jobs: 'alpha' with 25 lines (metrics on every 5th), 'beta' with 3."""
    made = {}
    start = time.time() - 100
    for name, count in (("alpha", 25), ("beta", 3)):
        job = make_job(server, account, name)
        job_id = job["jobArn"].rsplit("/", 1)[1]
        lines = []
        for i in range(count):
            text = (f"Metrics - timestamp={start + i:.3f}; energy={-0.1 * i:.4f}; iteration_number={i};"
                    if name == "alpha" and i % 5 == 0 else f"{name} line {i}")
            lines.append((start + i, text))
        core_jobs.add_logs(engine, job_id, name, lines)
        made[name] = (job, lines)
    return made


def stream_of(job: dict) -> str:
    return f"{job['jobName']}/{job['jobArn'].rsplit('/', 1)[1]}/"


def test_groups_and_streams(server, jobs_with_logs):
    logs = server.client("logs")
    groups = logs.describe_log_groups(logGroupNamePrefix="/aws/braket")["logGroups"]
    assert [g["logGroupName"] for g in groups] == [GROUP]
    assert groups[0]["storedBytes"] > 0
    alpha = jobs_with_logs["alpha"][0]
    streams = logs.describe_log_streams(logGroupName=GROUP, logStreamNamePrefix=stream_of(alpha))["logStreams"]
    assert len(streams) == 1
    assert streams[0]["logStreamName"].startswith(stream_of(alpha) + "algo-1-")
    assert streams[0]["lastEventTimestamp"] - streams[0]["firstEventTimestamp"] == 24_000
    everything = logs.describe_log_streams(logGroupName=GROUP, limit=1)
    assert len(everything["logStreams"]) == 1 and "nextToken" in everything
    rest = logs.describe_log_streams(logGroupName=GROUP, limit=1, nextToken=everything["nextToken"])
    assert {everything["logStreams"][0]["logStreamName"][:5], rest["logStreams"][0]["logStreamName"][:5]} == \
        {"alpha", "beta/"}


def test_missing_group_and_stream(server, jobs_with_logs):
    logs = server.client("logs")
    with pytest.raises(ClientError) as err:
        logs.describe_log_streams(logGroupName="/aws/sagemaker/NoSuchGroup")
    assert err.value.response["Error"]["Code"] == "ResourceNotFoundException"
    with pytest.raises(logs.exceptions.ResourceNotFoundException):
        logs.get_log_events(logGroupName=GROUP, logStreamName="alpha/nope/algo-1-1")


def test_get_log_events_paging(server, jobs_with_logs):
    logs = server.client("logs")
    alpha, lines = jobs_with_logs["alpha"]
    stream = logs.describe_log_streams(logGroupName=GROUP, logStreamNamePrefix=stream_of(alpha))["logStreams"][0]
    name = stream["logStreamName"]
    seen, token = [], None
    while True:
        kwargs = {"nextToken": token} if token else {}
        page = logs.get_log_events(logGroupName=GROUP, logStreamName=name, startFromHead=True, limit=10, **kwargs)
        if not page["events"]:
            assert page["nextForwardToken"] == token  # the end: the same token comes back
            break
        seen += [e["message"] for e in page["events"]]
        token = page["nextForwardToken"]
    assert seen == [text for _, text in lines]
    latest = logs.get_log_events(logGroupName=GROUP, logStreamName=name, limit=3)
    assert [e["message"] for e in latest["events"]] == [text for _, text in lines[-3:]]
    older = logs.get_log_events(logGroupName=GROUP, logStreamName=name, limit=3,
                                nextToken=latest["nextBackwardToken"])
    assert [e["message"] for e in older["events"]] == [text for _, text in lines[-6:-3]]
    since = logs.get_log_events(logGroupName=GROUP, logStreamName=name, startFromHead=True,
                                startTime=int(lines[20][0] * 1000))
    assert [e["message"] for e in since["events"]] == [text for _, text in lines[20:]]


def test_filter_log_events(server, jobs_with_logs):
    logs = server.client("logs")
    found = logs.filter_log_events(logGroupName=GROUP, filterPattern='"line 2"')["events"]
    assert sorted(e["message"] for e in found) == ["alpha line 2", *(f"alpha line {i}" for i in (21, 22, 23, 24)),
                                                   "beta line 2"]
    assert {e["logStreamName"].split("/")[0] for e in found} == {"alpha", "beta"}
    both_terms = logs.filter_log_events(logGroupName=GROUP, filterPattern="beta 2")["events"]
    assert [e["message"] for e in both_terms] == ["beta line 2"]
    first = logs.filter_log_events(logGroupName=GROUP, logStreamNamePrefix="alpha/", limit=20)
    assert len(first["events"]) == 20 and "nextToken" in first
    second = logs.filter_log_events(logGroupName=GROUP, logStreamNamePrefix="alpha/", limit=20,
                                    nextToken=first["nextToken"])
    assert len(second["events"]) == 5 and "nextToken" not in second
    with pytest.raises(logs.exceptions.InvalidParameterException):
        logs.filter_log_events(logGroupName=GROUP, filterPattern="{ $.level = \"ERROR\" }")


def test_insights_query_and_malformed_queries(server, jobs_with_logs):
    logs = server.client("logs")
    alpha, lines = jobs_with_logs["alpha"]
    prefix = stream_of(alpha).replace("/", "\\/")
    query = f"fields @timestamp, @message | filter @logStream like /^{prefix}/ | filter @message like /Metrics - /"
    query_id = logs.start_query(logGroupName=GROUP, startTime=int(lines[0][0]) - 1, endTime=int(time.time()),
                                queryString=query, limit=10000)["queryId"]
    answer = logs.get_query_results(queryId=query_id)
    assert answer["status"] == "Complete"
    messages = [next(f["value"] for f in row if f["field"] == "@message") for row in answer["results"]]
    assert messages == [text for _, text in lines if text.startswith("Metrics")]
    assert answer["statistics"]["recordsMatched"] == 5
    for bad in ("stats pct(i, 50) by bin(5m)", "fields @message | filter @message like", "| limit 5",
                "parse @message 'a * b' as x"):
        with pytest.raises(logs.exceptions.MalformedQueryException):
            logs.start_query(logGroupName=GROUP, startTime=0, endTime=int(time.time()), queryString=bad)
    with pytest.raises(logs.exceptions.ResourceNotFoundException):
        logs.get_query_results(queryId=str(uuid.uuid4()))


def test_braket_sdk_reads_logs_and_metrics(server, jobs_with_logs, monkeypatch, capsys):
    """The SDK's own readers: its Logs Insights metrics fetcher and its log-stream printer."""
    from braket.aws import AwsSession
    from braket.jobs import logs as sdk_logs
    from braket.jobs.metrics_data.cwl_insights_metrics_fetcher import CwlInsightsMetricsFetcher
    from braket.jobs.metrics_data.definitions import MetricType

    monkeypatch.setenv("AWS_ENDPOINT_URL", server.endpoint)
    session = AwsSession(boto_session=boto3.Session(region_name="us-east-1", **server.credentials()))
    alpha, lines = jobs_with_logs["alpha"]
    prefix = stream_of(alpha).rstrip("/")
    metrics = CwlInsightsMetricsFetcher(session).get_metrics_for_job(
        alpha["jobName"], MetricType.ITERATION_NUMBER, job_start_time=int(lines[0][0]) - 1, stream_prefix=prefix)
    assert metrics["iteration_number"] == [0, 5, 10, 15, 20]
    assert metrics["energy"] == pytest.approx([0.0, -0.5, -1.0, -1.5, -2.0])

    names, positions = [], {}
    sdk_logs.flush_log_streams(session, GROUP, prefix, names, positions, 1, False, sdk_logs.ColorWrap(),
                               ["COMPLETED", "COMPLETED"])
    printed = capsys.readouterr().out.strip().splitlines()
    assert printed == [text for _, text in lines]


def test_accounts_are_isolated(server, jobs_with_logs):
    subprocess.run([sys.executable, "-m", "jobforge.cli", "--data-dir", str(server.data_dir), "accounts", "create",
                    "other"], check=True, capture_output=True)
    logs = server.client("logs", profile="other")
    assert logs.describe_log_groups()["logGroups"] == []
    with pytest.raises(logs.exceptions.ResourceNotFoundException):
        logs.describe_log_streams(logGroupName=GROUP)


@pytest.fixture(scope="module")
def patterned(server, engine, account):
    """A job whose lines exercise filter patterns and JSON fields."""
    job = make_job(server, account, "patterned")
    start = time.time() - 50
    texts = ["ERROR something bad", "error in lower case", "ERROR Exiting now", "INFO fine",
             '{"level": "ERROR", "i": 10, "detail": {"code": 7}}', '{"level": "INFO", "i": 3}']
    core_jobs.add_logs(engine, job["jobArn"].rsplit("/", 1)[1], "patterned",
                       [(start + i, text) for i, text in enumerate(texts)])
    return job, start, texts


def test_filter_patterns_match_as_cloudwatch_does(server, patterned):
    job, _, _ = patterned
    logs = server.client("logs")

    def matching(pattern):
        found = logs.filter_log_events(logGroupName=GROUP, logStreamNamePrefix="patterned/", filterPattern=pattern)
        return [e["message"] for e in found["events"]]

    assert matching("ERROR") == ["ERROR something bad", "ERROR Exiting now", '{"level": "ERROR", "i": 10, '
                                 '"detail": {"code": 7}}']  # case sensitive
    assert matching("error") == ["error in lower case"]
    assert matching("ERROR -Exiting") == ["ERROR something bad", '{"level": "ERROR", "i": 10, "detail": {"code": 7}}']
    assert matching("?fine ?Exiting") == ["ERROR Exiting now", "INFO fine"]
    assert matching("%ERR.R [a-z]+ bad%") == ["ERROR something bad"]
    assert matching('"something bad"') == ["ERROR something bad"]
    for bad in ('"', "-Exiting", "?a b", "{ $.level = \"ERROR\" }", "%(%"):
        with pytest.raises(ClientError) as err:
            matching(bad)
        assert err.value.response["Error"]["Code"] == "InvalidParameterException", bad


def test_get_log_events_excludes_its_end_time(server, patterned):
    job, start, texts = patterned
    stream = server.client("logs").describe_log_streams(
        logGroupName=GROUP, logStreamNamePrefix=stream_of(job))["logStreams"][0]["logStreamName"]
    third = int((start + 2) * 1000)
    events = server.client("logs").get_log_events(logGroupName=GROUP, logStreamName=stream, startFromHead=True,
                                                  endTime=third)["events"]
    assert [e["message"] for e in events] == texts[:2]
    inclusive = server.client("logs").filter_log_events(logGroupName=GROUP, logStreamNames=[stream], endTime=third)
    assert [e["message"] for e in inclusive["events"]] == texts[:3]


def test_insights_reads_json_fields_and_wants_one_group_source(server, patterned):
    job, start, _ = patterned
    logs = server.client("logs")
    window = dict(startTime=int(start) - 10, endTime=int(start) + 100)
    query = logs.start_query(logGroupName=GROUP, queryString="fields @message, i, detail.code | filter level = 'ERROR'",
                             **window)["queryId"]
    deadline = time.time() + 20
    while (result := logs.get_query_results(queryId=query))["status"] != "Complete":
        assert time.time() < deadline
        time.sleep(0.1)
    rows = [{field["field"]: field["value"] for field in row} for row in result["results"]]
    assert [(r["i"], r["detail.code"]) for r in rows] == [("10", "7")]

    def values_of(query_string):
        query = logs.start_query(logGroupName=GROUP, queryString=query_string, **window)["queryId"]
        while (answer := logs.get_query_results(queryId=query))["status"] != "Complete":
            time.sleep(0.1)
        return [next(f["value"] for f in row if f["field"] == "i") for row in answer["results"]]

    assert values_of("fields i | filter i > 5 | sort i desc") == ["10"]
    assert values_of("fields i | filter i <= 3 or detail.code = 7 | sort i asc") == ["3", "10"]
    with pytest.raises(logs.exceptions.MalformedQueryException):  # functions in filters are not answered
        logs.start_query(logGroupName=GROUP, queryString="filter ispresent(level) | stats count(*)", **window)
    query = logs.start_query(logGroupName=GROUP, **window, queryString=(
        "filter level like /./ | stats count(*) as n, max(i) by level | sort level asc"))["queryId"]
    while (answer := logs.get_query_results(queryId=query))["status"] != "Complete":
        time.sleep(0.1)
    rows = [{f["field"]: f["value"] for f in row} for row in answer["results"]]
    assert rows == [{"level": "ERROR", "n": "1", "max(i)": "10"}, {"level": "INFO", "n": "1", "max(i)": "3"}]
    assert answer["statistics"]["recordsMatched"] == 2  # events matched, not rows made of them
    with pytest.raises(ClientError) as err:
        logs.start_query(logGroupName=GROUP, logGroupNames=[GROUP], queryString="fields @message", **window)
    assert err.value.response["Error"]["Code"] == "InvalidParameterException"


def test_describe_log_groups_by_identifier_and_class(server, patterned):
    logs = server.client("logs")
    assert [g["logGroupName"] for g in logs.describe_log_groups(logGroupIdentifiers=[GROUP])["logGroups"]] == [GROUP]
    assert logs.describe_log_groups(logGroupIdentifiers=["/nope"])["logGroups"] == []
    assert logs.describe_log_groups(logGroupClass="INFREQUENT_ACCESS")["logGroups"] == []
