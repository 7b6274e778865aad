"""The local executor: each job attempt is one OS process group on this host.

Executors share one interface so the scheduler works unchanged with a Ray
executor: ``submit(job, env) -> handle``, ``stop(job_id, force)``,
``poll() -> [(job_id, exit_code)]``, ``kill_orphan(job)``.

Workers are forked by a warm fork server (``jobforge.execution.zygote``) that has
already imported what they need; when it cannot answer at once, a worker is
started cold as ``python -P -m jobforge.execution.worker <job-id> <confinement>``.
Either way the worker leads its own session, so its pid is its process group,
and confines itself before the job's code runs. The job's directory is
``JOBS_DIR/<id>/``; the worker's log and pid file are beside it
(``<id>.log``, ``<id>.pid``), out of the job's reach. The job's directory is
the worker's working directory but never on its import path: the worker starts
as the server's user (root, maybe) and must import nothing a job put there.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

from jobforge.execution.isolation import prepare_job_dir
from jobforge.execution.zygote import process_start_time
from jobforge.execution.zygote_client import ZygoteClient
from jobforge.workloads import WORKLOADS


class LocalExecutor:
    def __init__(self, jobs_dir: Path):
        self.jobs_dir = jobs_dir
        self.processes: dict[str, subprocess.Popen] = {}
        self._zygote: ZygoteClient | None = None

    def log_path(self, job_id: str) -> Path:
        return self.jobs_dir / f"{job_id}.log"

    def pid_path(self, job_id: str) -> Path:
        return self.jobs_dir / f"{job_id}.pid"

    def warm(self, env: dict) -> None:
        """Start the fork server (again, if it died) with env, which must hold no secrets."""
        if self._zygote is None or not self._zygote.alive:
            if self._zygote is not None:
                self._zygote.close()
            self._zygote = ZygoteClient(env)

    def submit(self, job, env: dict, confinement: dict) -> int:
        """Start the job's worker with env, confined as ``jobforge.execution.isolation.enter`` reads confinement."""
        work = prepare_job_dir(confinement)
        self.pid_path(job.id).unlink(missing_ok=True)
        workload = WORKLOADS.get(job.workload)
        process = None
        if self._zygote is not None:
            process = self._zygote.fork(job.id, workload.preload if workload else (), str(work),
                                        str(self.log_path(job.id)), str(self.pid_path(job.id)), env, confinement)
        if process is None:
            with open(self.log_path(job.id), "ab") as log:
                process = subprocess.Popen(
                    [sys.executable, "-P", "-m", "jobforge.execution.worker", job.id, json.dumps(confinement)],
                    env=env, cwd=work, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                    start_new_session=True)
        self.processes[job.id] = process
        return process.pid

    def stop(self, job_id: str, force: bool = False) -> None:
        process = self.processes.get(job_id)
        if process is not None and process.poll() is None:
            _signal_group(process.pid, signal.SIGKILL if force else signal.SIGTERM)

    def poll(self) -> list[tuple[str, int]]:
        done = []
        for job_id, process in list(self.processes.items()):
            code = process.poll()
            if code is not None:
                del self.processes[job_id]
                # The group may hold user processes the worker left behind.
                _signal_group(process.pid, signal.SIGKILL)
                done.append((job_id, code))
        return done

    def kill_orphan(self, job) -> None:
        """Kill a worker left by a server that died, if it is still alive."""
        if job.pid and self._is_worker_of(job.pid, job.id):
            _signal_group(job.pid, signal.SIGKILL)

    def shutdown(self) -> None:
        for job_id in list(self.processes):
            self.stop(job_id, force=True)
        if self._zygote is not None:
            self._zygote.close()
            self._zygote = None

    def _is_worker_of(self, pid: int, job_id: str) -> bool:
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except OSError:
            return False
        if b"jobforge.execution.worker" in cmdline and job_id.encode() in cmdline:
            return True
        try:  # a forked worker shares the fork server's command line; its pid file names it
            recorded_pid, start_time = self.pid_path(job_id).read_text().split()
        except (OSError, ValueError):
            return False
        return int(recorded_pid) == pid and process_start_time(pid) == start_time


def _signal_group(pid: int, sig: int) -> None:
    try:
        os.killpg(pid, sig)
    except (ProcessLookupError, PermissionError):
        pass
