"""Which InputConfig.Framework values jobforge compiles, what their tarballs hold, and why the others are refused."""

from __future__ import annotations

# Framework → the model file suffixes its tarball may hold (exactly one model file).
MODEL_FILES = {
    "PYTORCH": (".pt", ".pth", ".pt2"),  # TorchScript (traced and saved) or a torch.export program
    "ONNX": (".onnx",),
    "SKLEARN": (".joblib", ".pkl", ".pickle"),
    "XGBOOST": (".model", ".json", ".ubj", ".bst"),
}
REFUSED = {
    "TENSORFLOW": "TensorFlow models need tensorflow and tf2onnx to convert, and this server does not install "
                  "them (TensorFlow alone is over 500 MB)",
    "KERAS": "Keras .h5 models need tensorflow and tf2onnx to convert, and this server does not install them "
             "(TensorFlow alone is over 500 MB)",
    "TFLITE": "TensorFlow Lite models need tensorflow and tf2onnx to convert, and this server does not install them",
    "MXNET": "Apache MXNet is retired (moved to the Apache Attic in 2023) and no maintained converter for it exists",
    "DARKNET": "no maintained converter from Darknet .cfg/.weights to a compilable graph exists",
}
# "Only supported for the MXNet, PyTorch, TensorFlow and TensorFlow Lite frameworks." (the API's documentation)
TAKE_VERSION = ("MXNET", "PYTORCH", "TENSORFLOW", "TFLITE")
PYTORCH_MAJORS = ("1", "2")  # TorchScript files from PyTorch 1.x and 2.x load in the installed torch
# scikit-learn and XGBoost models convert to ONNX-ML operators, which only onnxruntime runs, in fp32.
TREE_FRAMEWORKS = ("SKLEARN", "XGBOOST")


def check(framework: str, version: str | None, precision: str, backend: str) -> None:
    """Raise ValueError with the reason when the framework, its version or the options cannot be compiled."""
    if framework in REFUSED:
        raise ValueError(f"Framework {framework} is not supported by jobforge: {REFUSED[framework]}. "
                         f"Supported: {', '.join(MODEL_FILES)}.")
    if version is not None:
        if framework not in TAKE_VERSION:
            raise ValueError(f"FrameworkVersion is only supported for the MXNET, PYTORCH, TENSORFLOW and TFLITE "
                             f"frameworks, not for {framework}.")
        if framework == "PYTORCH" and version.split(".")[0] not in PYTORCH_MAJORS:
            raise ValueError(f"FrameworkVersion {version} is not a PyTorch version jobforge can load "
                             f"(PyTorch 1.x and 2.x).")
    if framework in TREE_FRAMEWORKS:
        if precision != "fp32":
            raise ValueError(f"{framework} models compile in fp32 only (their ONNX-ML operators have no {precision} "
                             "kernels).")
        if backend not in ("auto", "onnxruntime"):
            raise ValueError(f"{framework} models compile with onnxruntime only (it alone runs ONNX-ML operators).")
    if backend == "aotinductor" and framework != "PYTORCH":
        raise ValueError("The aotinductor backend compiles PYTORCH models only.")
