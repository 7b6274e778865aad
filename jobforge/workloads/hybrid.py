"""Workload of Braket hybrid jobs (CreateJob); see jobforge.workloads.braket.hybrid."""

from jobforge.workloads.braket.hybrid import run

__all__ = ["run"]
