"""The inference recommendation job: a load test per planned test, then the recommendations ranked by cost.

spec (written by jobforge.api.sagemaker_recommendations): ``request`` (as sent), ``model``, ``tests`` (each
``InstanceType``, ``EnvironmentParameters``, ``PricePerHour``, ``SkipReason``), ``parallel``, ``job_seconds``,
``segments`` (the traffic: the caller's pattern, or a Default job's ramp), ``payload``, ``endpoint`` (an
existing endpoint to benchmark, or None) and ``open_loop_rate_per_user``.

Each test asks the server to deploy the model on its instance type (``deploy``: the endpoint host, through the
server's internal API), drives the model server's socket with the load generator in its own process, judges
each window (``search``), reads the instances' CPU time and memory with each window (``usage``), and removes
the deployment. Every metric comes from what was measured: ModelLatency in milliseconds at the best window,
CpuUtilization and MemoryUtilization in percent of the instance type's vCPUs and memory at that window,
ModelSetupTime in milliseconds from the deploy request to the model server answering, and the cost by AWS's
formula from the catalog's price (left out where the catalog has none). A utilisation the host could not read
is kept as None, which Describe shows as NaN, as AWS documents.
"""

from __future__ import annotations

import os
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from jobforge.execution.context import JobContext, JobStopped, WorkloadError
from jobforge.workloads.recommend import ceiling, cost, payloads
from jobforge.workloads.recommend.generator_process import GeneratorProcess
from jobforge.workloads.recommend.latency import WindowStats
from jobforge.workloads.recommend.load_test import Plan, Target
from jobforge.workloads.recommend.search import Ramp, StopRules
from jobforge.workloads.recommend.traffic import Segment

MAX_RECOMMENDATIONS = 10
VARIANT = "AllTraffic"


@dataclass
class Outcome:
    index: int
    metrics: dict
    endpoint: dict  # EndpointOutputConfiguration
    model: dict  # ModelConfiguration
    started: float
    ended: float


class Board:
    """The steps' statuses and measurements, reported whole with each change (the job's result merges keys)."""

    def __init__(self, ctx: JobContext):
        self._ctx, self._steps, self._lock = ctx, {}, threading.Lock()

    def set(self, index: int, status: str, benchmark: dict) -> None:
        with self._lock:
            self._steps[str(index)] = {"Status": status, "InferenceBenchmark": benchmark}
            self._ctx.result({"steps": dict(self._steps)})


def run(ctx: JobContext, spec: dict) -> None:
    rules = StopRules.from_request(spec["request"].get("StoppingConditions"))
    deadline = time.monotonic() + spec["job_seconds"]
    segments = [Segment.from_json(s) for s in spec["segments"]]
    ctx.status("Preparing", "fetching the sample payloads")
    bodies = payloads.fetch(ctx, spec["payload"], ctx.work_dir / "payloads")
    ctx.event(f"{len(bodies)} payload(s) from {spec['payload']['url']}")
    cores = sorted(os.sched_getaffinity(0))
    ctx.status("MeasuringLoadGenerator")
    limit = ceiling.measure(cores[-1:] if len(cores) > 1 else None, cores[:-1] or None)
    ctx.event(limit.describe())
    ctx.metric("LoadGeneratorCeilingPerSecond", limit.per_second)
    if spec["open_loop_rate_per_user"]:
        ctx.event(f"jobforge's open-loop mode (an addition of jobforge, not AWS's behaviour): each user stands for "
                  f"{spec['open_loop_rate_per_user']:g} requests a second sent on schedule, latency timed from "
                  "when each was due")
    if spec["left_out"]:
        ctx.event(f"MaxNumberOfTests leaves {spec['left_out']} test(s) out")
    test = Tester(ctx, spec, bodies, segments, rules, limit, deadline, cores)
    runnable = []
    for index, planned in enumerate(spec["tests"]):
        if planned["SkipReason"]:
            ctx.event(f"test {index} ({planned['InstanceType']}) skipped: {planned['SkipReason']}")
        else:
            runnable.append(index)
    ctx.status("LoadTesting", f"{len(runnable)} test(s), {spec['parallel']} at a time")
    with ThreadPoolExecutor(max(1, spec["parallel"])) as pool:
        outcomes = [o for o in pool.map(test.run, runnable) if o is not None]
    performances = [test.benchmark_endpoint(spec["endpoint"])] if spec["endpoint"] else []
    recommendations = _rank(ctx, outcomes)
    ctx.result({"recommendations": recommendations,
                "endpoint_performances": [p for p in performances if p is not None]})
    if ctx.should_stop():
        raise JobStopped()
    if not recommendations and not any(performances):
        raise WorkloadError("No test produced a recommendation: " + (
            "; ".join(test.failures) or "every instance type was skipped (see the job's steps)"))


