"""An OpenVINO artifact: IR (``.xml`` + ``.bin``) compiled for a device at the precision it was built for."""

from __future__ import annotations

from pathlib import Path

import openvino as ov


def session(folder: Path, manifest: dict, threads: int | None, device: str | None):
    settings = manifest["openvino"]
    core = ov.Core()
    config = {"INFERENCE_PRECISION_HINT": settings["inference_precision"], "PERFORMANCE_HINT": "LATENCY"}
    chosen = device or settings["device"]
    if threads and chosen == "CPU":
        config["INFERENCE_NUM_THREADS"] = threads
    compiled = core.compile_model(core.read_model(str(folder / manifest["files"]["model"])), chosen, config)
    request = compiled.create_infer_request()
    outputs = compiled.outputs

    def run(feeds):
        results = request.infer(feeds)
        return [results[port].copy() for port in outputs]

    return run
