"""The load generator against servers with known answer times, each in a process of its own.

The stalling server holds every answer for 100 ms once a second, so a tenth of the time it answers nothing:
the true 99th percentile of a request's wait lies inside the stall. Closed-loop users stop sending while it
stalls and report a p99 that hides it; open-loop arrivals, timed from when each request was due, show it.
"""

from __future__ import annotations

import os

import pytest

from jobforge.workloads.recommend import ceiling
from jobforge.workloads.recommend.generator_process import GeneratorProcess
from jobforge.workloads.recommend.load_test import Plan, Target
from jobforge.workloads.recommend.reference_server import ServerProcess
from jobforge.workloads.recommend.traffic import Segment, stairs
from timed_servers import argv

CORES = sorted(os.sched_getaffinity(0))
SERVER_CORES, GENERATOR_CORES = (CORES[-1:], CORES[:1]) if len(CORES) > 1 else (None, None)


@pytest.fixture
def payload(tmp_path):
    path = tmp_path / "payload.json"
    path.write_text('{"instances": [[1.0, 2.0]]}')
    return [(path, "application/json")]


def run(port: int, payload, plan: Plan) -> list:
    with GeneratorProcess(Target("127.0.0.1", port), payload, plan, GENERATOR_CORES) as generator:
        return list(generator.windows())


@pytest.fixture(scope="module")
def delay_server():
    with ServerProcess(argv("delay", 20), SERVER_CORES) as server:
        yield server


@pytest.fixture(scope="module")
def stall_server():
    with ServerProcess(argv("stall", 100, 1000), SERVER_CORES) as server:
        yield server


def test_closed_loop_users_wait_for_each_answer(delay_server, payload):
    [window] = run(delay_server.port, payload, Plan([Segment(2.0, 4, 0)]))
    assert window.errors == 0 and window.target_rate is None and window.users == 4
    assert 20.0 <= window.latency_ms["p50"] < 60.0
    # 4 users, each waiting 20 ms for every answer: at most 200 requests a second.
    assert 60 <= window.per_second <= 4 / 0.020 * 1.02
    assert window.completed == pytest.approx(window.per_second * window.seconds, rel=0.01)


def test_open_loop_keeps_its_rate_whatever_the_answers(delay_server, payload):
    [window] = run(delay_server.port, payload, Plan([Segment(2.0, 2, 0)], open_loop_rate_per_user=50.0))
    assert window.target_rate == 100.0 and window.errors == 0
    # One connection would manage 50 a second at 20 ms each; arrivals open more to keep 100 a second.
    assert window.per_second == pytest.approx(100.0, rel=0.15)
    assert window.latency_ms["p50"] >= 20.0


def test_open_loop_p99_shows_the_stalls_closed_loop_hides(stall_server, payload):
    [closed] = run(stall_server.port, payload, Plan([Segment(3.0, 10, 0)]))
    [opened] = run(stall_server.port, payload, Plan([Segment(3.0, 1, 0)], open_loop_rate_per_user=200.0))
    assert closed.errors == 0 and opened.errors == 0
    assert closed.latency_ms["max"] >= 80.0 and opened.latency_ms["max"] >= 80.0  # both saw a stall
    assert closed.latency_ms["p99"] < 50.0  # but closed-loop users sent almost nothing during it
    assert opened.latency_ms["p99"] >= 70.0  # a tenth of the arrivals fell in a stall
    assert opened.latency_ms["p95"] >= 20.0


def test_stairs_add_users_step_by_step(delay_server, payload):
    windows = run(delay_server.port, payload, Plan(stairs({"DurationInSeconds": 3, "NumberOfSteps": 3,
                                                           "UsersPerStep": 2})))
    assert [w.users for w in windows] == [2, 4, 6] and [w.phase for w in windows] == [0, 1, 2]
    assert all(w.seconds == pytest.approx(1.0, abs=0.2) for w in windows)
    assert windows[0].per_second < windows[1].per_second < windows[2].per_second


def test_stop_ends_the_test_after_reporting_the_window_in_progress(delay_server, payload):
    plan = Plan([Segment(30.0, 2, 0), Segment(30.0, 4, 1)])
    with GeneratorProcess(Target("127.0.0.1", delay_server.port), payload, plan, GENERATOR_CORES) as generator:
        calls = iter(range(1000))
        windows = list(generator.windows(should_stop=lambda: next(calls) >= 2))
    assert len(windows) == 1 and windows[0].seconds < 10 and windows[0].completed > 0


def test_failures_are_counted_with_their_reason(payload):
    with ServerProcess() as server:
        port = server.port
    [window] = run(port, payload, Plan([Segment(0.5, 2, 0)]))
    assert window.completed == 0 and window.errors > 0
    assert "cannot connect" in window.error_sample and window.latency_ms == {}


def test_the_ceiling_is_measured_and_bounds_results_near_it():
    measured = ceiling.measure(GENERATOR_CORES, SERVER_CORES, seconds=0.5)
    assert measured.per_second > 1000
    assert measured.shared_core == (GENERATOR_CORES is None)
    assert measured.bounds(measured.per_second * 0.9, 0.3) is not None
    assert measured.bounds(measured.per_second * 0.1, 0.3) is None
    assert "busy" in measured.bounds(10.0, 0.95)
