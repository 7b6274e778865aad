"""Amazon Braket API (restJson1): hybrid jobs, quantum tasks, devices, tags."""

from jobforge.api.braket import device_search, hybrid_jobs, quantum_tasks, tagging  # noqa: F401  (handlers)
