"""SageMaker endpoints' invocation metrics through CloudWatch: an endpoint invoked (answers, streams and
model errors) is read back with boto3's cloudwatch client, the AWS CLI and the console's endpoint page, with
exact counts, latencies in microseconds, nothing for another account, and bad queries refused."""

from __future__ import annotations

import datetime as dt
import http.cookiejar
import io
import json
import subprocess
import sys
import urllib.request

import numpy as np
import pytest
from botocore.exceptions import ClientError

from test_sagemaker_endpoints import deploy, upload, wait  # noqa: F401 (fixtures come from that module too)
from test_sagemaker_endpoints import runtime, s3, server, sm  # noqa: F401
from test_sagemaker_endpoint_clients import aws

ANSWERED, STREAMED, REFUSED = 5, 2, 3  # invocations the model answers, streams, and refuses with a 400
INVOKED = ANSWERED + STREAMED + REFUSED
ROWS = np.random.default_rng(1).normal(size=(3, 4))


@pytest.fixture(scope="module")
def endpoint(sm, s3, role_arn):
    import joblib
    from sklearn.linear_model import LogisticRegression

    rng = np.random.default_rng(0)
    features = rng.normal(size=(100, 4))
    buffer = io.BytesIO()
    joblib.dump(LogisticRegression().fit(features, (features[:, 0] > 0).astype(int)), buffer)
    name = deploy(sm, role_arn, upload(s3, {"model.joblib": buffer.getvalue()}),
                  image="683313688378.dkr.ecr.us-east-1.amazonaws.com/sagemaker-scikit-learn:1.2-1-cpu-py3")
    assert wait(sm, name)["EndpointStatus"] == "InService"
    return name


@pytest.fixture(scope="module")
def invoked(runtime, endpoint):
    """The endpoint invoked INVOKED times; the window around them that the reads ask for."""
    started = dt.datetime.now(dt.timezone.utc)
    csv = "\n".join(",".join(str(v) for v in row) for row in ROWS)
    for _ in range(ANSWERED):
        runtime.invoke_endpoint(EndpointName=endpoint, Body=csv, ContentType="text/csv")["Body"].read()
    for _ in range(STREAMED):
        stream = runtime.invoke_endpoint_with_response_stream(EndpointName=endpoint, Body=csv,
                                                              ContentType="text/csv")
        assert b"".join(event["PayloadPart"]["Bytes"] for event in stream["Body"])
    for _ in range(REFUSED):
        with pytest.raises(ClientError) as caught:
            runtime.invoke_endpoint(EndpointName=endpoint, Body=b"not,numbers", ContentType="text/csv")
        assert caught.value.response["OriginalStatusCode"] == 400
    return started - dt.timedelta(minutes=5), dt.datetime.now(dt.timezone.utc) + dt.timedelta(minutes=5)


def dimensions(endpoint: str) -> list[dict]:
    return [{"Name": "EndpointName", "Value": endpoint}, {"Name": "VariantName", "Value": "AllTraffic"}]


def statistics(cloudwatch, endpoint, window, metric: str, **extra) -> dict:
    """Every statistic of the metric over the window, summed over its hour-long periods."""
    out = cloudwatch.get_metric_statistics(
        Namespace="AWS/SageMaker", MetricName=metric, Dimensions=dimensions(endpoint), StartTime=window[0],
        EndTime=window[1], Period=3600, Statistics=["SampleCount", "Sum", "Minimum", "Maximum", "Average"], **extra)
    points = out["Datapoints"]
    assert out["Label"] == metric
    if not points:
        return {}
    return {"SampleCount": sum(p["SampleCount"] for p in points), "Sum": sum(p["Sum"] for p in points),
            "Minimum": min(p["Minimum"] for p in points), "Maximum": max(p["Maximum"] for p in points),
            "Unit": {p["Unit"] for p in points}}


@pytest.fixture(scope="module")
def cloudwatch(server):
    return server.client("cloudwatch")


