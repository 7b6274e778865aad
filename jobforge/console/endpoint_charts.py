"""An endpoint's invocation metrics for the console's charts, read through CloudWatch's own operations.

ListMetrics finds the variants that have data (a variant removed by an update keeps its past), then one
GetMetricData reads each chart's series per minute over the last hours, as a client would read them.
"""

from __future__ import annotations

import time

from jobforge.console.calls import Caller

NAMESPACE = "AWS/SageMaker"
HOURS = 3
# (metric, statistic, the chart's title)
CHARTS = (("Invocations", "Sum", "Invocations per minute"),
          ("Invocation4XXErrors", "Sum", "4XX errors per minute"),
          ("Invocation5XXErrors", "Sum", "5XX errors per minute"),
          ("ModelLatency", "Average", "Model latency (µs, average)"),
          ("OverheadLatency", "Average", "Overhead latency (µs, average)"))


def series(caller: Caller, endpoint: str) -> list[dict]:
    """[{chart, variant, timestamps, values}] for every chart and variant with data, oldest point first."""
    listed = caller.call_now("cloudwatch", "ListMetrics", {
        "Namespace": NAMESPACE, "MetricName": "Invocations",
        "Dimensions": [{"Name": "EndpointName", "Value": endpoint}]})
    variants = sorted({d["Value"] for metric in listed.get("Metrics") or [] for d in metric["Dimensions"]
                       if d["Name"] == "VariantName"})
    if not variants:
        return []
    queries, labels = [], {}
    for v, variant in enumerate(variants):
        for c, (metric, stat, title) in enumerate(CHARTS):
            query_id = f"m{c}v{v}"
            labels[query_id] = (title, variant)
            queries.append({"Id": query_id, "MetricStat": {"Period": 60, "Stat": stat, "Metric": {
                "Namespace": NAMESPACE, "MetricName": metric,
                "Dimensions": [{"Name": "EndpointName", "Value": endpoint}, {"Name": "VariantName", "Value": variant}]}}})
    now = time.time()
    data = caller.call_now("cloudwatch", "GetMetricData", {
        "MetricDataQueries": queries, "StartTime": now - HOURS * 3600, "EndTime": now + 60,
        "ScanBy": "TimestampAscending"})
    return [{"chart": labels[r["Id"]][0], "variant": labels[r["Id"]][1],
             "timestamps": [t.timestamp() if hasattr(t, "timestamp") else t for t in r["Timestamps"]],
             "values": r["Values"]} for r in data["MetricDataResults"]]
