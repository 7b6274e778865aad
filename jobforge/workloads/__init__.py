"""The registry of workloads: metadata only, so the server imports no workload.

A workload module defines ``run(ctx: JobContext, spec: dict) -> None``.
``resumable`` workloads read ``ctx.checkpoint_dir`` and continue from it when
the server restarts mid-job; the others are failed with a reason that says so.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Workload:
    module: str
    resumable: bool


WORKLOADS: dict[str, Workload] = {
    "testing": Workload("jobforge.workloads.testing", resumable=True),
    "bedrock-customization": Workload("jobforge.workloads.customize", resumable=True),
    "braket-hybrid": Workload("jobforge.workloads.hybrid", resumable=True),
}


def register(name: str, module: str, resumable: bool) -> None:
    WORKLOADS[name] = Workload(module, resumable)
