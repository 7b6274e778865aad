"""The instance types a Default job tries when the request names none: chosen from the catalog by the model.

From each instance family, the cheapest priced type with memory for the model (three times its data, at
least 2 GiB); CPU families for every model, GPU families first for text generation. The cheapest few are kept;
any the host cannot realise is reported as skipped, with the reason, like any other test.
"""

from __future__ import annotations

CPU_FAMILIES = ("ml.c5", "ml.m5", "ml.c6i", "ml.m6i", "ml.t2", "ml.r5")
GPU_FAMILIES = ("ml.g4dn", "ml.g5", "ml.g6")
MAX_CANDIDATES = 3
MIN_MEMORY_GIB = 2.0
MEMORY_PER_MODEL_BYTE = 3


def default_candidates(catalog: dict, model_bytes: int, text_generation: bool) -> list[str]:
    """catalog: name → an object with ``memory_gib`` and ``price_per_hour`` (jobforge.core.instance_types)."""
    need_gib = max(MIN_MEMORY_GIB, MEMORY_PER_MODEL_BYTE * model_bytes / 2 ** 30)
    families = (GPU_FAMILIES + CPU_FAMILIES) if text_generation else CPU_FAMILIES
    chosen = []
    for family in families:
        fitting = [t for name, t in catalog.items() if name.rsplit(".", 1)[0] == family
                   and t.price_per_hour is not None and t.memory_gib >= need_gib]
        if fitting:
            chosen.append(min(fitting, key=lambda t: t.price_per_hour))
    if not text_generation:
        chosen.sort(key=lambda t: t.price_per_hour)
    return [t.name for t in chosen[:MAX_CANDIDATES]]
