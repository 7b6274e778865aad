"""The load generator in a process of its own, pinned to cores apart from the endpoint's where the host has them.

The parent writes one JSON line on the child's stdin (the target, the payload files, the plan and the cores),
then reads one JSON line per window from its stdout, and a last ``{"done": true}``. A ``stop`` line on stdin, or
stdin closing (the parent gone), ends the test after the window in progress is reported.

    python -m jobforge.workloads.recommend.generator_process
"""

from __future__ import annotations

import asyncio
import json
import os
import queue
import subprocess
import sys
import threading
from dataclasses import asdict
from pathlib import Path
from typing import Callable, Iterator

from jobforge.workloads.recommend.latency import WindowStats
from jobforge.workloads.recommend.load_test import LoadTest, Payload, Plan, Target
from jobforge.workloads.recommend.traffic import Segment

POLL_SECONDS = 0.5


class GeneratorFailed(Exception):
    """The generator process ended without finishing its plan."""


def event_loop_policy() -> str:
    """Install uvloop where it is present; the name of the event loop in use."""
    try:
        import uvloop
    except ImportError:
        return "asyncio"
    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    return "uvloop"


def pin(cores: list[int] | None) -> None:
    if cores and hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, cores)


class GeneratorProcess:
    """A running generator; iterate ``windows()`` for its measurements, ``stop()`` to end it early."""

    def __init__(self, target: Target, payloads: list[tuple[Path, str]], plan: Plan, cores: list[int] | None = None):
        spec = {"target": asdict(target), "payloads": [{"path": str(p), "content_type": t} for p, t in payloads],
                "plan": {"segments": [s.to_json() for s in plan.segments],
                         "open_loop_rate_per_user": plan.open_loop_rate_per_user,
                         "max_connections": plan.max_connections, "request_timeout": plan.request_timeout},
                "cores": cores}
        self._process = subprocess.Popen([sys.executable, "-m", __name__], stdin=subprocess.PIPE,
                                         stdout=subprocess.PIPE, text=True)
        self._process.stdin.write(json.dumps(spec) + "\n")
        self._process.stdin.flush()
        self._messages: queue.Queue = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        for line in self._process.stdout:
            self._messages.put(json.loads(line))
        self._messages.put(None)

    def windows(self, should_stop: Callable[[], bool] = lambda: False) -> Iterator[WindowStats]:
        """Each window's measurements as it closes; asks the generator to stop once should_stop() is true."""
        while True:
            try:
                message = self._messages.get(timeout=POLL_SECONDS)
            except queue.Empty:
                if should_stop():
                    self.stop()
                continue
            if message is None:
                self._process.wait()
                raise GeneratorFailed(f"the load generator exited with status {self._process.returncode}")
            if "error" in message:
                raise GeneratorFailed(message["error"])
            if message.get("done"):
                return
            yield WindowStats.from_json(message["window"])

    def stop(self) -> None:
        try:
            self._process.stdin.write("stop\n")
            self._process.stdin.flush()
        except (BrokenPipeError, ValueError):
            pass

    def close(self) -> None:
        self.stop()
        try:
            self._process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait()

    def __enter__(self) -> "GeneratorProcess":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


# -- the child
def _emit(message: dict) -> None:
    sys.stdout.write(json.dumps(message) + "\n")
    sys.stdout.flush()


def _watch_stdin(loop: asyncio.AbstractEventLoop, stop: asyncio.Event) -> None:
    for line in sys.stdin:
        if line.strip() == "stop":
            break
    try:
        loop.call_soon_threadsafe(stop.set)
    except RuntimeError:
        pass  # the test had ended and its loop closed


async def _run(spec: dict) -> None:
    stop = asyncio.Event()
    threading.Thread(target=_watch_stdin, args=(asyncio.get_running_loop(), stop), daemon=True).start()
    plan = spec["plan"]
    test = LoadTest(
        Target(**spec["target"]),
        [Payload(Path(p["path"]).read_bytes(), p["content_type"]) for p in spec["payloads"]],
        Plan([Segment.from_json(s) for s in plan["segments"]], plan["open_loop_rate_per_user"],
             plan["max_connections"], plan["request_timeout"]),
        report=lambda window: _emit({"window": window.to_json()}))
    await test.run(stop)


def main() -> None:
    spec = json.loads(sys.stdin.readline())
    try:
        pin(spec.get("cores"))
        event_loop_policy()
        asyncio.run(_run(spec))
    except Exception as err:  # the parent reports it as the generator's failure
        _emit({"error": f"{type(err).__name__}: {err}"})
        raise SystemExit(1) from None
    _emit({"done": True})


if __name__ == "__main__":
    main()
