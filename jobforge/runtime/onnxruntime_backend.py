"""An onnxruntime artifact: an offline-optimised ONNX graph and the execution providers it was built for."""

from __future__ import annotations

from pathlib import Path

import onnxruntime as ort


def session(folder: Path, manifest: dict, threads: int | None, device: str | None):
    options = ort.SessionOptions()
    # The graph was optimised when it was compiled; optimising again at load time would only cost time.
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    if threads:
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
    available = ort.get_available_providers()
    wanted = [device] if device else manifest["onnxruntime"]["providers"]
    providers = [name for name in wanted if name in available] or ["CPUExecutionProvider"]
    inference = ort.InferenceSession(str(folder / manifest["files"]["model"]), options, providers=providers)
    return lambda feeds: inference.run(None, feeds)
