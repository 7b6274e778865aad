"""What one node can give jobs (CPU slots, memory, GPUs, named custom resources), and what this host has.

A request's ``resources`` names custom resources per instance (``{"neuron_cores": 2}``), as Ray names the
resources its nodes declare; this host declares none.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass, field

_UNITS = (("cpus", "CPUs"), ("memory_mb", "MiB of memory"), ("gpus", "GPUs"))


@dataclass
class Capacity:
    cpus: int
    memory_mb: int
    gpus: int
    resources: dict[str, float] = field(default_factory=dict)  # custom resources by name

    def fits(self, request: dict, used: "Capacity") -> bool:
        return (used.cpus + request.get("cpus", 1) <= self.cpus
                and used.memory_mb + request.get("memory_mb", 0) <= self.memory_mb
                and used.gpus + request.get("gpus", 0) <= self.gpus
                and all(used.resources.get(name, 0) + amount <= self.resources.get(name, 0)
                        for name, amount in request.get("resources", {}).items()))

    def shortfall(self, request: dict, nodes: int = 1) -> str | None:
        """Why a request can never run on nodes of this size, or None."""
        short = [f"{request[name]} {unit} (a node offers at most {getattr(self, name)})"
                 for name, unit in _UNITS if request.get(name, 0) > getattr(self, name)]
        short += [f"{amount:g} {name} (a node offers at most {self.resources.get(name, 0):g})"
                  for name, amount in sorted(request.get("resources", {}).items())
                  if amount > self.resources.get(name, 0)]
        if request.get("instances", 1) > nodes:
            short.append(f"{request['instances']} instances (this server runs jobs on {nodes})")
        return f"The job needs more than this server can give: {', '.join(short)}." if short else None


def used_by(requests) -> Capacity:
    used = Capacity(0, 0, 0)
    for request in requests:
        used.cpus += request.get("cpus", 1)
        used.memory_mb += request.get("memory_mb", 0)
        used.gpus += request.get("gpus", 0)
        for name, amount in request.get("resources", {}).items():
            used.resources[name] = used.resources.get(name, 0) + amount
    return used


def held_by_services(reserved: dict[str, dict]) -> Capacity:
    """What the server's long-lived processes (``Supervisor.reserved()``) keep from jobs: their memory and GPUs.

    Their CPU time is shared with jobs, not set aside: a service is idle most of the time (the inference host
    between generations), and setting its threads aside would keep jobs queued behind CPUs nobody uses.
    """
    held = used_by(reserved.values())
    return Capacity(0, held.memory_mb, held.gpus)


def detect_gpus() -> int:
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None:
        return len([d for d in visible.split(",") if d.strip() and d.strip() != "-1"])
    if shutil.which("nvidia-smi") is None:
        return 0
    try:
        out = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, timeout=10).stdout
    except (OSError, subprocess.SubprocessError):
        return 0
    return sum(1 for line in out.splitlines() if line.startswith("GPU "))


def host_capacity(cpus: int | None = None, memory_mb: int | None = None, gpus: int | None = None) -> Capacity:
    if memory_mb is None:
        memory_mb = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // (1024 * 1024)
    return Capacity(cpus or len(os.sched_getaffinity(0)), memory_mb, detect_gpus() if gpus is None else gpus)