class Tester:
    def __init__(self, ctx: JobContext, spec: dict, bodies, segments, rules: StopRules, limit: ceiling.Ceiling,
                 deadline: float, cores: list[int]):
        self.ctx, self.spec, self.bodies, self.segments, self.rules = ctx, spec, bodies, segments, rules
        self.limit, self.deadline, self.cores = limit, deadline, cores
        self.board = Board(ctx)
        self.failures: list[str] = []

    def _ended(self) -> bool:
        return self.ctx.should_stop() or time.monotonic() >= self.deadline

    def run(self, index: int) -> Outcome | None:
        planned = self.spec["tests"][index]
        endpoint = {"EndpointName": f"{self.ctx.job_name}-test-{index}"[:63], "VariantName": VARIANT,
                    "InstanceType": planned["InstanceType"], "InitialInstanceCount": 1}
        model = {"EnvironmentParameters": planned["EnvironmentParameters"]} if planned["EnvironmentParameters"] \
            else {}
        base = {"EndpointConfiguration": endpoint, "ModelConfiguration": model}
        if self._ended():
            why = "the job was stopped" if self.ctx.should_stop() else \
                f"JobDurationInSeconds ({self.spec['job_seconds']} s) ran out"
            self.board.set(index, "STOPPED" if self.ctx.should_stop() else "FAILED",
                           {**base, "FailureReason": f"Not run: {why}."})
            return None
        started = time.time()
        self.board.set(index, "IN_PROGRESS", {**base, "InvocationStartTime": started})
        label = f"test {index} ({planned['InstanceType']}{_environment(planned)})"
        self.ctx.event(f"{label}: deploying")
        deployed = self.ctx.ask_server("deploy", {"test": index})
        if "failed" in deployed:
            return self._failed(index, base, label, started, deployed["failed"])
        try:
            measured, reason = self._load(label, deployed)
        finally:
            self.ctx.ask_server("undeploy", {"deployment": deployed["deployment"]})
        ended = time.time()
        base.update(InvocationStartTime=started, InvocationEndTime=ended)
        if self.ctx.should_stop():
            self.board.set(index, "STOPPED", {**base, "FailureReason": "Stopped with the job."})
            return None
        best, usage = measured
        if best is None:
            return self._failed(index, base, label, started, f"no window met the stopping conditions: {reason}")
        metrics = self._metrics(planned, best, usage, deployed["setup_seconds"])
        self.board.set(index, "COMPLETED", {**base, "Metrics": metrics, "EndpointMetrics": {
            "MaxInvocations": metrics["MaxInvocations"], "ModelLatency": metrics["ModelLatency"]}})
        self.ctx.event(f"{label}: MaxInvocations {metrics['MaxInvocations']}/min, ModelLatency "
                       f"{metrics['ModelLatency']} ms ({self.rules.percentile}), CPU "
                       f"{_percent(metrics['CpuUtilization'])}, memory {_percent(metrics['MemoryUtilization'])}"
                       + (f", ${metrics['CostPerInference']:.3g} per inference" if "CostPerInference" in metrics
                          else ", no price in the catalog"))
        bounded = self.limit.bounds(best.per_second, best.generator_cpu)
        if bounded:
            self.ctx.event(f"{label}: this result is bounded by the load generator, not only by the endpoint: "
                           f"{bounded}. MaxInvocations is a lower bound of what the endpoint serves.")
        return Outcome(index, metrics, endpoint, model, started, ended)

    def _failed(self, index, base, label, started, reason) -> None:
        self.failures.append(f"{label}: {reason}")
        self.ctx.event(f"{label} failed: {reason}")
        self.board.set(index, "FAILED", {**base, "FailureReason": reason[:1024], "InvocationStartTime": started,
                                         "InvocationEndTime": time.time()})
        return None

    def _load(self, label: str, deployed: dict) -> tuple[tuple[WindowStats | None, dict | None], str | None]:
        """Drive the deployment; (the best window and the usage during it), and why the ramp stopped."""
        busy = set(deployed["cores"])
        free = [core for core in self.cores if core not in busy]
        if not free:
            self.ctx.event(f"{label}: the load generator shares the endpoint's cores (this host has "
                           f"{len(self.cores)}; the instance is pinned to {len(busy)})")
        plan = Plan(self.segments, self.spec["open_loop_rate_per_user"])
        ramp, usage_at, reason = Ramp(self.rules), {}, None
        before, since = self._usage(deployed), time.monotonic()
        with GeneratorProcess(Target(unix_path=deployed["sockets"][0]), self.bodies, plan, free or None) as load:
            for window in load.windows(should_stop=self._ended):
                now, at = self._usage(deployed), time.monotonic()
                usage_at[window.index] = _utilisation(before, now, at - since, deployed)
                before, since = now, at
                self.ctx.event(f"{label}: {window.users} users: {window.per_minute:.0f} invocations/min, "
                               f"p50 {window.latency_ms.get('p50', float('nan')):.2f} ms, "
                               f"p99 {window.latency_ms.get('p99', float('nan')):.2f} ms, {window.errors} errors, "
                               f"generator CPU {window.generator_cpu:.0%}")
                if reason is None:
                    reason = ramp.add(window)
                    if reason is not None:
                        self.ctx.event(f"{label}: load test stops: {reason}")
                        load.stop()
        best = ramp.best
        return (best, usage_at.get(best.index) if best else None), reason

    def _usage(self, deployed: dict) -> list:
        return self.ctx.ask_server("usage", {"deployment": deployed["deployment"]})["instances"]

    def _metrics(self, planned: dict, best: WindowStats, usage: dict | None, setup_seconds: float) -> dict:
        max_invocations = int(round(best.per_minute))
        usage = usage or {}
        metrics = {"MaxInvocations": max_invocations,
                   "ModelLatency": int(round(best.latency_ms[self.rules.percentile.lower()])),
                   "CpuUtilization": usage.get("cpu"), "MemoryUtilization": usage.get("memory"),
                   "ModelSetupTime": int(round(setup_seconds * 1000))}
        if planned["PricePerHour"] is not None:
            per_hour = cost.cost_per_hour(planned["PricePerHour"], 1)
            per_inference = cost.cost_per_inference(per_hour, max_invocations)
            metrics["CostPerHour"] = per_hour
            if per_inference is not None:
                metrics["CostPerInference"] = per_inference
        return metrics

    def benchmark_endpoint(self, name: str) -> dict | None:
        """EndpointPerformances for the existing endpoint the job names: its MaxInvocations and ModelLatency."""
        if self._ended():
            return None
        label = f"endpoint {name}"
        attached = self.ctx.ask_server("attach", {})
        if "failed" in attached:
            self.failures.append(f"{label}: {attached['failed']}")
            self.ctx.event(f"{label}: {attached['failed']}")
            return None
        try:
            (best, _), reason = self._load(label, attached)
        finally:
            self.ctx.ask_server("undeploy", {"deployment": attached["deployment"]})
        if best is None:
            self.failures.append(f"{label}: no window met the stopping conditions: {reason}")
            return None
        return {"Metrics": {"MaxInvocations": int(round(best.per_minute)),
                            "ModelLatency": int(round(best.latency_ms[self.rules.percentile.lower()]))},
                "EndpointInfo": {"EndpointName": name}}


