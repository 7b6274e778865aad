"""Which model server a model gets.

Its container image, when it names one, is one of SageMaker's framework images (scikit-learn, XGBoost,
PyTorch, Hugging Face), whose contract jobforge's own servers follow; any other image is refused with the
reason (endpoints run no container images). Then what the model's
``model.tar.gz`` holds decides (``server_kind``): the script contract (``code/inference.py``, or
``SAGEMAKER_PROGRAM``) first, then a compiled artifact, an ONNX graph, a Hugging Face model, an XGBoost
model, a scikit-learn model.
"""

from __future__ import annotations

import re
from pathlib import Path

# SageMaker's framework image repositories → the framework whose contract they serve
FRAMEWORK_IMAGES = {
    "sagemaker-scikit-learn": "sklearn", "sagemaker-xgboost": "xgboost", "xgboost": "xgboost",
    "pytorch-inference": "pytorch", "huggingface-pytorch-inference": "huggingface",
    "huggingface-pytorch-tgi-inference": "huggingface", "tgi-inference": "huggingface",
    "djl-inference": "huggingface",
}
UNSERVED_FRAMEWORKS = {"tensorflow-inference": "TensorFlow", "huggingface-tensorflow-inference": "TensorFlow",
                       "mxnet-inference": "MXNet", "sagemaker-sparkml-serving": "Spark ML"}
_REPOSITORY = re.compile(r"^(?:[^/]+\.amazonaws\.com(?:\.cn)?/)?(?P<repository>[^:@]+)")
KINDS = ("script", "compiled", "onnx", "text-generation", "xgboost", "sklearn")
XGBOOST_NAMES, XGBOOST_SUFFIXES = ("xgboost-model",), (".ubj", ".bst", ".xgb")
SKLEARN_NAMES, SKLEARN_SUFFIXES = ("model.joblib", "model.pkl", "model.pickle"), (".joblib", ".pkl", ".pickle")


class Unservable(ValueError):
    """A model jobforge cannot serve; the message says why."""


def image_framework(image: str | None) -> str | None:
    """The framework of a SageMaker framework image (None without an image); Unservable for any other."""
    if not image:
        return None
    found = _REPOSITORY.match(image)
    repository = found.group("repository").rsplit("/", 1)[-1] if found else image
    if repository in FRAMEWORK_IMAGES:
        return FRAMEWORK_IMAGES[repository]
    if repository in UNSERVED_FRAMEWORKS:
        raise Unservable(f"The image {image} serves {UNSERVED_FRAMEWORKS[repository]} models, which jobforge's "
                         "model servers do not run (no such framework is installed beside jobforge).")
    raise Unservable(f"The image {image} is not one of SageMaker's framework images "
                     f"({', '.join(sorted(FRAMEWORK_IMAGES))}): jobforge serves models with its own model servers, "
                     "which follow those images' contracts, and runs no other image for an endpoint (not even with "
                     "--container-engine, which Lambda functions and AgentCore runtimes use). Leave Image out, or "
                     "name a framework image.")


def _first(model_dir: Path, names: tuple[str, ...], suffixes: tuple[str, ...]) -> Path | None:
    for name in names:
        if (model_dir / name).is_file():
            return model_dir / name
    return next((path for path in sorted(model_dir.iterdir()) if path.suffix in suffixes and path.is_file()), None)


def onnx_file(model_dir: Path) -> Path | None:
    return _first(model_dir, ("model.onnx",), (".onnx",))


def xgboost_file(model_dir: Path) -> Path | None:
    return _first(model_dir, XGBOOST_NAMES, XGBOOST_SUFFIXES)


def sklearn_file(model_dir: Path) -> Path | None:
    return _first(model_dir, SKLEARN_NAMES, SKLEARN_SUFFIXES)


def is_text_model(model_dir: Path) -> bool:
    """A Hugging Face model: its config.json and weights."""
    return (model_dir / "config.json").is_file() and any(
        any(model_dir.glob(pattern)) for pattern in ("*.safetensors", "pytorch_model*.bin"))


def program(environment: dict) -> str:
    return environment.get("SAGEMAKER_PROGRAM") or "inference.py"


def server_kind(model_dir: Path, code_dir: Path | None, framework: str | None, environment: dict) -> str:
    """The model server for an unpacked model; Unservable when none fits."""
    if code_dir is not None and (code_dir / program(environment)).is_file():
        return "script"
    if "SAGEMAKER_PROGRAM" in environment:
        raise Unservable(f"SAGEMAKER_PROGRAM names {program(environment)}, which is not in the model's code "
                         "directory.")
    if (model_dir / "manifest.json").is_file():
        return "compiled"
    if onnx_file(model_dir) is not None:
        return "onnx"
    if is_text_model(model_dir):
        return "text-generation"
    if xgboost_file(model_dir) is not None:
        return "xgboost"
    if sklearn_file(model_dir) is not None:
        return "sklearn" if framework != "xgboost" else "xgboost"
    raise Unservable("The model archive holds nothing jobforge can serve: code/inference.py (the script "
                     "contract), a compiled model (manifest.json), an ONNX graph (*.onnx), a Hugging Face model "
                     "(config.json with weights), an XGBoost model (xgboost-model, *.ubj, *.bst) or a "
                     "scikit-learn model (model.joblib, *.pkl).")


def load(kind: str, model_dir: Path, code_dir: Path | None, framework: str | None, environment: dict,
         threads: int):
    """The predictor of a model (inside the model server)."""
    from jobforge.workloads.serving import onnx_model, script, sklearn_model, text_generation, xgboost_model

    if kind == "script":
        return script.load(model_dir, code_dir, program(environment), framework or "sklearn")
    if kind == "compiled":
        return onnx_model.load_compiled(model_dir, threads)
    if kind == "onnx":
        return onnx_model.load_onnx(model_dir, threads)
    if kind == "text-generation":
        return text_generation.load(model_dir, threads)
    if kind == "xgboost":
        return xgboost_model.load(model_dir, threads)
    return sklearn_model.load(model_dir, threads)
