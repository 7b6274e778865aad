"""The original model of each framework: loaded, its inputs resolved, run as the reference, converted to ONNX.

ONNX is the common form every backend starts from (AOTInductor starts from the torch program instead).
PyTorch TorchScript goes through torch's TorchScript exporter (the dynamo exporter refuses ScriptModules),
torch.export programs through the dynamo exporter; scikit-learn through skl2onnx; XGBoost through
onnxmltools; ONNX models are taken as they are.
"""

from __future__ import annotations

import importlib.metadata
import pickle
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

from jobforge.execution.context import WorkloadError
from jobforge.workloads.compile.shapes import InputSpec

OPSET = 17


@dataclass
class Source:
    framework: str
    inputs: list[InputSpec]  # named, with concrete shapes and dtypes
    outputs: list[str]  # the ONNX graph's output names, in order
    derived: bool  # the shapes came from the model, not from DataInputConfig
    onnx_path: Path
    run: Callable[[dict], list[np.ndarray]]  # the original model, on numpy inputs by name
    original: str  # how the original runs, for the report
    program: Callable[[], Any] | None = None  # the torch.export program (for AOTInductor), made on first use
    versions: dict = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


def versions(*packages: str) -> dict:
    found = {}
    for name in packages:
        try:
            found[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            pass
    return found


def load(framework: str, path: Path, given: list[InputSpec] | None, input_dtype: str | None, work: Path) -> Source:
    loader = {"PYTORCH": _pytorch, "ONNX": _onnx, "SKLEARN": _sklearn, "XGBOOST": _xgboost}[framework]
    return loader(path, given, input_dtype, work)


def _named(given: list[InputSpec], names: list[str] | None, default_dtype: str) -> list[InputSpec]:
    """Given inputs with names (positional ones take ``names``, else input0, input1, …) and dtypes."""
    out = []
    for i, spec in enumerate(given):
        name = spec.name or (names[i] if names and i < len(names) else f"input{i}")
        out.append(InputSpec(name, spec.shape, spec.dynamic, spec.dtype or default_dtype))
    return out


# -- PyTorch --------------------------------------------------------------------------------------
def _pytorch(path: Path, given, input_dtype, work) -> Source:
    import torch

    module, program = _load_torch(path)
    notes: list[str] = []
    if program is not None:
        inputs, derived = _program_inputs(program, given)
        module = program.module()
    else:
        if not given:
            raise WorkloadError("DataInputConfig is required for a TorchScript model: a TorchScript file records "
                                "no input shapes. Give e.g. {\"input0\": [1, 3, 224, 224]}, or save the model with "
                                "torch.export.save to have its shapes derived.")
        inputs, derived = _named(given, None, input_dtype or "float32"), False

    def run(feeds: dict) -> list[np.ndarray]:
        with torch.no_grad():
            result = module(*(torch.from_numpy(feeds[spec.name]) for spec in inputs))
        return [tensor.detach().numpy() for tensor in _flat(result)]

    example = tuple(torch.from_numpy(_example(spec)) for spec in inputs)
    with torch.no_grad():
        output_names = [f"output{i}" for i in range(len(_flat(module(*example))))]
    onnx_path = work / "source.onnx"
    program_of = (lambda: program) if program is not None else _script_program(module, example)
    if program is None:
        try:
            torch.onnx.export(module, example, str(onnx_path), dynamo=False, opset_version=OPSET,
                              input_names=[spec.name for spec in inputs], output_names=output_names,
                              dynamic_axes=_dynamic_axes(inputs))
        except Exception as err:  # e.g. attention, whose shapes a loaded TorchScript graph no longer knows
            notes.append(f"TorchScript exporter failed ({type(err).__name__}); exported through torch.export "
                         "with static shapes instead")
            _export_program(program_of(), example, inputs, output_names, onnx_path)
    else:
        _export_program(program, example, inputs, output_names, onnx_path)
    return Source("PYTORCH", inputs, output_names, derived, onnx_path, run,
                  f"PyTorch eager ({'TorchScript' if program is None else 'torch.export program'})",
                  program_of, versions("torch", "onnx", "onnxscript"), notes)


def _export_program(program, example, inputs, output_names, onnx_path: Path) -> None:
    import torch

    exported = torch.onnx.export(program, example, dynamo=True, input_names=[spec.name for spec in inputs],
                                 output_names=output_names, verbose=False)
    exported.save(str(onnx_path), external_data=False)


def _load_torch(path: Path):
    """(TorchScript module, None) or (None, ExportedProgram)."""
    import torch

    errors = []
    loaders = [("torch.export", torch.export.load), ("TorchScript", lambda p: torch.jit.load(p, map_location="cpu"))]
    if path.suffix != ".pt2":
        loaders.reverse()
    for label, loader in loaders:
        try:
            loaded = loader(str(path))
        except Exception as err:  # each loader says what it expected; both are reported
            errors.append(f"as {label}: {str(err).splitlines()[0][:200] if str(err) else type(err).__name__}")
            continue
        return (None, loaded) if label == "torch.export" else (loaded.eval(), None)
    raise WorkloadError(f"{path.name} is neither a TorchScript file (torch.jit.save of a traced or scripted model) "
                        f"nor a torch.export program (torch.export.save): " + "; ".join(errors))


def _program_inputs(program, given) -> tuple[list[InputSpec], bool]:
    placeholders = {node.name: node for node in program.graph.nodes if node.op == "placeholder"}
    declared = []
    for name in program.graph_signature.user_inputs:
        value = placeholders[name].meta.get("val")
        if value is None or not hasattr(value, "shape"):
            raise WorkloadError(f"Input {name} of the torch.export program is not a tensor; only tensor inputs "
                                "can be compiled.")
        dims = [int(d) if str(d).lstrip("-").isdigit() else None for d in value.shape]
        declared.append((name, dims, str(value.dtype).removeprefix("torch.")))
    if not given:
        if any(d is None for _, dims, _ in declared for d in dims):
            raise WorkloadError("DataInputConfig is required: the torch.export program has dynamic dimensions.")
        return [InputSpec(name, tuple(dims), (False,) * len(dims), dtype) for name, dims, dtype in declared], True
    if len(given) != len(declared):
        raise WorkloadError(f"DataInputConfig declares {len(given)} input(s); the model takes {len(declared)}.")
    out = []
    for spec, (name, dims, dtype) in zip(given, declared):
        if len(spec.shape) != len(dims) or any(d is not None and d != s for d, s in zip(dims, spec.shape)):
            raise WorkloadError(f"DataInputConfig gives input {spec.name or name} the shape {list(spec.shape)}; "
                                f"the torch.export program takes {['?' if d is None else d for d in dims]}.")
        out.append(InputSpec(spec.name or name, spec.shape, spec.dynamic, spec.dtype or dtype))
    return out, False


def _script_program(module, example) -> Callable[[], Any]:
    """The torch.export program of a TorchScript module, converted on first use (by torch's TorchScript
    converter, which is private and may refuse a module: its error is the reason reported)."""
    converted: list = []

    def program():
        if not converted:
            from torch._export.converter import TS2EPConverter

            converted.append(TS2EPConverter(module, example).convert())
        return converted[0]

    return program


def _dynamic_axes(inputs: list[InputSpec]) -> dict:
    return {spec.name: {i: f"{spec.name}_dim{i}" for i, flag in enumerate(spec.dynamic) if flag}
            for spec in inputs if any(spec.dynamic)}


def _flat(result) -> list:
    if isinstance(result, (list, tuple)):
        return [item for part in result for item in _flat(part)]
    if isinstance(result, dict):
        return [item for part in result.values() for item in _flat(part)]
    return [result]


def _example(spec: InputSpec) -> np.ndarray:
    """An input to trace and export with: random, as zeros can send a model down an unusual path."""
    rng = np.random.default_rng(0)
    if np.dtype(spec.dtype).kind == "f":
        return rng.standard_normal(spec.shape).astype(spec.dtype)
    return np.zeros(spec.shape, dtype=spec.dtype)


# -- ONNX -----------------------------------------------------------------------------------------
def _onnx(path: Path, given, input_dtype, work) -> Source:
    import onnx
    import onnxruntime as ort

    try:
        model = onnx.load(str(path))
    except Exception as err:
        raise WorkloadError(f"{path.name} is not a loadable ONNX model: {err}") from None
    initializers = {init.name for init in model.graph.initializer}
    declared = []
    for value in model.graph.input:
        if value.name in initializers:
            continue
        tensor = value.type.tensor_type
        dims = [d.dim_value if d.HasField("dim_value") and d.dim_value > 0 else None for d in tensor.shape.dim]
        dtype = np.dtype(onnx.helper.tensor_dtype_to_np_dtype(tensor.elem_type)).name
        declared.append((value.name, dims, dtype))
    inputs, derived = _onnx_inputs(declared, given)
    onnx_path = work / "source.onnx"
    onnx.save(model, str(onnx_path))  # external data (if any) folded in
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    options.intra_op_num_threads = 1
    session = ort.InferenceSession(str(onnx_path), options, providers=["CPUExecutionProvider"])
    return Source("ONNX", inputs, [output.name for output in model.graph.output], derived, onnx_path,
                  lambda feeds: session.run(None, feeds),
                  "onnxruntime with graph optimisations disabled (the model as given)", None,
                  versions("onnx", "onnxruntime"))


def _onnx_inputs(declared, given) -> tuple[list[InputSpec], bool]:
    names = [name for name, _, _ in declared]
    if not given:
        dynamic = [f"{name}[{i}]" for name, dims, _ in declared for i, d in enumerate(dims) if d is None]
        if dynamic:
            raise WorkloadError(f"DataInputConfig is required: the ONNX model has dynamic dimensions "
                                f"({', '.join(dynamic)}), so its input shapes cannot be derived.")
        return [InputSpec(name, tuple(dims), (False,) * len(dims), dtype) for name, dims, dtype in declared], True
    by_name = {name: (dims, dtype) for name, dims, dtype in declared}
    if len(given) != len(declared):
        raise WorkloadError(f"DataInputConfig declares {len(given)} input(s); the ONNX model takes "
                            f"{len(declared)}: {', '.join(names)}.")
    out = []
    for i, spec in enumerate(given):
        name = spec.name or names[i]
        if name not in by_name:
            raise WorkloadError(f"DataInputConfig names input {name}, which the ONNX model does not have; its "
                                f"inputs are {', '.join(names)}.")
        dims, dtype = by_name[name]
        if len(spec.shape) != len(dims) or any(d is not None and d != s for d, s in zip(dims, spec.shape)):
            raise WorkloadError(f"DataInputConfig gives input {name} the shape {list(spec.shape)}; the ONNX model "
                                f"takes {['?' if d is None else d for d in dims]}.")
        out.append(InputSpec(name, spec.shape, tuple(d is None for d in dims), dtype))
    return out, False


# -- scikit-learn and XGBoost -------------------------------------------------------------------
def _rows_input(n_features: int, given) -> tuple[list[InputSpec], bool]:
    """Tabular models take one float32 matrix [rows, features]; DataInputConfig may set the rows verified."""
    if not given:
        return [InputSpec("input", (1, n_features), (True, False), "float32")], True
    if len(given) != 1 or len(given[0].shape) != 2 or given[0].shape[1] != n_features:
        raise WorkloadError(f"DataInputConfig must declare one input of shape [rows, {n_features}] for this model.")
    return [InputSpec(given[0].name or "input", given[0].shape, (True, False), "float32")], False


def _sklearn(path: Path, given, input_dtype, work) -> Source:
    import joblib
    from skl2onnx import to_onnx
    from skl2onnx.common.data_types import FloatTensorType

    try:
        model = joblib.load(path)
    except (pickle.UnpicklingError, EOFError, ValueError, KeyError) as err:
        raise WorkloadError(f"{path.name} is not a pickled scikit-learn model: {err}") from None
    if not hasattr(model, "n_features_in_"):
        raise WorkloadError(f"{path.name} holds a {type(model).__name__}, not a fitted scikit-learn estimator.")
    inputs, derived = _rows_input(int(model.n_features_in_), given)
    classifier = hasattr(model, "predict_proba")
    try:
        onnx_model = to_onnx(model, initial_types=[(inputs[0].name, FloatTensorType([None, model.n_features_in_]))],
                             options={id(model): {"zipmap": False}} if classifier else None, target_opset=OPSET)
    except Exception as err:  # skl2onnx names the estimator it has no converter for
        raise WorkloadError(f"skl2onnx cannot convert this {type(model).__name__}: {err}") from None
    onnx_path = work / "source.onnx"
    onnx_path.write_bytes(onnx_model.SerializeToString())
    name = inputs[0].name

    def run(feeds):
        rows = feeds[name]
        if classifier:
            return [np.asarray(model.predict(rows)), np.asarray(model.predict_proba(rows))]
        return [np.asarray(model.predict(rows)).reshape(len(rows), -1)]

    return Source("SKLEARN", inputs, [output.name for output in onnx_model.graph.output], derived, onnx_path, run,
                  f"scikit-learn {type(model).__name__}.predict", None,
                  versions("scikit-learn", "skl2onnx", "onnx"))


def _xgboost(path: Path, given, input_dtype, work) -> Source:
    import onnxmltools
    import xgboost
    from onnxmltools.convert.common.data_types import FloatTensorType

    local = work / ("xgboost-model" + path.suffix if path.suffix in (".json", ".ubj") else "xgboost-model")
    shutil.copyfile(path, local)
    try:
        booster = xgboost.Booster(model_file=str(local))
    except xgboost.core.XGBoostError as err:
        raise WorkloadError(f"{path.name} is not an XGBoost model: {str(err).splitlines()[0]}") from None
    inputs, derived = _rows_input(booster.num_features(), given)
    try:
        onnx_model = onnxmltools.convert_xgboost(
            booster, initial_types=[(inputs[0].name, FloatTensorType([None, booster.num_features()]))])
    except Exception as err:
        raise WorkloadError(f"onnxmltools cannot convert this XGBoost model: {err}") from None
    onnx_path = work / "source.onnx"
    onnx_path.write_bytes(onnx_model.SerializeToString())
    outputs = [output.name for output in onnx_model.graph.output]
    name = inputs[0].name

    def run(feeds):
        predicted = booster.predict(xgboost.DMatrix(feeds[name]))
        if outputs == ["variable"]:
            return [predicted.reshape(len(predicted), -1)]
        probabilities = np.stack([1 - predicted, predicted], axis=1) if predicted.ndim == 1 else predicted
        return [probabilities.argmax(axis=1), probabilities]

    return Source("XGBOOST", inputs, outputs, derived, onnx_path, run, "XGBoost Booster.predict", None,
                  versions("xgboost-cpu", "xgboost", "onnxmltools", "onnx"))
