"""One supervisor for the server's long-lived child processes.

The inference host is the first; model servers, function workers and agent
runtimes are declared the same way. Each process is declared once by name
(``ProcessSpec``) and then:

- started by its owner (``ensure``), at once or on first use;
- watched by one thread blocked in ``wait()`` (no polling; a process with a
  health check is asked every ``health_interval`` seconds, and killed when it
  fails it);
- restarted after it dies: at once, then after a back-off that doubles
  with each quick death up to a cap, and starts over once the process has
  stayed up for a healthy period;
- stopped on request (``stop``) and at exit (``close``): SIGTERM, then
  SIGKILL once its grace is over;
- or, for a process declared with ``restart=False`` (one of a pool, which its
  owner replaces on demand), forgotten once it exits;
- accounted: ``reserved()`` says what each process that is up, or about to
  restart, holds, in the form of a job's resources (its memory as declared, or
  as resident now where it has grown past that), so that the scheduler can
  leave it out of what jobs are given (``resources.held_by_services``).
"""

from __future__ import annotations

import logging
import os
import subprocess
import threading
import time
from dataclasses import dataclass, field
from typing import Callable

log = logging.getLogger("jobforge.supervisor")


@dataclass(frozen=True)
class Backoff:
    """A process is restarted at once after a death, then after ``first`` seconds, doubling up to ``cap`` while
    it keeps dying quickly; once it has stayed up ``healthy_after`` seconds, its next death counts as the first."""

    first: float = 0.5
    cap: float = 30.0
    healthy_after: float = 60.0

    def after_exit(self, failures: int, uptime: float) -> tuple[int, float]:
        """(quick deaths in a row, seconds to wait before the restart) once a process that had died ``failures``
        times in a row dies again after ``uptime`` seconds."""
        failures = failures + 1 if uptime < self.healthy_after else 1
        return failures, 0.0 if failures == 1 else min(self.cap, self.first * 2 ** (failures - 2))


@dataclass(frozen=True)
class ProcessSpec:
    name: str
    argv: tuple[str, ...]
    env: dict[str, str] | None = None  # None: the server's environment
    reserves: dict = field(default_factory=dict)  # {"cpus": …, "memory_mb": …, "gpus": …}, as a job's resources
    pipes: bool = False  # stdin and stdout as text pipes, for a process spoken to in lines
    # Called with each new process, restarts included, under the supervisor's lock (so it must not call it).
    on_start: Callable[[subprocess.Popen], None] | None = None
    healthy: Callable[[subprocess.Popen], bool] | None = None
    health_interval: float = 10.0
    backoff: Backoff = Backoff()
    stop_grace: float = 5.0  # seconds between SIGTERM and SIGKILL
    # How the process starts (its descriptors, session, working directory); default: argv with env and pipes.
    launch: Callable[[], subprocess.Popen] | None = None
    restart: bool = True  # False: once it exits, the process is forgotten and the name may be added again


def _resident_mb(pid: int) -> int:
    """The resident memory of a process in MiB (0 once it is gone)."""
    try:
        with open(f"/proc/{pid}/statm") as statm:
            pages = int(statm.read().split()[1])
    except (OSError, ValueError, IndexError):
        return 0
    return pages * os.sysconf("SC_PAGE_SIZE") // (1024 * 1024)


class Unavailable(Exception):
    """The process is not running and cannot be started now (it waits out its back-off, or the server stops)."""


class _Supervised:
    def __init__(self, spec: ProcessSpec):
        self.spec = spec
        self.process: subprocess.Popen | None = None
        self.started_at = 0.0
        self.failures = 0  # quick deaths in a row
        self.restart_at: float | None = None  # while waiting out a back-off
        self.stopped = threading.Event()  # set when the process is no longer wanted; ends its watcher
        self.watcher: threading.Thread | None = None


