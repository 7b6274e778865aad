"""The node agent: one long-lived Ray actor per node, which starts and watches the jobs' workers there.

A new Ray actor per job costs a new Python process, and a worker started cold
imports its modules anew, and the node's isolation was probed again each
time: over a second per job on a small machine. So each node has one agent,
a detached actor named ``jobforge-node-<node id>`` (in the namespace
``jobforge``), pinned to its node and asking for no resources. It probes the
node's isolation once and keeps a warm fork server
(``jobforge.execution.zygote``, as the local executor does), from which it
forks each attempt's worker (``jobforge.execution.ray_attempt``). The job's
resources are held in Ray by a placement group of its own on this node
(``jobforge.execution.ray_executor``); the agent gives the worker GPUs of
this node that none of its other attempts holds (``CUDA_VISIBLE_DEVICES``).

The worker is confined as on the server's host, with what this node offers
(``jobforge.execution.isolation``): per-account users where Ray runs as root,
and a mount namespace that hides this node's jobforge folder (the other jobs'
directories, the workers' logs), Ray's own folder (its sockets, its logs, the
session's files) and ``~/.ray`` (the cluster's authentication token).
Variables named ``RAY_*`` never reach the job.

The node's jobforge folder is ``<Ray's temp dir>/jobforge/<node id>/``: a job
directory per job, a folder per account for the workloads that share one, the
workers' logs, and the per-account user ids. A node that starts again has a
new id, so an attempt there starts from the checkpoints in the object store.

Attempts are known by name (``jobforge-<job id>-<attempt>``). The agent
outlives the server: a restarted server asks it for the attempts it still
runs, or the outcome of those that ended meanwhile, which it keeps until the
server has read them (``forget``).
"""

from __future__ import annotations

import fcntl
import os
import tempfile
import threading
from collections import OrderedDict
from pathlib import Path

import ray

from jobforge.execution.isolation import JobIsolation, make_data_dir_private, prepare_job_dir
from jobforge.execution.ray_attempt import NodeAttempt
from jobforge.execution.zygote_client import ZygoteClient

ENDED_KEPT = 1024  # outcomes of ended attempts no server has read yet
WHERE_SECONDS = 30.0  # how long where() waits for an attempt that is being started


