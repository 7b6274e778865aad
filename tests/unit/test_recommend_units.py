"""Inference recommendation jobs without a server: traffic patterns, the cost formula, the ramp's stop rules, the
test plan."""

from __future__ import annotations

import pytest

from jobforge.workloads.recommend import cost, plan, traffic
from jobforge.workloads.recommend.latency import WindowStats, percentile, summary_ms
from jobforge.workloads.recommend.search import Ramp, StopRules


def test_aws_published_example_cost_to_the_last_bit():
    # ml.c5d.xlarge × 3, MaxInvocations 1113: AWS reports CostPerHour 0.69, CostPerInference 1.0332434612791985e-05.
    per_hour = cost.cost_per_hour(0.23, 3)
    assert per_hour == 0.69
    assert cost.cost_per_inference(per_hour, 1113) == 1.0332434612791985e-05
    assert cost.cost_per_inference(per_hour, 1113) == pytest.approx(per_hour / (1113 * 60), rel=1e-7)
    assert cost.cost_per_inference(per_hour, 0) is None


def test_stairs_steps_share_the_duration():
    segments = traffic.segments({"TrafficType": "STAIRS",
                                 "Stairs": {"DurationInSeconds": 600, "NumberOfSteps": 5, "UsersPerStep": 2}})
    assert [(s.seconds, s.users, s.phase) for s in segments] == [(120, 2, 0), (120, 4, 1), (120, 6, 2),
                                                                 (120, 8, 3), (120, 10, 4)]


def test_phases_spawn_users_a_minute_and_measure_minute_windows():
    segments = traffic.segments({"TrafficType": "PHASES", "Phases": [
        {"InitialNumberOfUsers": 1, "SpawnRate": 2, "DurationInSeconds": 90},
        {"InitialNumberOfUsers": 3, "SpawnRate": 0, "DurationInSeconds": 150}]})
    # Two users a minute: one more every 30 s; a phase without spawning is cut into minute windows.
    assert [(s.seconds, s.users, s.phase) for s in segments] == [
        (30, 1, 0), (30, 2, 0), (30, 3, 0), (60, 3, 1), (60, 3, 1), (30, 3, 1)]
    assert traffic.total_seconds(segments) == 240


def _window(users: int, per_minute: float, p95: float = 10.0, errors: int = 0, completed: int = 100):
    return WindowStats(index=0, phase=0, users=users, target_rate=None, seconds=1.0, completed=completed,
                       errors=errors, per_second=per_minute / 60, latency_ms={"p95": p95, "p99": p95 * 2},
                       generator_cpu=0.1, error_sample="HTTP 500: boom" if errors else None)


def test_the_ramp_stops_above_the_latency_threshold_and_keeps_the_best_window_within():
    ramp = Ramp(StopRules.from_request({"ModelLatencyThresholds": [{"Percentile": "P95",
                                                                     "ValueInMilliseconds": 50}]}))
    assert ramp.add(_window(1, 600, p95=5)) is None
    assert ramp.add(_window(2, 1100, p95=20)) is None
    reason = ramp.add(_window(4, 1500, p95=80))
    assert "P95 model latency 80.0 ms" in reason and "threshold of 50 ms" in reason
    assert ramp.best.per_minute == 1100


def test_the_ramp_stops_once_throughput_flattens_unless_told_to_continue():
    windows = [_window(1, 600), _window(2, 1000), _window(4, 1030), _window(8, 1040)]
    ramp = Ramp(StopRules())
    assert [ramp.add(w) for w in windows[:3]][-1] is None  # 1000 → 1030 is +3% but only one flat step
    assert "flattened" in ramp.add(windows[3])
    patient = Ramp(StopRules.from_request({"FlatInvocations": "Continue"}))
    assert all(patient.add(w) is None for w in windows) and patient.best.per_minute == 1040


def test_the_ramp_stops_at_max_invocations_and_on_errors():
    ramp = Ramp(StopRules.from_request({"MaxInvocations": 1000}))
    assert ramp.add(_window(1, 600)) is None
    assert "reached MaxInvocations (1000)" in ramp.add(_window(2, 1200))
    failing = Ramp(StopRules())
    assert "HTTP 500: boom" in failing.add(_window(1, 600, errors=5))
    assert failing.best is None


def test_percentiles_are_nearest_rank():
    ranked = [float(i) for i in range(1, 101)]
    assert percentile(ranked, 50) == 50.0 and percentile(ranked, 99) == 99.0 and percentile(ranked, 100) == 100.0
    assert summary_ms([0.001, 0.002, 0.003]) == {"p50": 2.0, "p90": 3.0, "p95": 3.0, "p99": 3.0, "max": 3.0,
                                                 "mean": 2.0}


def test_each_configuration_and_environment_point_is_one_test():
    configurations = [
        {"InstanceType": "ml.c5.large", "EnvironmentParameterRanges": {"CategoricalParameterRanges": [
            {"Name": "OMP_NUM_THREADS", "Value": ["1", "2"]}, {"Name": "WORKERS", "Value": ["1", "2", "4"]}]}},
        {"InstanceType": "ml.m5.large"}]
    planned, left_out = plan.tests(configurations, None)
    assert len(planned) == 7 and left_out == 0
    assert planned[1]["EnvironmentParameters"] == [{"Key": "OMP_NUM_THREADS", "ValueType": "String", "Value": "1"},
                                                   {"Key": "WORKERS", "ValueType": "String", "Value": "2"}]
    assert planned[-1] == {"InstanceType": "ml.m5.large", "EnvironmentParameters": []}
    assert plan.tests(configurations, 3)[1] == 4


def test_default_ramp_fits_the_job_duration():
    quick = plan.default_ramp(24, test_count=2, parallel=1)
    assert [s.users for s in quick] == [1, 2, 4, 8, 16, 32] and quick[0].seconds == 2.0
    assert plan.default_ramp(2700, test_count=1, parallel=1)[0].seconds == 60.0


def test_default_candidates_are_the_cheapest_fitting_type_of_each_family():
    from jobforge.core import instance_types
    from jobforge.workloads.recommend.candidates import default_candidates

    catalog = instance_types.catalog()
    small = default_candidates(catalog, 10_000, text_generation=False)
    assert len(small) == 3 and all(catalog[name].price_per_hour is not None for name in small)
    assert [catalog[name].price_per_hour for name in small] == sorted(catalog[name].price_per_hour for name in small)
    assert all(catalog[name].memory_gib >= 9 for name in default_candidates(catalog, 3 * 2**30, False))
    assert catalog[default_candidates(catalog, 10_000, text_generation=True)[0]].gpus > 0


def test_utilisation_not_measured_is_nan_on_the_wire():
    import json

    from jobforge.core import service_models
    from jobforge.server.protocol.wire import to_json

    shape = service_models.service_model("sagemaker").shape_for("RecommendationMetrics")
    wire = to_json(shape, {"CpuUtilization": float("nan"), "MemoryUtilization": 12.5, "MaxInvocations": 60}, "")
    assert json.dumps(wire) == '{"MaxInvocations": 60, "CpuUtilization": "NaN", "MemoryUtilization": 12.5}'
