"""An AOTInductor artifact: a ``.pt2`` package holding a compiled shared library, loaded by torch."""

from __future__ import annotations

from pathlib import Path

import torch
from torch._inductor import aoti_load_package


def session(folder: Path, manifest: dict, threads: int | None, device: str | None):
    if threads:
        torch.set_num_threads(threads)
    runner = aoti_load_package(str(folder / manifest["files"]["model"]))
    target = device or manifest["aotinductor"]["device"]  # a package compiled for CUDA runs only there

    def run(feeds):
        with torch.no_grad():
            result = runner(*(torch.from_numpy(array).to(target) for array in feeds.values()))
        tensors = result if isinstance(result, (list, tuple)) else [result]
        return [tensor.detach().cpu().numpy() for tensor in tensors]

    return run
