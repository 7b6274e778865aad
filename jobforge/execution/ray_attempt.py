"""One job attempt on a Ray node: the actor the Ray executor starts (``jobforge.execution.ray_executor``).

Ray places the actor on a node that has the job's resources. There it starts
the same worker as the local executor,
``python -P -m jobforge.execution.worker <job-id> <confinement>``, with the
node's own environment (its PATH, its Python) plus the job's variables, the
GPUs Ray assigned (``CUDA_VISIBLE_DEVICES``) and a job directory on the node.
The worker reaches the server only through the advertised URL and the object
store, so nothing of the server's host is needed here.

The worker is confined as on the server's host, with what this node offers
(``jobforge.execution.isolation``, detected here): per-account users where Ray
runs as root, and a mount namespace that hides this node's jobforge folder
(the other jobs' directories, the workers' logs), Ray's own folder (its
sockets, its logs, the session's files) and ``~/.ray`` (the cluster's
authentication token). Variables named ``RAY_*`` never reach the job.

The node's jobforge folder is ``<Ray's temp dir>/jobforge/<node id>/``: a job
directory per job, a folder per account for the workloads that share one, the
workers' logs, and the per-account user ids. A node that starts again has a
new id, so an attempt there starts from the checkpoints in the object store.
When the worker ends, its process group is killed, its directory removed, and
``wait`` answers its exit status and the end of its output.
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

import ray

from jobforge.execution.isolation import JobIsolation, make_data_dir_private, prepare_job_dir

LOG_TAIL_BYTES = 64 * 1024


class JobAttempt:
    def __init__(self, job_id: str, attempt: int, account_id: str, account_dir: bool, variables: dict,
                 readable: list[str]):
        context = ray.get_runtime_context()
        self.node_id = context.get_node_id()
        self.root = Path(_ray_temp_dir(), "jobforge", self.node_id[:16])
        jobs_dir = self.root / "jobs"
        with _locked(self.root):  # the actors of one node share its user ids
            isolation = JobIsolation(self.root, jobs_dir)
            confinement = isolation.confinement(job_id, account_id, [p for p in readable if os.path.exists(p)],
                                                account_dir=account_dir)
        self.isolation = isolation.host
        if confinement["namespaces"]:
            confinement["hide"] += [path for path in (_ray_temp_dir(), str(Path.home() / ".ray"))
                                    if os.path.isdir(path)]
        self.job_dir = prepare_job_dir(confinement)
        env = {name: value for name, value in os.environ.items()
               if not name.startswith(("RAY_", "AWS_", "JOBFORGE_"))}
        env.update(variables, JOBFORGE_JOB_DIR=str(self.job_dir),
                   CUDA_VISIBLE_DEVICES=",".join(str(gpu) for gpu in ray.get_gpu_ids()))
        if confinement["account_dir"]:
            env["JOBFORGE_ACCOUNT_DIR"] = confinement["account_dir"]
        self.log_path = self.root / "logs" / f"{job_id}-{attempt}.log"
        self.log_path.parent.mkdir(mode=0o700, exist_ok=True)
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-P", "-m", "jobforge.execution.worker", job_id, json.dumps(confinement)],
                env=env, cwd=self.job_dir, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                start_new_session=True)
        self._ended = threading.Event()
        self._outcome: tuple[int, str] | None = None
        threading.Thread(target=self._watch, daemon=True).start()

    def where(self) -> dict:
        """The node the attempt runs on, and how this node confines jobs."""
        return {"node_id": self.node_id, "node_ip": ray.util.get_node_ip_address(), "pid": os.getpid(),
                "isolated": self.isolation.users or self.isolation.namespaces,
                "isolation": self.isolation.summary(), "missing": self.isolation.missing}

    def wait(self) -> tuple[int, str]:
        """(exit status, the end of the worker's output), once the worker has ended."""
        self._ended.wait()
        return self._outcome

    def log(self) -> str:
        """The worker's output so far (its end, at most LOG_TAIL_BYTES)."""
        return self._outcome[1] if self._outcome else _tail(self.log_path)

    def stop(self, force: bool) -> None:
        if self.process.poll() is None:
            _signal_group(self.process.pid, signal.SIGKILL if force else signal.SIGTERM)

    def _watch(self) -> None:
        code = self.process.wait()
        _signal_group(self.process.pid, signal.SIGKILL)  # what the job's code left behind
        output = _tail(self.log_path)
        self.log_path.unlink(missing_ok=True)
        shutil.rmtree(self.job_dir, ignore_errors=True)  # a later attempt starts from the object store
        self._outcome = (code, output)
        self._ended.set()


def _ray_temp_dir() -> str:
    """This node's Ray folder (``ray start --temp-dir``, /tmp/ray by default)."""
    node = getattr(ray._private.worker, "_global_node", None)
    return node.get_temp_dir_path() if node is not None else os.path.join(tempfile.gettempdir(), "ray")


class _locked:
    """The node's jobforge folder, made private as the server's data dir is, held under an exclusive lock."""

    def __init__(self, root: Path):
        self.root = root

    def __enter__(self):
        self.root.mkdir(parents=True, exist_ok=True)
        self._fd = os.open(self.root / "lock", os.O_RDWR | os.O_CREAT, 0o600)
        fcntl.flock(self._fd, fcntl.LOCK_EX)
        make_data_dir_private(self.root, self.root / "jobs")
        return self

    def __exit__(self, *_):
        os.close(self._fd)


def _tail(path: Path) -> str:
    try:
        with open(path, "rb") as log:
            log.seek(max(0, os.fstat(log.fileno()).st_size - LOG_TAIL_BYTES))
            return log.read().decode(errors="replace")
    except OSError:
        return ""


def _signal_group(pid: int, sig: int) -> None:
    try:
        os.killpg(pid, sig)
    except (ProcessLookupError, PermissionError):
        pass
