"""The endpoint metrics' recorder and the metric store: statistic sets merged per minute, nothing written per
request, and a failed write kept for the next flush."""

from __future__ import annotations

import pytest

from jobforge.core import metric_store
from jobforge.core.endpoint_metrics import NAMESPACE, EndpointMetrics
from jobforge.core.store import open_store

ACCOUNT, REGION = "123456789012", "us-east-1"
DIMENSIONS = (("EndpointName", "e"), ("VariantName", "v"))


@pytest.fixture
def engine(tmp_path):
    engine = open_store(f"sqlite:///{tmp_path / 'store.db'}")
    yield engine
    engine.dispose()


def read(engine, metric: str):
    return metric_store.minutes(engine, ACCOUNT, REGION, NAMESPACE, metric, DIMENSIONS, 0, 10**10, None)


def test_invocations_gather_in_memory_and_merge_into_stored_minutes(engine):
    metrics = EndpointMetrics(engine)
    metrics.record(ACCOUNT, REGION, "e", "v", 2, 125.0, 200, 0.002, 0.001)
    metrics.record(ACCOUNT, REGION, "e", "v", 2, 130.0, 404, 0.004, 0.0005)
    assert read(engine, "Invocations") == []  # nothing written before a flush
    metrics.flush()
    metrics.record(ACCOUNT, REGION, "e", "v", 2, 170.0, None, None, None)  # the model server did not answer
    metrics.flush()
    [(minute, unit, calls)] = read(engine, "Invocations")
    assert (minute, unit, calls.sample_count, calls.total) == (120, "None", 3, 3)
    assert read(engine, "InvocationsPerInstance")[0][2].total == 1.5
    assert read(engine, "Invocation4XXErrors")[0][2].total == 1
    assert read(engine, "Invocation5XXErrors")[0][2].total == 1
    [(_, unit, latency)] = read(engine, "ModelLatency")
    assert (unit, latency.sample_count, latency.minimum, latency.maximum) == ("Microseconds", 2, 2000, 4000)
    assert latency.total == pytest.approx(6000)


def test_a_failed_write_is_kept_for_the_next_flush(engine, monkeypatch):
    metrics = EndpointMetrics(engine)
    metrics.record(ACCOUNT, REGION, "e", "v", 1, 60.0, 200, 0.001, 0.001)

    def broken(*_):
        raise RuntimeError("database away")

    monkeypatch.setattr(metric_store, "add", broken)
    with pytest.raises(RuntimeError):
        metrics.flush()
    metrics.record(ACCOUNT, REGION, "e", "v", 1, 61.0, 200, 0.001, 0.001)
    monkeypatch.undo()
    metrics.flush()
    assert read(engine, "Invocations")[0][2].total == 2


def test_metrics_are_listed_per_account_and_region(engine):
    EndpointMetrics(engine).record(ACCOUNT, REGION, "e", "v", 1, 60.0, 200, 0.001, 0.001)
    recorder = EndpointMetrics(engine)
    recorder.record(ACCOUNT, REGION, "e", "v", 1, 60.0, 200, 0.001, 0.001)
    recorder.flush()
    listed = metric_store.metrics(engine, ACCOUNT, REGION, NAMESPACE, None, 0)
    assert {name for _, name, _ in listed} == {"Invocations", "InvocationsPerInstance", "Invocation4XXErrors",
                                               "Invocation5XXErrors", "ModelLatency", "OverheadLatency"}
    assert all(dimensions == DIMENSIONS for _, _, dimensions in listed)
    assert metric_store.metrics(engine, "210987654321", REGION, None, None, 0) == []
    assert metric_store.metrics(engine, ACCOUNT, "eu-west-1", None, None, 0) == []