def test_counts_are_exact(cloudwatch, endpoint, invoked):
    invocations = statistics(cloudwatch, endpoint, invoked, "Invocations")
    assert (invocations["Sum"], invocations["SampleCount"], invocations["Unit"]) == (INVOKED, INVOKED, {"None"})
    assert statistics(cloudwatch, endpoint, invoked, "InvocationsPerInstance")["Sum"] == INVOKED  # one instance
    errors = statistics(cloudwatch, endpoint, invoked, "Invocation4XXErrors")
    assert (errors["Sum"], errors["SampleCount"], errors["Maximum"]) == (REFUSED, INVOKED, 1.0)
    assert statistics(cloudwatch, endpoint, invoked, "Invocation5XXErrors")["Sum"] == 0


def test_latencies_are_in_microseconds_and_sane(cloudwatch, endpoint, invoked):
    for metric in ("ModelLatency", "OverheadLatency"):
        latency = statistics(cloudwatch, endpoint, invoked, metric)
        assert latency["SampleCount"] == INVOKED and latency["Unit"] == {"Microseconds"}
        assert 0 <= latency["Minimum"] <= latency["Maximum"] < 60e6
    assert statistics(cloudwatch, endpoint, invoked, "ModelLatency")["Minimum"] > 0
    assert statistics(cloudwatch, endpoint, invoked, "ModelLatency", Unit="Milliseconds") == {}


def test_get_metric_data_and_list_metrics(cloudwatch, endpoint, invoked):
    queries = [{"Id": "calls", "MetricStat": {"Metric": {"Namespace": "AWS/SageMaker", "MetricName": "Invocations",
                                                         "Dimensions": dimensions(endpoint)},
                                              "Period": 60, "Stat": "Sum"}},
               {"Id": "refused", "Label": "4XX", "MetricStat": {
                   "Metric": {"Namespace": "AWS/SageMaker", "MetricName": "Invocation4XXErrors",
                              "Dimensions": dimensions(endpoint)}, "Period": 60, "Stat": "Average"}},
               {"Id": "latency", "ReturnData": False, "MetricStat": {
                   "Metric": {"Namespace": "AWS/SageMaker", "MetricName": "ModelLatency",
                              "Dimensions": dimensions(endpoint)}, "Period": 60, "Stat": "Maximum"}}]
    out = cloudwatch.get_metric_data(MetricDataQueries=queries, StartTime=invoked[0], EndTime=invoked[1],
                                     ScanBy="TimestampAscending")
    results = {r["Id"]: r for r in out["MetricDataResults"]}
    assert set(results) == {"calls", "refused"}
    assert sum(results["calls"]["Values"]) == INVOKED and results["calls"]["Label"] == "Invocations"
    assert results["calls"]["StatusCode"] == "Complete"
    assert results["calls"]["Timestamps"] == sorted(results["calls"]["Timestamps"])
    assert results["refused"]["Label"] == "4XX" and all(0 <= v <= 1 for v in results["refused"]["Values"])
    paged = cloudwatch.get_paginator("get_metric_data").paginate(
        MetricDataQueries=queries[:1], StartTime=invoked[0], EndTime=invoked[1], MaxDatapoints=1)
    assert sum(v for page in paged for r in page["MetricDataResults"] for v in r["Values"]) == INVOKED

    listed = cloudwatch.list_metrics(Namespace="AWS/SageMaker",
                                     Dimensions=[{"Name": "EndpointName", "Value": endpoint}])["Metrics"]
    assert sorted(m["MetricName"] for m in listed) == sorted(
        ["Invocations", "InvocationsPerInstance", "Invocation4XXErrors", "Invocation5XXErrors", "ModelLatency",
         "OverheadLatency"])
    assert all(m["Dimensions"] == dimensions(endpoint) for m in listed)
    assert cloudwatch.list_metrics(Namespace="AWS/EC2")["Metrics"] == []


