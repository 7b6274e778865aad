"""One container jobforge runs: started attached through its engine, what it prints read line by line, its
address and memory cgroup once it runs, and its end.

What the container writes reaches the owner's ``on_output`` one line at a time, as a confined process's
output does. Podman hands the container the server's pipe itself, so a marker the server writes into that
pipe (``mark``) comes after everything the container wrote before it; through Docker's daemon the output
can lag, and a marker waits until the output has been quiet a moment.
"""

from __future__ import annotations

import collections
import os
import subprocess
import threading
import time
from pathlib import Path
from typing import Callable

from jobforge.execution.container_engine import ContainerEngine, ContainerSpec
from jobforge.execution.container_gate import Gate
from jobforge.execution.process_host import _read_lines

STATE_POLL = 0.05
QUIET_SECONDS = 0.05  # through Docker: the output is taken as complete once quiet this long
QUIET_LIMIT = 1.0
STOP_SECONDS = 10.0
# The engine's exit status when the engine itself failed, or the command could not run or was not found.
ENGINE_FAILED, NOT_RUNNABLE, NOT_FOUND = 125, 126, 127


class RunningContainer:
    def __init__(self, engine: ContainerEngine, spec: ContainerSpec, gate: Gate,
                 on_output: Callable[[bytes | None], None], on_exit: Callable[[], None] | None = None,
                 attachments: tuple = ()):
        self.engine = engine
        self.spec = spec
        self.gate = gate
        self.on_output = on_output
        self.on_exit = on_exit
        self.attachments = attachments  # what serves the container (closed with it)
        self.process: subprocess.Popen | None = None
        self.address: str | None = None
        self.pid: int | None = None
        self.last_lines: collections.deque = collections.deque(maxlen=5)
        self._memory_files: list[Path] = []
        self._marker_fd: int | None = None
        self._last_output = time.monotonic()
        self._reader: threading.Thread | None = None
        self._stopped = False

    def start(self, timeout: float) -> None:
        """Start the container and learn its address; returns early when it has already exited (see
        ``exit_code``). OSError when the engine cannot start it or does not say where it runs in time."""
        read_fd, write_fd = os.pipe()
        try:
            self._marker_fd = os.dup(write_fd)
            self.process = self.engine.start(self.spec, write_fd)
        except BaseException:
            os.close(read_fd)
            raise
        finally:
            os.close(write_fd)
        self._reader = threading.Thread(target=_read_lines, args=(read_fd, self._line), daemon=True,
                                        name=f"output-{self.spec.name}")
        self._reader.start()
        threading.Thread(target=self._watch, name=f"watch-{self.spec.name}", daemon=True).start()
        try:
            self._wait_running(timeout)
        finally:
            self.engine.drop_env(self.spec.name)

    def _wait_running(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while self.process.poll() is None:
            state = self.engine.state(self.spec.name)
            if state is not None and state[1]:
                self.pid, self.address = state
                self._memory_files = memory_files(self.pid)
                self.gate.open_to(self.address)
                return
            if time.monotonic() > deadline:
                raise OSError(f"{self.engine.name} did not report where container {self.spec.name} runs within "
                              f"{timeout:.0f} s")
            time.sleep(STATE_POLL)
        if self.process.returncode == ENGINE_FAILED:
            said = " ".join(line.decode(errors="replace") for line in self.last_lines).strip()
            raise OSError(f"{self.engine.name} could not start the container: {said or 'exit status 125'}")

    def _line(self, line: bytes | None) -> None:
        self._last_output = time.monotonic()
        if line is not None and not line.startswith(b"\0"):  # not a marker
            self.last_lines.append(line)
        self.on_output(line)

    def _watch(self) -> None:
        self.process.wait()
        if self.on_exit is not None:
            self.on_exit()

    def exit_code(self) -> int | None:
        """None while it runs; else its exit status, a signal's as the negative signal number."""
        if self.process is None:
            return None
        code = self.process.poll()
        if code is None:
            return None
        return -(code - 128) if 128 < code < 160 else code

    def last_line(self) -> str:
        """The last line the container (or its engine) printed."""
        return self.last_lines[-1].decode(errors="replace") if self.last_lines else ""

    def wait(self, timeout: float | None = None) -> int | None:
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            return None
        return self.exit_code()

    def peak_mb(self) -> int | None:
        """The container's peak memory as its cgroup measured it, while the cgroup is there."""
        for path in self._memory_files:
            try:
                return -(-int(path.read_text()) // (1024 * 1024))
            except (OSError, ValueError):
                continue
        return None

    def mark(self, marker: bytes) -> None:
        """Write a line into the container's output after all it wrote so far."""
        if self._marker_fd is None:
            return
        if self.engine.name != "podman":
            quiet_by = time.monotonic() + QUIET_LIMIT
            while time.monotonic() - self._last_output < QUIET_SECONDS and time.monotonic() < quiet_by:
                time.sleep(QUIET_SECONDS / 2)
        try:
            os.write(self._marker_fd, marker)
        except OSError:
            pass

    def stop(self) -> None:
        """Kill and remove the container; close what served it."""
        if self._stopped:
            return
        self._stopped = True
        self.gate.close()
        for attachment in self.attachments:
            attachment.close()
        if self.process is not None:
            if self.process.poll() is None:
                try:
                    self.engine.remove(self.spec.name)
                except OSError:
                    pass
            try:
                self.process.wait(STOP_SECONDS)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        if self._marker_fd is not None:
            os.close(self._marker_fd)
            self._marker_fd = None
        if self._reader is not None:
            self._reader.join(timeout=5)


def memory_files(pid: int) -> list[Path]:
    """Where the kernel keeps the peak memory of the process's cgroup (cgroup v1, then v2)."""
    try:
        lines = Path(f"/proc/{pid}/cgroup").read_text().splitlines()
    except OSError:
        return []
    found = []
    for line in lines:
        _, controllers, path = line.split(":", 2)
        if "memory" in controllers.split(","):
            found.insert(0, Path(f"/sys/fs/cgroup/memory{path}/memory.max_usage_in_bytes"))
        elif controllers == "":
            found.append(Path(f"/sys/fs/cgroup{path}/memory.peak"))
    return found
