"""The ``ml.*`` instance types: vCPUs, memory, GPUs (or other accelerators), architecture and hourly price.

The shipped catalog (``instance_catalog.json``) holds every type the APIs' models accept for a job (Braket's
``InstanceType``) or an endpoint (SageMaker's ``ProductionVariantInstanceType``) whose hardware AWS publishes
and this catalog knows; its ``prices`` block says which offer, region and date its prices are, and where they
come from. A type without a price has none (``price_per_hour`` is None): nothing is estimated. A file in the
same form (``JOBFORGE_INSTANCE_CATALOG``) overrides or adds types field by field, and its own ``prices`` block
describes the prices it gives.

A job's resource request comes from the instance type and count it asks for, never from what the server's
host has; the executor then says whether it can ever run it. Besides CPUs, memory and GPUs it names custom
resources, as a Ray cluster's nodes declare them: an accelerator's cores under the name Ray gives them
(AWS Neuron cores, Intel Gaudi HPUs), and whatever a catalog entry's ``resources`` adds (an operator's own
labels, such as ``{"fast_disk": 1}`` for the nodes started with that resource).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from jobforge.core.errors import validation_error

GIB = 1024
SHIPPED = Path(__file__).with_name("instance_catalog.json")
OVERRIDE_VARIABLE = "JOBFORGE_INSTANCE_CATALOG"
# accelerator → (the resource Ray's nodes declare for it, how many of it one accelerator chip is)
ACCELERATOR_RESOURCES = {"AWS Inferentia": ("neuron_cores", 4), "AWS Inferentia2": ("neuron_cores", 2),
                         "AWS Trainium": ("neuron_cores", 2), "Intel Gaudi": ("HPU", 1)}


@dataclass(frozen=True)
class InstanceType:
    name: str
    vcpus: int
    memory_gib: float
    gpus: int
    architecture: str  # x86_64 or arm64
    gpu: str | None = None  # the GPU model
    accelerator: str | None = None  # an accelerator that is not a GPU (AWS Inferentia, Trainium, Intel Gaudi)
    accelerators: int = 0
    price_per_hour: float | None = None  # USD per instance-hour, None where the catalog has no price
    price_source: str | None = None  # the offer, region, date and source of that price
    resources: dict | None = None  # custom resources per instance a catalog entry adds, by name

    @property
    def memory_mb(self) -> int:
        return int(self.memory_gib * GIB)

    @property
    def custom_resources(self) -> dict[str, float]:
        """The custom resources one instance asks for: its accelerator's, then the entry's own."""
        found = dict(self.resources or {})
        if self.accelerator in ACCELERATOR_RESOURCES:
            name, per_chip = ACCELERATOR_RESOURCES[self.accelerator]
            found.setdefault(name, self.accelerators * per_chip)
        return found


def _read(path: Path) -> dict:
    try:
        document = json.loads(path.read_text())
    except (OSError, ValueError) as err:
        raise ValueError(f"the instance catalog {path} cannot be read: {err}") from None
    if not isinstance(document, dict) or not isinstance(document.get("instance_types"), dict):
        raise ValueError(f"the instance catalog {path} has no 'instance_types' object")
    return document


def _price_source(prices: dict | None) -> str | None:
    if not prices:
        return None
    return (f"{prices.get('offer', 'on-demand')}, {prices.get('region', '?')}, {prices.get('currency', 'USD')} per "
            f"{prices.get('per', 'instance-hour')}, as of {prices.get('as_of', '?')}; source: "
            f"{prices.get('source', '?')}")


def load(override: str | os.PathLike | None = None) -> dict[str, InstanceType]:
    """The catalog: the shipped one, with the override file's types (given, else named by
    JOBFORGE_INSTANCE_CATALOG) laid over it field by field."""
    merged: dict[str, dict] = {}
    override = override or os.environ.get(OVERRIDE_VARIABLE)
    for path in filter(None, (SHIPPED, override and Path(override))):
        document = _read(Path(path))
        source = _price_source(document.get("prices"))
        for name, fields in document["instance_types"].items():
            entry = merged.setdefault(name, {"name": name})
            entry.update(fields)
            if "price_per_hour" in fields:
                entry["price_source"] = source
    try:
        return {name: InstanceType(**fields) for name, fields in merged.items()}
    except TypeError as err:
        raise ValueError(f"an instance catalog entry is malformed: {err}") from None


@lru_cache(maxsize=1)
def catalog() -> dict[str, InstanceType]:
    """The catalog this process uses (read once)."""
    return load()


def find(name: str) -> InstanceType | None:
    return catalog().get(name)


def resources_for(instance_type: str, count: int = 1) -> dict:
    """The resource request of count instances of instance_type (per instance, as executors place them)."""
    found = find(instance_type)
    if found is None:
        raise validation_error(f"Instance type {instance_type} is not supported; supported: "
                               f"{', '.join(catalog())}.")
    request = {"cpus": found.vcpus, "memory_mb": found.memory_mb, "gpus": found.gpus, "instances": count}
    if found.custom_resources:
        request["resources"] = found.custom_resources
    return request
