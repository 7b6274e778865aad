"""The registry of workloads: metadata only, so the server imports no workload.

A workload module defines ``run(ctx: JobContext, spec: dict) -> None``.
``resumable`` workloads read ``ctx.checkpoint_dir`` and continue from it when
the server restarts mid-job; the others are failed with a reason that says so.
``preload`` names modules the fork server imports once so that the workload's
workers start with them already loaded (see ``jobforge.execution.zygote``).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Workload:
    module: str
    resumable: bool
    preload: tuple[str, ...] = ()


WORKLOADS: dict[str, Workload] = {
    "testing": Workload("jobforge.workloads.testing", resumable=True, preload=("jobforge.workloads.testing",)),
    "bedrock-customization": Workload("jobforge.workloads.customize", resumable=True),
    "braket-hybrid": Workload("jobforge.workloads.hybrid", resumable=True,
                              preload=("jobforge.workloads.hybrid", "braket.jobs.metrics_data.log_metrics_parser")),
}


def register(name: str, module: str, resumable: bool, preload: tuple[str, ...] = ()) -> None:
    WORKLOADS[name] = Workload(module, resumable, preload)
