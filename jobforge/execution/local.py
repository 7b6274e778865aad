"""The local executor: each job attempt is one OS process group on this host.

Workers are forked by a warm fork server (``jobforge.execution.zygote``) that has
already imported what they need; when it cannot answer at once, a worker is
started cold as ``python -P -m jobforge.execution.worker <job-id> <confinement>``.
Either way the worker leads its own session, so its pid is its process group,
and confines itself (``jobforge.execution.isolation``) before the job's code
runs. The job's directory is ``JOBS_DIR/<id>/``; the worker's log and pid file
are beside it (``<id>.log``, ``<id>.pid``), out of the job's reach. The job's
directory is the worker's working directory but never on its import path: the
worker starts as the server's user (root, maybe) and must import nothing a job
put there.

A handle is ``local:<pid>:<start time>``: the start time tells a recycled pid
from the worker after a restart.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from jobforge.core import kinds
from jobforge.execution import linux
from jobforge.execution.isolation import JobIsolation, host_isolation, prepare_job_dir
from jobforge.execution.resources import Capacity, host_capacity, used_by
from jobforge.execution.zygote import process_start_time
from jobforge.execution.zygote_client import ZygoteClient


@dataclass
class _Attempt:
    job_id: str
    process: object  # subprocess.Popen or a fork server's ForkedWorker: pid and poll()
    request: dict
    gpu_ids: list[int]


class LocalExecutor:
    def __init__(self, settings):
        self.settings = settings
        self.jobs_dir: Path = settings.jobs_dir
        self._capacity = host_capacity(settings.cpus, settings.memory_mb, settings.gpus)
        self._attempts: dict[str, _Attempt] = {}  # handle → attempt
        self._environment: dict = {}
        self._isolation: JobIsolation | None = None
        self._zygote: ZygoteClient | None = None

    # -- lifecycle ---------------------------------------------------------------
    def start(self, environment: dict) -> None:
        linux.set_dumpable(False)  # no process of this user (a job's, without root) reads the server's memory
        self._isolation = host_isolation(self.settings.data_dir, self.jobs_dir)
        self._environment = environment
        self._warm()

    def shutdown(self) -> None:
        for handle in list(self._attempts):
            self.stop(handle, force=True)
        if self._zygote is not None:
            self._zygote.close()
            self._zygote = None

    def _warm(self) -> None:
        """Start the fork server (again, if it died)."""
        if self._zygote is None or not self._zygote.alive:
            if self._zygote is not None:
                self._zygote.close()
            self._zygote = ZygoteClient(self._environment)

    # -- resources ---------------------------------------------------------------
    def capacity(self) -> Capacity:
        return self._capacity

    def shortfall(self, request: dict) -> str | None:
        return self._capacity.shortfall(request)

    def can_start(self, request: dict, held: Capacity) -> bool:
        used = used_by(a.request for a in self._attempts.values())
        return self._capacity.fits(request, Capacity(used.cpus + held.cpus, used.memory_mb + held.memory_mb,
                                                     used.gpus + held.gpus))

    # -- attempts ----------------------------------------------------------------
    def submit(self, job, env: dict, readable: list[str]) -> str:
        kind = kinds.get(job.family)
        confinement = self._isolation.confinement(job.id, job.account_id, readable,
                                                  account_dir=bool(kind and kind.workload.account_dir))
        work = prepare_job_dir(confinement)
        busy = {i for attempt in self._attempts.values() for i in attempt.gpu_ids}
        gpu_ids = [i for i in range(self._capacity.gpus) if i not in busy][: job.resources.get("gpus", 0)]
        env = dict(env, JOBFORGE_JOB_DIR=str(work), CUDA_VISIBLE_DEVICES=",".join(map(str, gpu_ids)))
        if confinement["account_dir"]:
            env["JOBFORGE_ACCOUNT_DIR"] = confinement["account_dir"]
        self._pid_path(job.id).unlink(missing_ok=True)
        self._warm()
        process = self._zygote.fork(job.id, kind.workload.preload if kind else (), str(work),
                                    str(self._log_path(job.id)), str(self._pid_path(job.id)), env, confinement)
        if process is None:
            with open(self._log_path(job.id), "ab") as log:
                process = subprocess.Popen(
                    [sys.executable, "-P", "-m", "jobforge.execution.worker", job.id, json.dumps(confinement)],
                    env=env, cwd=work, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                    start_new_session=True)
        handle = f"local:{process.pid}:{process_start_time(process.pid) or ''}"
        self._attempts[handle] = _Attempt(job.id, process, dict(job.resources), gpu_ids)
        return handle

    def stop(self, handle: str, force: bool = False) -> None:
        attempt = self._attempts.get(handle)
        if attempt is not None and attempt.process.poll() is None:
            _signal_group(attempt.process.pid, signal.SIGKILL if force else signal.SIGTERM)

    def poll(self) -> list[tuple[str, int]]:
        done = []
        for handle, attempt in list(self._attempts.items()):
            code = attempt.process.poll()
            if code is not None:
                del self._attempts[handle]
                # The group may hold user processes the worker left behind.
                _signal_group(attempt.process.pid, signal.SIGKILL)
                done.append((handle, code))
        return done

    def adopt(self, job_id: str, handle: str) -> bool:
        """A worker a previous server started is not this server's child, so its exit status could never be
        read: it is ended (if it still runs) and the job starts a new attempt."""
        pid, start_time = _parse(handle)
        if pid and self._is_worker_of(pid, start_time, job_id):
            _signal_group(pid, signal.SIGKILL)
        return False

    def read_log(self, job_id: str) -> str:
        try:
            return self._log_path(job_id).read_text(errors="replace")
        except OSError:
            return ""

    # -- this host's files ------------------------------------------------------
    def _log_path(self, job_id: str) -> Path:
        return self.jobs_dir / f"{job_id}.log"

    def _pid_path(self, job_id: str) -> Path:
        return self.jobs_dir / f"{job_id}.pid"

    def _is_worker_of(self, pid: int, start_time: str | None, job_id: str) -> bool:
        if start_time:
            return process_start_time(pid) == start_time
        # A handle recorded without a start time (by an older server): the worker's command line or pid file.
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except OSError:
            return False
        if b"jobforge.execution.worker" in cmdline and job_id.encode() in cmdline:
            return True
        try:  # a forked worker shares the fork server's command line; its pid file names it
            recorded_pid, recorded_start = self._pid_path(job_id).read_text().split()
        except (OSError, ValueError):
            return False
        return int(recorded_pid) == pid and process_start_time(pid) == recorded_start


def _parse(handle: str) -> tuple[int | None, str | None]:
    """(pid, start time) of a local handle; (None, None) for another executor's."""
    kind, _, rest = handle.partition(":")
    pid, _, start_time = rest.partition(":")
    if kind != "local" or not pid.isdigit():
        return None, None
    return int(pid), start_time or None


def local_pid(handle: str) -> int | None:
    """The worker's pid a local handle names."""
    return _parse(handle)[0]


def _signal_group(pid: int, sig: int) -> None:
    try:
        os.killpg(pid, sig)
    except (ProcessLookupError, PermissionError):
        pass
