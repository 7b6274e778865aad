"""Payloads to arrays and back, by content type, as SageMaker's inference toolkit decodes and encodes them:
``application/json`` (nested lists), ``text/csv`` (rows of numbers) and ``application/x-npy``."""

from __future__ import annotations

import io
import json

import numpy as np

JSON, CSV, NPY = "application/json", "text/csv", "application/x-npy"
SUPPORTED = (JSON, CSV, NPY)


class UnsupportedType(ValueError):
    """A content type or accept type this server cannot handle (answered 415 or 406)."""


def base_type(content_type: str | None, default: str = JSON) -> str:
    return (content_type or default).split(";")[0].strip().lower() or default


def decode(body: bytes, content_type: str | None) -> np.ndarray:
    kind = base_type(content_type)
    if kind == JSON:
        value = json.loads(body)
        if isinstance(value, dict) and "instances" in value:  # TensorFlow Serving's form, which clients also send
            value = value["instances"]
        return np.asarray(value)
    if kind == CSV:
        text = body.decode("utf-8").strip()
        rows = [[float(cell) for cell in line.split(",")] for line in text.splitlines() if line.strip()]
        return np.asarray(rows, dtype=np.float32)
    if kind == NPY:
        return np.load(io.BytesIO(body), allow_pickle=False)
    raise UnsupportedType(f"Content type {kind} is not supported by this model server; supported: "
                          f"{', '.join(SUPPORTED)}.")


def encode(value, accept: str | None) -> tuple[bytes, str]:
    kind = base_type(accept)
    if kind in ("*/*", ""):
        kind = JSON
    array = value if isinstance(value, np.ndarray) else None
    if kind == JSON:
        return json.dumps(_plain(value)).encode(), JSON
    if kind == CSV:
        array = np.asarray(value) if array is None else array
        rows = array.reshape(len(array), -1) if array.ndim > 1 else array.reshape(-1, 1)
        return ("\n".join(",".join(_number(cell) for cell in row) for row in rows) + "\n").encode(), CSV
    if kind == NPY:
        buffer = io.BytesIO()
        np.save(buffer, np.asarray(value), allow_pickle=False)
        return buffer.getvalue(), NPY
    raise UnsupportedType(f"Accept type {kind} is not supported by this model server; supported: "
                          f"{', '.join(SUPPORTED)}.")


def _number(cell) -> str:
    return repr(cell.item()) if hasattr(cell, "item") else str(cell)


def _plain(value):
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, (list, tuple)):
        return [_plain(item) for item in value]
    if isinstance(value, dict):
        return {str(key): _plain(item) for key, item in value.items()}
    return value
