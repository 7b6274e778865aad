"""The supervisor with tiny real child processes: start, restart after a crash, back-off, health, stop."""

from __future__ import annotations

import signal
import sys
import threading
import time

import pytest

from jobforge.execution.supervisor import Backoff, ProcessSpec, Supervisor, Unavailable

SLEEPER = (sys.executable, "-c", "import time; time.sleep(60)")
QUICK = Backoff(first=0.05, cap=0.2, healthy_after=60)


@pytest.fixture
def supervisor():
    found = Supervisor()
    yield found
    found.close(time.monotonic() + 2)


def _wait_for(predicate, timeout=5.0):
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.01)


def test_backoff_doubles_up_to_its_cap_and_starts_over_after_a_healthy_period():
    backoff = Backoff(first=1, cap=5, healthy_after=10)
    failures, delays = 0, []
    for _ in range(5):
        failures, delay = backoff.after_exit(failures, uptime=0.5)
        delays.append(delay)
    assert delays == [0, 1, 2, 4, 5]
    assert backoff.after_exit(failures, uptime=10) == (1, 0)


def test_a_process_starts_on_first_use_and_is_accounted_while_up(supervisor):
    supervisor.add(ProcessSpec("sleeper", SLEEPER, reserves={"cpus": 2, "memory_mb": 512, "gpus": 0}))
    assert supervisor.process("sleeper") is None
    assert supervisor.reserved() == {}
    process = supervisor.ensure("sleeper")
    assert supervisor.ensure("sleeper") is process  # the same process while it runs
    assert supervisor.reserved() == {"sleeper": {"cpus": 2, "memory_mb": 512, "gpus": 0}}
    with pytest.raises(ValueError):
        supervisor.add(ProcessSpec("sleeper", SLEEPER))


def test_a_process_is_accounted_at_its_resident_memory_once_it_outgrows_its_reservation(supervisor):
    supervisor.add(ProcessSpec("grower", (sys.executable, "-c", "x = bytearray(64 << 20); import time; time.sleep(60)"),
                               reserves={"cpus": 1, "memory_mb": 1}))
    supervisor.ensure("grower")
    _wait_for(lambda: supervisor.reserved()["grower"]["memory_mb"] >= 64)
    assert supervisor.reserved()["grower"]["cpus"] == 1


def _kill(process) -> None:
    process.send_signal(signal.SIGKILL)
    process.wait()


def test_a_crashed_process_is_restarted_at_once_then_after_a_backoff(supervisor):
    started = []
    supervisor.add(ProcessSpec("sleeper", SLEEPER, backoff=Backoff(first=0.5, cap=1, healthy_after=60),
                               on_start=started.append))
    _kill(supervisor.ensure("sleeper"))
    _wait_for(lambda: len(started) == 2)  # the first death: restarted at once
    _kill(started[1])
    _wait_for(lambda: supervisor.process("sleeper") is None)
    with pytest.raises(Unavailable):  # the second quick death: the back-off is waited out, whoever asks
        supervisor.ensure("sleeper")
    assert "sleeper" in supervisor.reserved()  # still held while it waits to restart
    _wait_for(lambda: supervisor.process("sleeper") is not None)
    assert supervisor.process("sleeper") is started[2]


def test_a_process_that_keeps_dying_is_restarted_ever_more_slowly(supervisor):
    starts = []
    supervisor.add(ProcessSpec("crasher", (sys.executable, "-c", "raise SystemExit(3)"), backoff=QUICK,
                               on_start=lambda _: starts.append(time.monotonic())))
    supervisor.ensure("crasher")
    _wait_for(lambda: len(starts) >= 5)
    gaps = [later - earlier for earlier, later in zip(starts, starts[1:])]
    assert gaps[1] >= 0.05 and gaps[2] >= 0.1 and gaps[3] >= 0.2


def test_a_process_failing_its_health_check_is_killed_and_restarted(supervisor):
    healthy = threading.Event()
    supervisor.add(ProcessSpec("sick", SLEEPER, healthy=lambda process: healthy.is_set(), health_interval=0.05,
                               backoff=QUICK))
    first = supervisor.ensure("sick")
    assert first.wait(timeout=5) == -signal.SIGKILL
    healthy.set()
    _wait_for(lambda: supervisor.process("sick") is not None)
    assert supervisor.process("sick").pid != first.pid


def test_stop_ends_the_process_for_good(supervisor):
    supervisor.add(ProcessSpec("sleeper", SLEEPER, backoff=QUICK))
    process = supervisor.ensure("sleeper")
    supervisor.stop("sleeper")
    assert process.poll() == -signal.SIGTERM
    time.sleep(0.15)  # longer than the back-off: nothing restarts it
    assert supervisor.reserved() == {}
    with pytest.raises(KeyError):
        supervisor.ensure("sleeper")


def test_a_process_ignoring_sigterm_is_killed_after_its_grace(supervisor):
    stubborn = (sys.executable, "-c", "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
                                      "print('ready', flush=True); time.sleep(60)")
    supervisor.add(ProcessSpec("stubborn", stubborn, pipes=True, stop_grace=0.2))
    process = supervisor.ensure("stubborn")
    assert process.stdout.readline() == "ready\n"
    began = time.monotonic()
    supervisor.stop("stubborn")
    assert process.poll() == -signal.SIGKILL
    assert 0.2 <= time.monotonic() - began < 2


def test_close_stops_every_process_and_refuses_new_starts(supervisor):
    supervisor.add(ProcessSpec("first", SLEEPER))
    supervisor.add(ProcessSpec("second", SLEEPER))
    processes = [supervisor.ensure("first"), supervisor.ensure("second")]
    supervisor.close(time.monotonic() + 2)
    assert all(process.poll() is not None for process in processes)
    assert supervisor.reserved() == {}
    with pytest.raises(Unavailable):
        supervisor.ensure("first")
