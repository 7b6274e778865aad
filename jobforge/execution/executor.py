"""The executor seam: where and how a job attempt's worker process runs.

The scheduler decides *which* job starts and *when* it must stop; an executor
decides *where* its worker runs and is the only one that knows how to reach it
again. It hands out an opaque string handle per attempt, which the scheduler
stores with the job and gives back unread (to stop it, or to adopt it after a
server restart). Executors are chosen by name (``Settings.executor``,
``jobforge serve --executor``); each one runs the same worker entry point,
``python -P -m jobforge.execution.worker <job-id> <confinement>``, with the
environment the scheduler gives it.

A resource request is a dict: ``cpus``, ``memory_mb`` and ``gpus`` per
instance, ``resources`` (custom resources by name, per instance) and
``instances`` (default 1).
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from jobforge.execution.resources import Capacity

if TYPE_CHECKING:
    from jobforge.config import Settings
    from jobforge.core.jobs import Job

# name → "module:class"; each class is built with the server's Settings.
EXECUTORS = {"local": "jobforge.execution.local:LocalExecutor", "ray": "jobforge.execution.ray_executor:RayExecutor"}


@dataclass(frozen=True)
class AttemptLost:
    """How ``poll`` reports an attempt that ended with the node it ran on, which left no exit status: the job
    resumes from its last checkpoint on another node where its workload can, else it fails with ``reason``."""

    reason: str


class Executor(Protocol):
    def start(self, environment: dict) -> None:
        """Get ready to run workers (called once, at server start); environment holds no secrets."""

    def shutdown(self) -> None:
        """Stop every worker this executor started and release what it holds."""

    def capacity(self) -> Capacity:
        """What the largest node can give one job instance."""

    def shortfall(self, request: dict) -> str | None:
        """Why a job asking for request could never run here, or None if it could."""

    def can_start(self, request: dict, held: Capacity) -> bool:
        """Whether a job asking for request fits now, beside the attempts running and what the server's own
        long-lived processes hold on its host (``held``; an executor whose nodes are not that host ignores it)."""

    def submit(self, job: "Job", env: dict, readable: list[str]) -> str:
        """Start the job's next attempt with env; return its handle. Raises OSError when it cannot start.

        readable: directories of the server's host the job may read (the local models' folders).
        """

    def stop(self, handle: str, force: bool = False) -> None:
        """Ask the attempt to stop (it sees should_stop()), or with force end it at once."""

    def poll(self) -> list[tuple[str, int | AttemptLost]]:
        """(handle, exit code) of every attempt that ended since the last poll; negative: killed by that signal;
        AttemptLost: its node was lost."""

    def adopt(self, job_id: str, handle: str) -> bool:
        """After a restart, take back an attempt a previous server started; False when it is not running (any
        longer) or cannot be taken back, in which case nothing of it is left running."""

    def read_log(self, job_id: str) -> str:
        """The output of the job's worker processes so far ('' when there is none)."""


def open_executor(settings: "Settings") -> Executor:
    """The executor Settings.executor names; ValueError naming the known ones for any other name."""
    target = EXECUTORS.get(settings.executor)
    if target is None:
        raise ValueError(f"Unknown executor {settings.executor!r}; known executors: {', '.join(sorted(EXECUTORS))}")
    module, name = target.split(":")
    return getattr(importlib.import_module(module), name)(settings)
