"""One job attempt's worker on a Ray node, as the node agent (``jobforge.execution.ray_node_agent``) runs it.

The worker is the same as the local executor's: forked by the node's warm fork
server (``jobforge.execution.zygote``) or, when that cannot answer at once,
started cold as ``python -P -m jobforge.execution.worker <job-id>
<confinement>``, with the node's own environment (its PATH, its Python) plus
the job's variables, the GPUs the agent gave it (``CUDA_VISIBLE_DEVICES``) and
a job directory on the node. It leads its own session, so its pid is its
process group. It reaches the server only through the advertised URL and the
object store, so nothing of the server's host is needed here.

When the worker ends, its process group is killed, its directory removed (a
later attempt starts from the checkpoints in the object store) and its
outcome is the exit status and the end of its output.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

LOG_TAIL_BYTES = 64 * 1024
EXIT_POLL_SECONDS = 0.05  # how often a forked worker's exit status (which its fork server reports) is looked at


class NodeAttempt:
    """A started worker: ``pid``, ``wait()`` for (exit status, the end of its output), ``stop(force)``."""

    def __init__(self, job_id: str, zygote, preload: tuple[str, ...], env: dict, confinement: dict,
                 job_dir: Path, logs_dir: Path, gpu_ids: list[int]):
        self.job_dir = job_dir
        self.gpu_ids = gpu_ids
        self.log_path = logs_dir / f"{job_id}.log"
        pid_path = logs_dir / f"{job_id}.pid"
        pid_path.unlink(missing_ok=True)
        self.process = zygote.fork(job_id, preload, str(job_dir), str(self.log_path), str(pid_path), env,
                                   confinement) if zygote is not None else None
        self.forked = self.process is not None
        if self.process is None:
            with open(self.log_path, "ab") as log:
                self.process = subprocess.Popen(
                    [sys.executable, "-P", "-m", "jobforge.execution.worker", job_id, json.dumps(confinement)],
                    env=env, cwd=job_dir, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                    start_new_session=True)
        self.pid = self.process.pid
        self._pid_path = pid_path
        self._outcome: tuple[int, str] | None = None
        self._ended = threading.Event()
        threading.Thread(target=self._watch, daemon=True).start()

    @property
    def running(self) -> bool:
        return not self._ended.is_set()

    def wait(self) -> tuple[int, str]:
        self._ended.wait()
        return self._outcome

    def log(self) -> str:
        """The worker's output so far (its end, at most LOG_TAIL_BYTES)."""
        return self._outcome[1] if self._outcome else _tail(self.log_path)

    def stop(self, force: bool) -> None:
        if self.process.poll() is None:
            signal_group(self.pid, signal.SIGKILL if force else signal.SIGTERM)

    def _watch(self) -> None:
        if self.forked:  # not this process's child: its fork server reports its exit status
            while (code := self.process.poll()) is None:
                time.sleep(EXIT_POLL_SECONDS)
        else:
            code = self.process.wait()
        signal_group(self.pid, signal.SIGKILL)  # what the job's code left behind
        output = _tail(self.log_path)
        self.log_path.unlink(missing_ok=True)
        self._pid_path.unlink(missing_ok=True)
        shutil.rmtree(self.job_dir, ignore_errors=True)
        self._outcome = (code, output)
        self._ended.set()


def _tail(path: Path) -> str:
    try:
        with open(path, "rb") as log:
            log.seek(max(0, os.fstat(log.fileno()).st_size - LOG_TAIL_BYTES))
            return log.read().decode(errors="replace")
    except OSError:
        return ""


def signal_group(pid: int, sig: int) -> None:
    try:
        os.killpg(pid, sig)
    except (ProcessLookupError, PermissionError):
        pass
