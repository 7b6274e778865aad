"""Job kinds: what each kind of job declares, in one place.

A kind (a Bedrock model customization job, a Braket hybrid job, a SageMaker
job of one category, …) is declared once, in the API module that serves it,
with ``register(JobKind(...))``. The server finds the declarations by
importing every API module (and the plugin modules it is told about); the
job store, the scheduler, the executors and the logs API read them from here.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable

if TYPE_CHECKING:
    import sqlalchemy as sa

    from jobforge.core.jobs import Job


@dataclass(frozen=True)
class Workload:
    """The real work of a kind: a module with ``run(ctx, spec)``, imported only in the worker.

    ``resumable`` workloads read ``ctx.checkpoint_dir`` and continue from it when
    the server restarts mid-job; the others are failed with a reason that says so.
    ``preload`` names modules the fork server imports once so that the workload's
    workers start with them already loaded (see ``jobforge.execution.zygote``).
    ``account_dir`` workloads get a folder that the jobs of their account share
    (``ctx.account_dir``, writable; no other account's job sees it), for what is
    worth keeping between jobs, such as the Python environments they build.
    """

    module: str
    resumable: bool
    preload: tuple[str, ...] = ()
    account_dir: bool = False


@dataclass(frozen=True)
class JobErrors:
    """The error codes of the kind's service model for what the job store refuses."""

    not_found: str
    conflict: str  # a name already taken, a client token reused with other parameters
    not_stoppable: str  # stopping a job that has ended or is stopping already
    in_use: str  # deleting a job that has not ended


@dataclass(frozen=True)
class LogGroup:
    """The CloudWatch Logs group whose streams are the kind's jobs."""

    name: str
    stream: Callable[[Job], str]  # a job's stream name; must start with "<job name>/"


@dataclass(frozen=True)
class JobKind:
    name: str  # the key jobs of the kind are stored under, e.g. "braket-job"
    label: str  # how messages name one job: "Hybrid job", "Model customization job", …
    statuses: dict[str, str]  # engine state (jobforge.core.jobs.STATES) → the API's status value
    errors: JobErrors
    workload: Workload
    # (engine, job) → the job as the kind's describe operation returns it (its output shape, as Python values):
    # what the kind's handlers answer, and what tools that show any job (``jobforge jobs describe --api``) show.
    describe: Callable[[sa.Engine, Job], dict]
    # (region, account, name, id) → ARN; None where the create request decides it (jobs.create's arn=)
    arn: Callable[[str, str, str, str], str] | None = None
    log_group: LogGroup | None = None
    on_terminal: Callable | None = None  # (runtime, job) once a job of the kind has reached a terminal state

    def states(self, status: str) -> tuple[str, ...]:
        """The engine states an API status stands for: the filter of a list call's status argument."""
        return tuple(state for state, shown in self.statuses.items() if shown == status)

    @property
    def token_scope(self) -> str:
        """The scope of the client tokens of the kind's create requests."""
        return f"{self.name}:create"


KINDS: dict[str, JobKind] = {}


def register(kind: JobKind) -> JobKind:
    """Declare a kind; a second, different declaration under one name is a mistake and refused."""
    known = KINDS.setdefault(kind.name, kind)
    if known != kind:
        raise ValueError(f"job kind {kind.name!r} is declared twice")
    return kind


def get(name: str) -> JobKind | None:
    return KINDS.get(name)


def of(job: Job) -> JobKind:
    """The kind of a stored job (every job the server serves is of a declared kind)."""
    return KINDS[job.family]
