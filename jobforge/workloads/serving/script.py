"""The framework containers' script contract: ``code/inference.py`` (or ``SAGEMAKER_PROGRAM``) with
``model_fn(model_dir)``, ``input_fn(request_body, content_type)``, ``predict_fn(data, model)`` and
``output_fn(prediction, accept)``, or one ``transform_fn(model, body, content_type, accept)``; each may take
a trailing ``context`` argument, as SageMaker's inference toolkit allows. A function the script leaves out
is the toolkit's default for the framework: ``input_fn`` decodes JSON, CSV or .npy into an array,
``predict_fn`` calls ``model.predict`` (scikit-learn, XGBoost) or the module under ``torch.no_grad`` (PyTorch),
``output_fn`` encodes the prediction for the accept type. ``output_fn`` may return the body alone or
``(body, content_type)``.

The script is the user's code: it is imported only inside the confined model server.
"""

from __future__ import annotations

import importlib.util
import inspect
import sys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from jobforge.workloads.serving import codecs
from jobforge.workloads.serving.predictor import ClientError

DEFAULT_PROGRAM = "inference.py"


@dataclass
class Context:
    """What SageMaker's toolkit passes as ``context``: the model's directory and the server's properties."""

    model_dir: str
    system_properties: dict = field(default_factory=dict)


def _call(fn, context: Context, *args):
    accepts = len(inspect.signature(fn).parameters)
    return fn(*args, context) if accepts > len(args) else fn(*args)


def _default_input(body: bytes, content_type: str | None):
    try:
        return codecs.decode(body, content_type)
    except codecs.UnsupportedType as err:
        raise ClientError(str(err), 415) from None
    except ValueError as err:
        raise ClientError(f"The request body cannot be read as {codecs.base_type(content_type)}: {err}") from None


def _default_predict(framework: str):
    if framework != "pytorch":
        return lambda data, model: model.predict(data)

    def predict(data, model):
        import torch

        device = next(iter(model.parameters()), torch.empty(0)).device if hasattr(model, "parameters") else "cpu"
        with torch.no_grad():
            result = model(torch.as_tensor(np.asarray(data), device=device))
        return result.detach().cpu().numpy() if hasattr(result, "detach") else result

    return predict


def _default_output(prediction, accept: str | None):
    try:
        return codecs.encode(prediction, accept)
    except codecs.UnsupportedType as err:
        raise ClientError(str(err), 406) from None


class ScriptPredictor:
    def __init__(self, model_dir: Path, code_dir: Path, program: str, framework: str):
        self.context = Context(str(model_dir), {"model_dir": str(model_dir)})
        script = code_dir / program
        if (code_dir / "requirements.txt").is_file():
            print(f"{code_dir.name}/requirements.txt is not installed: the model server runs with the packages "
                  "installed beside jobforge.", flush=True)
        sys.path.insert(0, str(code_dir))
        spec = importlib.util.spec_from_file_location(Path(program).stem, script)
        module = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = module
        spec.loader.exec_module(module)
        self.module = module
        model_fn = getattr(module, "model_fn", None)
        if model_fn is None:
            raise RuntimeError(f"{program} defines no model_fn(model_dir): the script contract needs one to load "
                               "the model.")
        self.model = _call(model_fn, self.context, str(model_dir))
        self.transform_fn = getattr(module, "transform_fn", None)
        self.input_fn = getattr(module, "input_fn", None)
        self.predict_fn = getattr(module, "predict_fn", None) or _default_predict(framework)
        self.output_fn = getattr(module, "output_fn", None)

    def invoke(self, body: bytes, content_type: str | None, accept: str | None) -> tuple[bytes, str]:
        content_type = content_type or codecs.JSON
        accept = accept if accept and accept != "*/*" else codecs.JSON
        if self.transform_fn is not None:
            result = _call(self.transform_fn, self.context, self.model, body, content_type, accept)
        else:
            data = _call(self.input_fn, self.context, body, content_type) if self.input_fn \
                else _default_input(body, content_type)
            prediction = _call(self.predict_fn, self.context, data, self.model)
            result = _call(self.output_fn, self.context, prediction, accept) if self.output_fn \
                else _default_output(prediction, accept)
        answer, kind = result if isinstance(result, tuple) else (result, accept)
        return answer.encode() if isinstance(answer, str) else bytes(answer), kind

    def stream(self, body: bytes, content_type: str | None, accept: str | None):
        answer, kind = self.invoke(body, content_type, accept)
        return iter([answer]), kind


def load(model_dir: Path, code_dir: Path, program: str, framework: str) -> ScriptPredictor:
    return ScriptPredictor(model_dir, code_dir, program, framework)
