"""Run a child process for a job: its own process group, output line by line, stop honoured."""

from __future__ import annotations

import os
import queue
import signal
import subprocess
import threading
import time
from collections.abc import Callable

from jobforge.execution.context import JobContext

STOP_GRACE_SECONDS = 10.0
_POLL_SECONDS = 0.2


class Stopped(Exception):
    """The job was asked to stop and the child has been terminated."""


def supervise(
    ctx: JobContext,
    argv: list[str],
    *,
    env: dict,
    cwd,
    on_line: Callable[[str], None],
    periodic: Callable[[], None] | None = None,
    period_seconds: float = 10.0,
) -> int:
    """Run argv to its end and return its exit status (negative: killed by that signal).

    Every output line (stdout and stderr together) goes to ``on_line`` and
    ``periodic`` runs every ``period_seconds``, both on the calling thread. When
    ``ctx.should_stop()`` turns true the whole process group gets SIGTERM, then
    SIGKILL after STOP_GRACE_SECONDS, and ``Stopped`` is raised once it is gone.
    """
    if ctx.should_stop():
        raise Stopped()
    process = subprocess.Popen(
        argv,
        env=env,
        cwd=cwd,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    lines: queue.Queue = queue.Queue()
    threading.Thread(target=_pump, args=(process.stdout, lines), daemon=True).start()
    kill_at = None
    next_check = time.monotonic()
    next_periodic = next_check + period_seconds
    output_closed = False
    try:
        # Until the process has exited and its output is fully read (either may come first).
        while not (output_closed and process.poll() is not None):
            try:
                line = lines.get(timeout=_POLL_SECONDS)
            except queue.Empty:
                line = ""
                if not output_closed and process.poll() is not None:
                    # The main process is gone; its leftovers may still hold the pipe open.
                    _signal_group(process.pid, signal.SIGKILL)
            if line is None:
                output_closed = True
            elif line:
                on_line(line)
            now = time.monotonic()
            if now < next_check:
                continue
            next_check = now + _POLL_SECONDS
            if kill_at is None and ctx.should_stop():
                _signal_group(process.pid, signal.SIGTERM)
                kill_at = now + STOP_GRACE_SECONDS
            elif kill_at is not None and now >= kill_at:
                _signal_group(process.pid, signal.SIGKILL)
            if periodic and now >= next_periodic:
                periodic()
                next_periodic = now + period_seconds
    finally:
        if process.poll() is None:  # an exception on this side: leave nothing behind
            _signal_group(process.pid, signal.SIGKILL)
        status = process.wait()
    if kill_at is not None:
        raise Stopped()
    return status


def _pump(stream, lines: queue.Queue) -> None:
    for raw in stream:
        lines.put(raw.decode("utf-8", "replace").rstrip("\r\n"))
    lines.put(None)


def _signal_group(pgid: int, signum: int) -> None:
    try:
        os.killpg(pgid, signum)
    except ProcessLookupError:
        pass
