"""DataInputConfig: the input names, shapes and dtypes of a model, in every form SageMaker Neo documents.

Accepted (as JSON, or as a Python literal with single quotes, read without ``eval``):

* ``{"input0": [1, 3, 224, 224]}``: names and shapes;
* ``[[1, 3, 224, 224], [1, 10]]`` or ``[1, 3, 224, 224]``: shapes of positional inputs;
* ``{"input_1": {"shape": [1, 224, 224, 3]}}`` (CoreML style) where a dimension may be a range
  ``"1..10"`` (a dynamic dimension, verified at its lower bound unless ``default_shape`` says otherwise) and
  ``shape`` may be a list of shapes (enumerated shapes, verified at ``default_shape`` or the first);
* ``"dtype"`` beside ``"shape"`` in such an entry, and a list of such entries for positional inputs.
"""

from __future__ import annotations

import ast
import json
import re
from dataclasses import dataclass

DTYPES = ("float32", "float16", "float64", "int64", "int32", "int8", "uint8", "bool")
# CompilerOptions "dtype" for PyTorch takes these spellings (SageMaker documents float32/float/int64/long).
DTYPE_ALIASES = {"float": "float32", "long": "int64", "int": "int32", "half": "float16", "double": "float64"}
RANGE = re.compile(r"^\s*(\d+)\s*\.\.\s*(\d+|-1)\s*$")
MAX_INPUTS = 64
MAX_RANK = 8


class ShapeError(ValueError):
    """DataInputConfig that cannot be read; the message says why."""


@dataclass(frozen=True)
class InputSpec:
    name: str | None  # None for positional forms: the framework names it (PyTorch: input0, input1, …)
    shape: tuple[int, ...]  # the concrete shape inputs are generated with for verification and timing
    dynamic: tuple[bool, ...]  # per dimension: exported as a dynamic dimension
    dtype: str | None = None  # None: the framework's default

    def to_json(self) -> dict:
        out = {"name": self.name, "shape": list(self.shape), "dtype": self.dtype}
        if any(self.dynamic):
            out["dynamic_axes"] = [i for i, flag in enumerate(self.dynamic) if flag]
        return out

    @classmethod
    def from_json(cls, data: dict) -> "InputSpec":
        dynamic = set(data.get("dynamic_axes", ()))
        return cls(data["name"], tuple(data["shape"]), tuple(i in dynamic for i in range(len(data["shape"]))),
                   data.get("dtype"))


def normalize_dtype(value: str) -> str:
    name = DTYPE_ALIASES.get(str(value).lower(), str(value).lower())
    if name not in DTYPES:
        raise ShapeError(f"dtype {value!r} is not supported; use one of {', '.join(DTYPES)}.")
    return name


def read_literal(text: str, what: str):
    """JSON first, then a Python literal (single quotes, tuples); never evaluated as code."""
    try:
        return json.loads(text)
    except ValueError:
        pass
    try:
        return ast.literal_eval(text.strip())
    except (ValueError, SyntaxError, MemoryError, RecursionError):
        raise ShapeError(f"{what} is neither JSON nor a Python literal: {text[:200]!r}") from None


def parse(text: str) -> list[InputSpec]:
    """The inputs a DataInputConfig string declares, in order."""
    value = read_literal(text, "DataInputConfig")
    if isinstance(value, dict):
        entries = [(_name(key), item) for key, item in value.items()]
    elif isinstance(value, (list, tuple)):
        if value and all(_is_dim(item) for item in value):
            entries = [(None, list(value))]  # one shape, for a single input
        else:
            entries = [(None, item) for item in value]
    else:
        raise ShapeError("DataInputConfig must be a dictionary of input names to shapes, or a list of shapes.")
    if not entries:
        raise ShapeError("DataInputConfig declares no input.")
    if len(entries) > MAX_INPUTS:
        raise ShapeError(f"DataInputConfig declares {len(entries)} inputs; at most {MAX_INPUTS} are supported.")
    return [_entry(name, item) for name, item in entries]


def _name(key) -> str:
    if not isinstance(key, str) or not key:
        raise ShapeError(f"Input name {key!r} in DataInputConfig must be a non-empty string.")
    return key


def _is_dim(item) -> bool:
    return isinstance(item, int) and not isinstance(item, bool) or isinstance(item, str) and bool(RANGE.match(item))


def _entry(name: str | None, item) -> InputSpec:
    label = f"input {name!r}" if name else "a positional input"
    if isinstance(item, dict):
        unknown = set(item) - {"shape", "dtype", "default_shape"}
        if unknown or "shape" not in item:
            raise ShapeError(f"The entry of {label} takes the keys shape, dtype and default_shape; got "
                             f"{', '.join(map(str, item))}.")
        dtype = normalize_dtype(item["dtype"]) if "dtype" in item else None
        shape = item["shape"]
        if isinstance(shape, (list, tuple)) and shape and all(isinstance(s, (list, tuple)) for s in shape):
            return _enumerated(name, label, [list(s) for s in shape], item.get("default_shape"), dtype)
        return _shape(name, label, shape, item.get("default_shape"), dtype)
    return _shape(name, label, item, None, None)


def _enumerated(name, label, shapes: list, default, dtype) -> InputSpec:
    """Enumerated shapes: dimensions that differ between them are dynamic; verified at the default shape."""
    concrete = [_shape(name, label, shape, None, dtype) for shape in shapes]
    if len({len(spec.shape) for spec in concrete}) != 1:
        raise ShapeError(f"The enumerated shapes of {label} differ in rank.")
    chosen = _shape(name, label, default, None, dtype) if default is not None else concrete[0]
    if chosen.shape not in [spec.shape for spec in concrete]:
        raise ShapeError(f"default_shape of {label} is not one of its enumerated shapes.")
    dynamic = tuple(len({spec.shape[i] for spec in concrete}) > 1 for i in range(len(chosen.shape)))
    return InputSpec(name, chosen.shape, dynamic, dtype)


def _shape(name, label, shape, default, dtype) -> InputSpec:
    if not isinstance(shape, (list, tuple)) or not shape:
        raise ShapeError(f"The shape of {label} must be a non-empty list of dimensions; got {shape!r}.")
    if len(shape) > MAX_RANK:
        raise ShapeError(f"The shape of {label} has {len(shape)} dimensions; at most {MAX_RANK} are supported.")
    dims, dynamic = [], []
    for dim in shape:
        if isinstance(dim, int) and not isinstance(dim, bool) and dim > 0:
            dims.append(dim)
            dynamic.append(False)
            continue
        match = RANGE.match(dim) if isinstance(dim, str) else None
        if match is None:
            raise ShapeError(f"The shape of {label} has dimension {dim!r}; a dimension is a positive integer or "
                             f"a range such as \"1..10\".")
        low, high = int(match[1]), int(match[2])
        if low < 1 or (high != -1 and high < low):
            raise ShapeError(f"The range {dim!r} in the shape of {label} is empty or starts below 1.")
        dims.append(low)
        dynamic.append(True)
    if default is not None:
        chosen = _shape(name, label, default, None, dtype)
        if len(chosen.shape) != len(dims) or any(
                not flexible and size != want for size, want, flexible in zip(chosen.shape, dims, dynamic)):
            raise ShapeError(f"default_shape of {label} does not fit its shape.")
        dims = list(chosen.shape)
    return InputSpec(name, tuple(dims), tuple(dynamic), dtype)


def dumps(specs: list[InputSpec]) -> str:
    """The inputs as a DataInputConfig in the plain form (what DerivedDataInputConfig reports)."""
    return json.dumps({spec.name: list(spec.shape) for spec in specs})
