"""What an instance type gives a job: vCPUs, memory and GPUs, as AWS publishes them.

A job's resource request comes from the instance type and count it asks for,
never from what the server's host has; the executor then says whether it can
ever run it. The table holds every type the APIs' models accept for a job
(Braket's ``InstanceType`` enum).
"""

from __future__ import annotations

from jobforge.core.errors import validation_error

GIB = 1024

# type → (vCPUs, memory GiB, GPUs)
INSTANCE_TYPES: dict[str, tuple[int, float, int]] = {
    "ml.t3.large": (2, 8, 0), "ml.t3.xlarge": (4, 16, 0), "ml.t3.2xlarge": (8, 32, 0),
    "ml.m4.xlarge": (4, 16, 0), "ml.m4.2xlarge": (8, 32, 0), "ml.m4.4xlarge": (16, 64, 0),
    "ml.m4.10xlarge": (40, 160, 0), "ml.m4.16xlarge": (64, 256, 0),
    "ml.m5.large": (2, 8, 0), "ml.m5.xlarge": (4, 16, 0), "ml.m5.2xlarge": (8, 32, 0),
    "ml.m5.4xlarge": (16, 64, 0), "ml.m5.12xlarge": (48, 192, 0), "ml.m5.24xlarge": (96, 384, 0),
    "ml.c4.xlarge": (4, 7.5, 0), "ml.c4.2xlarge": (8, 15, 0), "ml.c4.4xlarge": (16, 30, 0),
    "ml.c4.8xlarge": (36, 60, 0),
    "ml.c5.xlarge": (4, 8, 0), "ml.c5.2xlarge": (8, 16, 0), "ml.c5.4xlarge": (16, 32, 0),
    "ml.c5.9xlarge": (36, 72, 0), "ml.c5.18xlarge": (72, 144, 0),
    "ml.c5n.xlarge": (4, 10.5, 0), "ml.c5n.2xlarge": (8, 21, 0), "ml.c5n.4xlarge": (16, 42, 0),
    "ml.c5n.9xlarge": (36, 96, 0), "ml.c5n.18xlarge": (72, 192, 0),
    "ml.p4d.24xlarge": (96, 1152, 8),
    "ml.g4dn.xlarge": (4, 16, 1), "ml.g4dn.2xlarge": (8, 32, 1), "ml.g4dn.4xlarge": (16, 64, 1),
    "ml.g4dn.8xlarge": (32, 128, 1), "ml.g4dn.12xlarge": (48, 192, 4), "ml.g4dn.16xlarge": (64, 256, 1),
    "ml.g6.xlarge": (4, 16, 1), "ml.g6.2xlarge": (8, 32, 1), "ml.g6.4xlarge": (16, 64, 1),
    "ml.g6.8xlarge": (32, 128, 1), "ml.g6.12xlarge": (48, 192, 4), "ml.g6.16xlarge": (64, 256, 1),
    "ml.g6.24xlarge": (96, 384, 4), "ml.g6.48xlarge": (192, 768, 8),
    "ml.g6e.xlarge": (4, 32, 1), "ml.g6e.2xlarge": (8, 64, 1), "ml.g6e.4xlarge": (16, 128, 1),
    "ml.g6e.8xlarge": (32, 256, 1), "ml.g6e.12xlarge": (48, 384, 4), "ml.g6e.16xlarge": (64, 512, 1),
    "ml.g6e.24xlarge": (96, 768, 4), "ml.g6e.48xlarge": (192, 1536, 8),
}


def resources_for(instance_type: str, count: int = 1) -> dict:
    """The resource request of count instances of instance_type (per instance, as executors place them)."""
    found = INSTANCE_TYPES.get(instance_type)
    if found is None:
        raise validation_error(f"Instance type {instance_type} is not supported; supported: "
                               f"{', '.join(INSTANCE_TYPES)}.")
    cpus, memory_gib, gpus = found
    return {"cpus": cpus, "memory_mb": int(memory_gib * GIB), "gpus": gpus, "instances": count}
