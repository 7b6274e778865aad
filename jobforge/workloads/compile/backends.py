"""The backends a compiled artifact can be built for, and which of them apply to a job.

* ``onnxruntime``: the ONNX graph optimised offline (every optimisation, hardware-specific ones included, for
  targets served on this host; the portable levels elsewhere), in fp32, fp16, or int8 (dynamic or static QDQ
  quantisation);
* ``openvino``: OpenVINO IR for x86 and ARM CPUs and Intel graphics, executed in fp32, fp16 or bf16;
* ``aotinductor``: a torch.export program compiled ahead of time by Inductor into a ``.pt2`` package (PyTorch
  models, fp32, on targets this host can build native code for).

Each builder writes its files into a folder and returns what the manifest says about them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from jobforge.workloads.compile.frameworks import TREE_FRAMEWORKS
from jobforge.workloads.compile.options import Options
from jobforge.workloads.compile.sources import Source, versions
from jobforge.workloads.compile.targets import Target, host_tuned

ORDER = ("onnxruntime", "openvino", "aotinductor")  # the preference where candidates cannot be timed


@dataclass
class Built:
    backend: str
    folder: Path
    files: dict  # role → file name in the folder ("model" is the one the runtime loads)
    settings: dict  # the backend's section of the manifest
    versions: dict
    notes: list[str] = field(default_factory=list)

    def runs_on_accelerator(self) -> bool:
        """Whether loading it here runs it on the target's accelerator (else on this host's CPU)."""
        return self.settings.get("device") == "cuda"


def applicable(framework: str, target: Target, options: Options) -> dict[str, str | None]:
    """Backend → None where it applies, else the reason it does not."""
    reasons = {
        "onnxruntime": _onnxruntime_reason(target, options),
        "openvino": _openvino_reason(framework, target, options),
        "aotinductor": _aotinductor_reason(framework, target, options),
    }
    if options.backend != "auto":
        reasons = {name: reason if name == options.backend else "not requested (CompilerOptions backend)"
                   for name, reason in reasons.items()}
    return reasons


def _onnxruntime_reason(target, options) -> str | None:
    if target.accelerator == "INTEL_GRAPHICS":
        return "onnxruntime's OpenVINO execution provider is not installed; Intel graphics are served by openvino"
    if options.precision == "bf16":
        return "onnxruntime has no bf16 kernels for these graphs on CPU"
    return None


def _openvino_reason(framework, target, options) -> str | None:
    if framework in TREE_FRAMEWORKS:
        return "OpenVINO does not run the ONNX-ML operators that scikit-learn and XGBoost models convert to"
    if target.accelerator == "NVIDIA":
        return "OpenVINO does not run on NVIDIA GPUs"
    if target.os == "ANDROID" or target.arch not in ("X86_64", "ARM64"):
        return f"OpenVINO runs on x86-64 and ARM64 Linux and Windows, not on {target.os} {target.arch}"
    if options.precision == "int8":
        return "int8 with OpenVINO needs NNCF's post-training quantisation, which is not installed"
    return None


def _aotinductor_reason(framework, target, options) -> str | None:
    if framework != "PYTORCH":
        return "AOTInductor compiles PyTorch programs only"
    if options.precision != "fp32":
        return f"jobforge compiles AOTInductor packages in fp32 only, not {options.precision}"
    if target.accelerator == "NVIDIA":
        import torch

        if not torch.cuda.is_available():
            return "AOTInductor for CUDA needs a CUDA build of torch and a GPU on this host to compile and verify"
        return None
    if not target.runs_on_host():
        return f"AOTInductor builds native code for this host ({target.arch} Linux only), not for {target.name}"
    return None


def build(backend: str, source: Source, target: Target, options: Options, folder: Path,
          calibration: list[dict]) -> Built:
    folder.mkdir(parents=True, exist_ok=True)
    builder = {"onnxruntime": _onnxruntime, "openvino": _openvino, "aotinductor": _aotinductor}[backend]
    return builder(source, target, options, folder, calibration)


# -- onnxruntime --------------------------------------------------------------------------------
def ort_level(target: Target, tuned: bool) -> str:
    if target.accelerator == "NVIDIA":
        return "ORT_ENABLE_BASIC"  # only standard-operator rewrites: every execution provider can run the result
    return "ORT_ENABLE_ALL" if tuned else "ORT_ENABLE_EXTENDED"  # ALL adds CPU-specific layouts (NCHWc)


def _onnxruntime(source, target, options, folder, calibration) -> Built:
    import onnx
    import onnxruntime as ort

    staged, notes = folder / "staged.onnx", []
    if options.precision == "fp16":
        from onnxconverter_common import float16

        onnx.save(float16.convert_float_to_float16(onnx.load(str(source.onnx_path)), keep_io_types=True),
                  str(staged))
    elif options.precision == "int8":
        _quantize(source, options, staged, calibration, notes)
    else:
        staged.write_bytes(source.onnx_path.read_bytes())
    level = ort_level(target, host_tuned(target, options.mattr))
    session_options = ort.SessionOptions()
    session_options.graph_optimization_level = getattr(ort.GraphOptimizationLevel, level)
    session_options.optimized_model_filepath = str(folder / "model.onnx")
    ort.InferenceSession(str(staged), session_options, providers=["CPUExecutionProvider"])
    staged.unlink()
    providers = ["CUDAExecutionProvider", "CPUExecutionProvider"] if target.accelerator == "NVIDIA" \
        else ["CPUExecutionProvider"]
    if target.accelerator == "NVIDIA":
        providers.insert(0, "TensorrtExecutionProvider")
    return Built("onnxruntime", folder, {"model": "model.onnx"},
                 {"providers": providers, "optimization_level": level, "precision": options.precision,
                  "quantization": options.quantization},
                 versions("onnxruntime", "onnx", "onnxconverter-common"), notes)


def _quantize(source, options, staged: Path, calibration, notes) -> None:
    from onnxruntime.quantization import (CalibrationDataReader, QuantFormat, QuantType, quantize_dynamic,
                                          quantize_static)
    from onnxruntime.quantization.shape_inference import quant_pre_process

    prepared = staged.with_name("prepared.onnx")
    quant_pre_process(str(source.onnx_path), str(prepared), skip_symbolic_shape=True)
    if options.quantization == "dynamic":
        quantize_dynamic(str(prepared), str(staged), weight_type=QuantType.QInt8)
        notes.append("int8 weights, activations quantised dynamically at run time")
    else:
        class Feeds(CalibrationDataReader):
            def __init__(self):
                self.items = iter(calibration)

            def get_next(self):
                return next(self.items, None)

        quantize_static(str(prepared), str(staged), Feeds(), quant_format=QuantFormat.QDQ, per_channel=True,
                        activation_type=QuantType.QInt8, weight_type=QuantType.QInt8)
        notes.append(f"int8 weights and activations, calibrated on {len(calibration)} input(s)")
    prepared.unlink()


# -- OpenVINO -------------------------------------------------------------------------------------
OV_PRECISION = {"fp32": "f32", "fp16": "f16", "bf16": "bf16"}


def _openvino(source, target, options, folder, calibration) -> Built:
    import openvino as ov

    model = ov.convert_model(str(source.onnx_path))
    # Weights stay fp32 for fp32 inference: OpenVINO's default fp16 weight compression changes the results.
    ov.save_model(model, str(folder / "model.xml"), compress_to_fp16=options.precision != "fp32")
    device = "GPU" if target.accelerator == "INTEL_GRAPHICS" else "CPU"
    settings = {"device": device, "inference_precision": OV_PRECISION[options.precision]}
    notes = []
    if device == "CPU" and target.runs_on_host():
        # A hint is a request: this CPU may execute another precision (bf16 where it lacks fp16 arithmetic).
        compiled = ov.Core().compile_model(model, "CPU", {"INFERENCE_PRECISION_HINT": settings["inference_precision"]})
        executed = compiled.get_property("INFERENCE_PRECISION_HINT").to_string()
        notes.append(f"this host's CPU executes the {settings['inference_precision']} hint in {executed}")
    return Built("openvino", folder, {"model": "model.xml", "weights": "model.bin"}, settings, versions("openvino"),
                 notes)


# -- AOTInductor ----------------------------------------------------------------------------------
def _aotinductor(source, target, options, folder, calibration) -> Built:
    import torch
    from torch._inductor import aoti_compile_and_package

    program, device = source.program(), "cuda" if target.accelerator == "NVIDIA" else "cpu"
    if device == "cuda":  # the program is exported again with its weights and example inputs on the GPU
        example = tuple(torch.from_numpy(array).to(device) for array in calibration[0].values())
        program = torch.export.export(program.module().to(device), example)
    aoti_compile_and_package(program, package_path=str(folder / "model.pt2"))
    return Built("aotinductor", folder, {"model": "model.pt2"}, {"device": device}, versions("torch"))
