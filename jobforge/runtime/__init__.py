"""Load and run a model compiled by a jobforge compilation job.

    from jobforge.runtime import load
    model = load("model-ml_c5.tar.gz")        # the job's output tarball, or the folder it was unpacked to
    outputs = model.run({"input0": array})    # or model.run([array]); a list of numpy arrays

The artifact's ``manifest.json`` names its backend; only that backend's package is imported (onnxruntime,
openvino or torch), besides numpy. This package imports nothing else of jobforge, so it can be copied
alone next to an application.
"""

from __future__ import annotations

import json
import tarfile
import tempfile
from pathlib import Path

import numpy as np

MANIFEST = "manifest.json"
FORMAT = "jobforge-compiled-model/1"


class CompiledModel:
    def __init__(self, folder: Path, manifest: dict, session, keep=None):
        self.folder = folder
        self.manifest = manifest
        self.inputs: list[dict] = manifest["inputs"]  # name, shape, dtype (and dynamic_axes) of each input
        self.outputs: list[str] = manifest["outputs"]
        self.backend: str = manifest["backend"]
        self._session = session
        self._keep = keep  # the temporary folder of an unpacked tarball lives as long as the model

    def run(self, feeds) -> list[np.ndarray]:
        """Run on inputs given by name (a dict) or in order (a list); returns the outputs in order."""
        if not isinstance(feeds, dict):
            feeds = {spec["name"]: value for spec, value in zip(self.inputs, feeds, strict=True)}
        missing = [spec["name"] for spec in self.inputs if spec["name"] not in feeds]
        if missing:
            raise ValueError(f"missing input(s): {', '.join(missing)}")
        arrays = {spec["name"]: np.ascontiguousarray(feeds[spec["name"]], dtype=spec["dtype"]) for spec in self.inputs}
        return self._session(arrays)


def load(path, *, threads: int | None = None, device: str | None = None) -> CompiledModel:
    """The compiled model at path: an output tarball or its unpacked folder.

    ``threads`` caps the backend's intra-op threads; ``device`` overrides the device the manifest names
    (an onnxruntime execution provider such as ``CPUExecutionProvider``, or an OpenVINO device such as ``CPU``).
    """
    path, keep = Path(path), None
    if path.is_file():
        keep = tempfile.TemporaryDirectory(prefix="jobforge-model-")
        with tarfile.open(path, "r:*") as tar:
            tar.extractall(keep.name, filter="data")
        path = Path(keep.name)
    manifest = json.loads((path / MANIFEST).read_text())
    if manifest.get("format") != FORMAT:
        raise ValueError(f"{path / MANIFEST} is not a jobforge compiled-model manifest ({FORMAT})")
    backend = manifest["backend"]
    if backend == "onnxruntime":
        from jobforge.runtime.onnxruntime_backend import session
    elif backend == "openvino":
        from jobforge.runtime.openvino_backend import session
    elif backend == "aotinductor":
        from jobforge.runtime.aotinductor_backend import session
    else:
        raise ValueError(f"backend {backend!r} is not one this runtime knows")
    return CompiledModel(path, manifest, session(path, manifest, threads, device), keep)