class Supervisor:
    def __init__(self):
        self._lock = threading.Lock()
        self._entries: dict[str, _Supervised] = {}
        self._closed = False

    def add(self, spec: ProcessSpec) -> None:
        """Declare a process; it starts on the first ``ensure``."""
        with self._lock:
            if spec.name in self._entries:
                raise ValueError(f"a process named {spec.name} is already supervised")
            self._entries[spec.name] = _Supervised(spec)

    def ensure(self, name: str) -> subprocess.Popen:
        """The running process, started now when it is not running and not waiting out a back-off: called at
        once for a process that should always run, on first use for one that is only needed by some requests."""
        with self._lock:
            entry = self._entries[name]
            if entry.process is not None and entry.process.poll() is None:
                return entry.process
            if self._closed:
                raise Unavailable(f"{name}: the server is stopping")
            if entry.restart_at is not None:
                raise Unavailable(f"{name} exited and restarts in {max(0.0, entry.restart_at - time.monotonic()):.1f} s")
            if entry.watcher is not None:  # exited a moment ago; its watcher has not seen it yet
                raise Unavailable(f"{name} exited and is about to restart")
            entry.stopped.clear()
            try:
                self._spawn(entry)
            except OSError as err:
                raise Unavailable(f"{name} could not start: {err}") from None
            entry.watcher = threading.Thread(target=self._watch, args=(entry,), name=f"supervise-{name}", daemon=True)
            entry.watcher.start()
            return entry.process

    def process(self, name: str) -> subprocess.Popen | None:
        """The process now running under name, if any."""
        with self._lock:
            entry = self._entries.get(name)
            process = entry.process if entry else None
        return process if process is not None and process.poll() is None else None

    def reserved(self) -> dict[str, dict]:
        """Name → resources held, for every process that is up or about to restart."""
        with self._lock:
            held = {name: (dict(entry.spec.reserves), entry.process) for name, entry in self._entries.items()
                    if entry.watcher is not None and not entry.stopped.is_set()}
        for resources, process in held.values():
            resident = _resident_mb(process.pid) if process is not None and process.poll() is None else 0
            if resident > resources.get("memory_mb", 0):
                resources["memory_mb"] = resident
        return {name: resources for name, (resources, _) in held.items()}

    def stop(self, name: str, deadline: float | None = None) -> None:
        """Stop a process for good and forget it (the name may be added again)."""
        with self._lock:
            entry = self._entries.pop(name, None)
        if entry is not None:
            self._stop(entry, deadline)

    def close(self, deadline: float | None = None) -> None:
        """Stop every process, the last added first, none waited for past deadline (time.monotonic())."""
        with self._lock:
            self._closed = True
            entries = list(self._entries.values())[::-1]
        for entry in entries:
            self._stop(entry, deadline)

    # -- inside ------------------------------------------------------------
    def _spawn(self, entry: _Supervised) -> None:
        """Start the process (caller holds the lock)."""
        spec = entry.spec
        if spec.launch is not None:
            entry.process = spec.launch()
        else:
            pipes = dict(stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, bufsize=1) if spec.pipes else {}
            entry.process = subprocess.Popen(list(spec.argv), env=spec.env, **pipes)
        entry.started_at = time.monotonic()
        entry.restart_at = None
        if spec.on_start is not None:
            spec.on_start(entry.process)

    def _watch(self, entry: _Supervised) -> None:
        """Wait for the process to end and restart it, for as long as it is wanted."""
        spec = entry.spec
        while True:
            process = entry.process
            code = self._wait(spec, process) if process is not None else None
            with self._lock:
                if entry.stopped.is_set():
                    return
                if not spec.restart:
                    entry.stopped.set()
                    if self._entries.get(spec.name) is entry:
                        del self._entries[spec.name]
                    return
                uptime = time.monotonic() - entry.started_at if process is not None else 0.0
                entry.failures, delay = spec.backoff.after_exit(entry.failures, uptime)
                entry.restart_at = time.monotonic() + delay
            log.warning("%s exited (code %s); restarting it in %.1f s", spec.name, code, delay)
            if entry.stopped.wait(delay):
                return
            with self._lock:
                if entry.stopped.is_set():
                    return
                try:
                    self._spawn(entry)
                except OSError as err:
                    log.error("%s could not restart: %s", spec.name, err)
                    entry.process = None

    @staticmethod
    def _wait(spec: ProcessSpec, process: subprocess.Popen) -> int:
        if spec.healthy is None:
            return process.wait()
        while True:
            try:
                return process.wait(timeout=spec.health_interval)
            except subprocess.TimeoutExpired:
                pass
            if not spec.healthy(process):
                log.warning("%s failed its health check; killing it", spec.name)
                process.kill()

    def _stop(self, entry: _Supervised, deadline: float | None) -> None:
        with self._lock:
            entry.stopped.set()
            process = entry.process
        if process is None or process.poll() is not None:
            return
        grace = entry.spec.stop_grace
        if deadline is not None:
            grace = max(0.0, min(grace, deadline - time.monotonic()))
        process.terminate()
        try:
            process.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
