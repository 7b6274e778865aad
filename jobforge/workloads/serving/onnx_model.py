"""ONNX graphs (``model.onnx``, run by onnxruntime) and compilation jobs' artifacts (``manifest.json``, run by
``jobforge.runtime``).

A request is one array for a model of one input (a JSON nested list, CSV rows or .npy), or a JSON object of
arrays by input name; the answer is the one output's array, or an object of arrays by output name.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Callable

import numpy as np

from jobforge.workloads.serving import codecs
from jobforge.workloads.serving.frameworks import onnx_file
from jobforge.workloads.serving.predictor import ClientError

ONNX_TYPES = {"tensor(float)": np.float32, "tensor(double)": np.float64, "tensor(float16)": np.float16,
              "tensor(int64)": np.int64, "tensor(int32)": np.int32, "tensor(int8)": np.int8,
              "tensor(uint8)": np.uint8, "tensor(bool)": np.bool_}


class GraphPredictor:
    def __init__(self, inputs: list[tuple[str, np.dtype]], outputs: list[str], run: Callable[[dict], list]):
        self.inputs, self.outputs, self.run = inputs, outputs, run

    def _feeds(self, body: bytes, content_type: str | None) -> dict:
        try:
            if codecs.base_type(content_type) == codecs.JSON and body.lstrip().startswith(b"{"):
                named = json.loads(body)
                if "instances" not in named:
                    missing = [name for name, _ in self.inputs if name not in named]
                    if missing:
                        raise ClientError(f"The request names no value for the model's input(s) "
                                          f"{', '.join(missing)}.")
                    return {name: np.asarray(named[name], dtype=dtype) for name, dtype in self.inputs}
            data = codecs.decode(body, content_type)
        except codecs.UnsupportedType as err:
            raise ClientError(str(err), 415) from None
        except (ValueError, TypeError) as err:
            raise ClientError(f"The request body cannot be read as the model's input: {err}") from None
        if len(self.inputs) != 1:
            raise ClientError(f"The model has {len(self.inputs)} inputs ({', '.join(n for n, _ in self.inputs)}): "
                              "send a JSON object of arrays by input name.")
        name, dtype = self.inputs[0]
        return {name: np.asarray(data, dtype=dtype)}

    def invoke(self, body: bytes, content_type: str | None, accept: str | None) -> tuple[bytes, str]:
        results = self.run(self._feeds(body, content_type))
        value = results[0] if len(results) == 1 else dict(zip(self.outputs, results))
        try:
            return codecs.encode(value, accept)
        except codecs.UnsupportedType as err:
            raise ClientError(str(err), 406) from None

    def stream(self, body: bytes, content_type: str | None, accept: str | None):
        answer, kind = self.invoke(body, content_type, accept)
        return iter([answer]), kind


def load_onnx(model_dir: Path, threads: int) -> GraphPredictor:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    providers = [p for p in ("CUDAExecutionProvider", "CPUExecutionProvider") if p in ort.get_available_providers()]
    session = ort.InferenceSession(str(onnx_file(model_dir)), options, providers=providers)
    inputs = [(item.name, ONNX_TYPES.get(item.type, np.float32)) for item in session.get_inputs()]
    outputs = [item.name for item in session.get_outputs()]
    return GraphPredictor(inputs, outputs, lambda feeds: session.run(None, feeds))


def load_compiled(model_dir: Path, threads: int) -> GraphPredictor:
    from jobforge import runtime

    model = runtime.load(model_dir, threads=threads)
    inputs = [(spec["name"], np.dtype(spec["dtype"])) for spec in model.inputs]
    return GraphPredictor(inputs, list(model.outputs), model.run)