def test_the_aws_cli_reads_them(server, endpoint, invoked):
    out = aws(server, "cloudwatch", "get-metric-statistics", "--namespace", "AWS/SageMaker",
              "--metric-name", "Invocations", "--dimensions", f"Name=EndpointName,Value={endpoint}",
              "Name=VariantName,Value=AllTraffic", "--start-time", invoked[0].isoformat(),
              "--end-time", invoked[1].isoformat(), "--period", "3600", "--statistics", "Sum", "SampleCount")
    assert sum(p["Sum"] for p in out["Datapoints"]) == INVOKED
    listed = aws(server, "cloudwatch", "list-metrics", "--namespace", "AWS/SageMaker", "--metric-name",
                 "Invocation4XXErrors")
    assert dimensions(endpoint) in [m["Dimensions"] for m in listed["Metrics"]]


def test_another_account_sees_none(server, endpoint, invoked):
    subprocess.run([sys.executable, "-m", "jobforge.cli", "--data-dir", str(server.data_dir), "accounts", "create",
                    "metrics-other"], check=True, capture_output=True, timeout=120)
    other = server.client("cloudwatch", profile="metrics-other")
    assert other.list_metrics(Namespace="AWS/SageMaker")["Metrics"] == []
    assert statistics(other, endpoint, invoked, "Invocations") == {}
    elsewhere = server.client("cloudwatch", region="eu-west-1")
    assert statistics(elsewhere, endpoint, invoked, "Invocations") == {}


def test_bad_queries_are_refused(cloudwatch, endpoint, invoked):
    base = {"Namespace": "AWS/SageMaker", "MetricName": "Invocations", "Dimensions": dimensions(endpoint),
            "StartTime": invoked[0], "EndTime": invoked[1], "Period": 60, "Statistics": ["Sum"]}
    for change, code, words in [
            ({"StartTime": invoked[1], "EndTime": invoked[0]}, "InvalidParameterValue", "StartTime"),
            ({"Period": 45}, "InvalidParameterValue", "multiple of 60"),
            ({"Statistics": None, "ExtendedStatistics": ["p99"]}, "InvalidParameterValue", "percentiles"),
            ({"ExtendedStatistics": ["p99"]}, "InvalidParameterCombination", "mutually exclusive"),
            ({"Statistics": None}, "MissingParameter", "Statistics"),
            ({"StartTime": invoked[1] - dt.timedelta(days=3)}, "InvalidParameterCombination", "1440")]:
        with pytest.raises(ClientError) as caught:
            cloudwatch.get_metric_statistics(**{k: v for k, v in {**base, **change}.items() if v is not None})
        assert caught.value.response["Error"]["Code"] == code, change
        assert caught.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400
        assert words in caught.value.response["Error"]["Message"], caught.value.response["Error"]["Message"]
    with pytest.raises(ClientError) as caught:
        cloudwatch.get_metric_data(StartTime=invoked[0], EndTime=invoked[1], MetricDataQueries=[
            {"Id": "total", "Expression": "SUM(METRICS())"}])
    assert caught.value.response["Error"]["Code"] == "ValidationError"
    assert "MetricStat queries only" in caught.value.response["Error"]["Message"]
    with pytest.raises(ClientError) as caught:
        cloudwatch.get_metric_data(StartTime=invoked[0], EndTime=invoked[1], MetricDataQueries=[
            {"Id": "p", "MetricStat": {"Metric": {"Namespace": "AWS/SageMaker", "MetricName": "ModelLatency"},
                                       "Period": 60, "Stat": "p99"}}])
    assert "p99" in caught.value.response["Error"]["Message"]
    with pytest.raises(ClientError) as caught:
        cloudwatch.get_metric_data(StartTime=invoked[0], EndTime=invoked[1], NextToken="forged", MetricDataQueries=[
            {"Id": "p", "MetricStat": {"Metric": {"Namespace": "AWS/SageMaker", "MetricName": "ModelLatency"},
                                       "Period": 60, "Stat": "Sum"}}])
    assert caught.value.response["Error"]["Code"] == "InvalidNextToken"