class NodeAgent:
    def __init__(self):
        context = ray.get_runtime_context()
        self.node_id = context.get_node_id()
        self.node_ip = ray.util.get_node_ip_address()
        self.root = Path(_ray_temp_dir(), "jobforge", self.node_id[:16])
        self.jobs_dir = self.root / "jobs"
        self.logs_dir = self.root / "logs"
        with _locked(self.root):
            self.isolation = JobIsolation(self.root, self.jobs_dir)
        self.logs_dir.mkdir(mode=0o700, exist_ok=True)
        self.environment = {name: value for name, value in os.environ.items()
                            if not name.startswith(("RAY_", "AWS_", "JOBFORGE_", "CUDA_VISIBLE_DEVICES"))}
        self.gpus = _node_gpus(self.node_id)
        self._zygote = ZygoteClient(self.environment)
        self._attempts: dict[str, NodeAttempt | None] = {}  # name → attempt (None while it is being started)
        self._failed: dict[str, str] = {}  # name → why it could not start, until run() has said so
        self._ended: OrderedDict[str, tuple[int, str]] = OrderedDict()
        self._changed = threading.Condition()

    # -- attempts ------------------------------------------------------------
    def run(self, name: str, job_id: str, account_id: str, account_dir: bool, variables: dict,
            readable: list[str], preload: list[str], gpus: int) -> tuple[int, str]:
        """Start the attempt's worker and wait for it to end: (exit status, the end of its output)."""
        with self._changed:
            if name in self._attempts or name in self._ended:
                raise ValueError(f"attempt {name} was started already")
            self._attempts[name] = None
        try:
            attempt = self._start(job_id, account_id, account_dir, variables, readable, tuple(preload), gpus)
        except BaseException as err:
            with self._changed:
                del self._attempts[name]
                self._failed[name] = str(err)
                self._changed.notify_all()
            raise
        with self._changed:
            self._attempts[name] = attempt
            self._changed.notify_all()
        return self.wait(name)

    def _start(self, job_id, account_id, account_dir, variables, readable, preload, gpus) -> NodeAttempt:
        with _locked(self.root):  # the per-account user ids are the node's, whoever else uses them
            confinement = self.isolation.confinement(job_id, account_id, [p for p in readable if os.path.exists(p)],
                                                     account_dir=account_dir)
        if confinement["namespaces"]:
            confinement["hide"] += [path for path in (_ray_temp_dir(), str(Path.home() / ".ray"))
                                    if os.path.isdir(path)]
        job_dir = prepare_job_dir(confinement)
        with self._changed:
            busy = {gpu for a in self._attempts.values() if a is not None for gpu in a.gpu_ids}
            gpu_ids = [gpu for gpu in self.gpus if gpu not in busy][:gpus]
        env = dict(self.environment)
        env.update(variables, JOBFORGE_JOB_DIR=str(job_dir), CUDA_VISIBLE_DEVICES=",".join(map(str, gpu_ids)))
        if confinement["account_dir"]:
            env["JOBFORGE_ACCOUNT_DIR"] = confinement["account_dir"]
        if not self._zygote.alive:
            self._zygote.close()
            self._zygote = ZygoteClient(self.environment)
        return NodeAttempt(job_id, self._zygote, preload, env, confinement, job_dir, self.logs_dir, gpu_ids)

    def wait(self, name: str) -> tuple[int, str] | None:
        """The outcome of an attempt once it has ended; None for one this agent does not know."""
        with self._changed:
            self._changed.wait_for(lambda: self._attempts.get(name, True) is not None)  # one being started
            attempt = self._attempts.get(name)
            if attempt is None:
                return self._ended.get(name)
        outcome = attempt.wait()
        with self._changed:
            if self._attempts.pop(name, None) is not None:
                self._ended[name] = outcome
                while len(self._ended) > ENDED_KEPT:
                    self._ended.popitem(last=False)
        return outcome

    def where(self, name: str) -> dict | None:
        """Where the attempt runs (this node, its worker's pid) and how this node confines jobs; None for one
        this agent does not know or could not start."""
        with self._changed:
            self._changed.wait_for(lambda: self._attempts.get(name) is not None or name in self._ended
                                   or name in self._failed, WHERE_SECONDS)
            self._failed.pop(name, None)
            attempt = self._attempts.get(name)
            if attempt is None and name not in self._ended:
                return None
        host = self.isolation.host
        return {"node_id": self.node_id, "node_ip": self.node_ip, "agent_pid": os.getpid(),
                "zygote_pid": self._zygote.process.pid, "pid": attempt.pid if attempt else None,
                "running": attempt is not None, "forked": attempt.forked if attempt else None,
                "isolated": host.users or host.namespaces, "isolation": host.summary(), "missing": host.missing}

    def stop(self, name: str, force: bool) -> None:
        attempt = self._attempts.get(name)
        if attempt is not None:
            attempt.stop(force)

    def forget(self, name: str) -> None:
        """The server has read the attempt's outcome."""
        with self._changed:
            self._ended.pop(name, None)

    def end(self, name: str) -> None:
        """Kill the attempt's worker (if it runs) and forget it: no job is running it any more."""
        self.stop(name, force=True)
        self.forget(name)

    def names(self) -> list[str]:
        """The attempts running here, and those that ended whose outcome no server has read."""
        with self._changed:
            return [*self._attempts, *self._ended]

    def log(self, name: str) -> str:
        attempt = self._attempts.get(name)
        if attempt is not None:
            return attempt.log()
        return self._ended.get(name, (0, ""))[1]


def _node_gpus(node_id: str) -> list[int]:
    """This node's GPUs as CUDA_VISIBLE_DEVICES names them: those Ray was started with, else 0..n-1."""
    count = int(next((n["Resources"].get("GPU", 0) for n in ray.nodes() if n["NodeID"] == node_id), 0))
    original = ray._private.worker.global_worker.original_visible_accelerator_ids.get("GPU")
    return [int(gpu) for gpu in original][:count] if original else list(range(count))


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