def _percent(value: float | None) -> str:
    return "not measured" if value is None else f"{value:.1f}%"


def _environment(planned: dict) -> str:
    pairs = [f"{p['Key']}={p['Value']}" for p in planned["EnvironmentParameters"]]
    return f", {', '.join(pairs)}" if pairs else ""


def _utilisation(before: list, after: list, seconds: float, deployed: dict) -> dict:
    """CPU in percent of the instances' vCPUs over the window, memory in percent of theirs at its end."""
    if seconds <= 0 or any(u is None for u in before + after):
        return {}
    cpu = sum(a["cpu_seconds"] - b["cpu_seconds"] for a, b in zip(after, before))
    memory = sum(a["memory_bytes"] for a in after)
    return {"cpu": round(100.0 * cpu / (seconds * deployed["vcpus"]), 2),
            "memory": round(100.0 * memory / deployed["memory_bytes"], 2)}


def _rank(ctx: JobContext, outcomes: list[Outcome]) -> list[dict]:
    """Cheapest per inference first; those without a price after, by throughput."""
    ordered = sorted(outcomes, key=lambda o: (o.metrics.get("CostPerInference") is None,
                                              o.metrics.get("CostPerInference") or 0.0, -o.metrics["MaxInvocations"]))
    return [{"RecommendationId": f"{ctx.job_name}/{uuid.uuid4().hex[:8]}", "Metrics": o.metrics,
             "EndpointConfiguration": o.endpoint, "ModelConfiguration": o.model,
             "InvocationStartTime": o.started, "InvocationEndTime": o.ended}
            for o in ordered[:MAX_RECOMMENDATIONS]]