def test_put_metric_data_is_read_back(cloudwatch):
    now = dt.datetime.now(dt.timezone.utc)
    cloudwatch.put_metric_data(Namespace="Custom/Jobs", MetricData=[
        {"MetricName": "Loss", "Dimensions": [{"Name": "Run", "Value": "a"}], "Value": 2.0, "Unit": "Count"},
        {"MetricName": "Loss", "Dimensions": [{"Name": "Run", "Value": "a"}], "Values": [1.0, 4.0],
         "Counts": [1, 2], "Unit": "Count"}])
    out = cloudwatch.get_metric_statistics(
        Namespace="Custom/Jobs", MetricName="Loss", Dimensions=[{"Name": "Run", "Value": "a"}],
        StartTime=now - dt.timedelta(minutes=5), EndTime=now + dt.timedelta(minutes=5), Period=600,
        Statistics=["SampleCount", "Sum", "Minimum", "Maximum", "Average"], Unit="Count")
    (point,) = out["Datapoints"]
    assert (point["SampleCount"], point["Sum"], point["Minimum"], point["Maximum"]) == (4, 11, 1, 4)
    assert point["Average"] == pytest.approx(11 / 4)
    # A request past 10 KB goes gzip-encoded, as botocore compresses PutMetricData.
    cloudwatch.put_metric_data(Namespace="Custom/Jobs", MetricData=[
        {"MetricName": "Steps", "Dimensions": [{"Name": "Run", "Value": f"run-{i:04d}"}], "Value": float(i)}
        for i in range(1000)])
    listed = cloudwatch.get_paginator("list_metrics").paginate(Namespace="Custom/Jobs", MetricName="Steps")
    assert sum(len(page["Metrics"]) for page in listed) == 1000
    with pytest.raises(ClientError) as caught:
        cloudwatch.put_metric_data(Namespace="AWS/SageMaker", MetricData=[{"MetricName": "Invocations", "Value": 1}])
    assert caught.value.response["Error"]["Code"] == "InvalidParameterValue"
    with pytest.raises(ClientError) as caught:
        cloudwatch.put_metric_data(Namespace="Custom/Jobs", MetricData=[
            {"MetricName": "Loss", "Value": 1.0, "StatisticValues": {"SampleCount": 1, "Sum": 1, "Minimum": 1,
                                                                     "Maximum": 1}}])
    assert caught.value.response["Error"]["Code"] == "InvalidParameterCombination"


def test_the_console_endpoint_page_charts_them(server, endpoint, invoked):
    url = subprocess.run([sys.executable, "-m", "jobforge.cli", "--data-dir", str(server.data_dir), "console-url"],
                         check=True, capture_output=True, text=True, timeout=120).stdout.strip()
    browser = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(http.cookiejar.CookieJar()))
    browser.open(url, timeout=60).read()  # signs in: the session cookie is kept by the jar
    listing = browser.open(f"{server.endpoint}/_console/endpoints", timeout=60).read().decode()
    assert f"/_console/endpoints/{endpoint}?region=" in listing
    page = browser.open(f"{server.endpoint}/_console/endpoints/{endpoint}", timeout=60).read().decode()
    assert "data-endpoint-metrics" in page and "uPlot" in page
    series = json.loads(browser.open(f"{server.endpoint}/_console/api/endpoints/{endpoint}/metrics",
                                     timeout=60).read())["series"]
    by_chart = {s["chart"]: s for s in series if s["variant"] == "AllTraffic"}
    assert sum(by_chart["Invocations per minute"]["values"]) == INVOKED
    assert sum(by_chart["4XX errors per minute"]["values"]) == REFUSED
    assert all(v > 0 for v in by_chart["Model latency (µs, average)"]["values"])
    assert all(t % 60 == 0 for t in by_chart["Invocations per minute"]["timestamps"])
