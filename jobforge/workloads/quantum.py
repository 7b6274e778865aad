"""Workload of Braket quantum tasks (CreateQuantumTask); see jobforge.workloads.braket.tasks."""

from jobforge.workloads.braket.tasks import run

__all__ = ["run"]
