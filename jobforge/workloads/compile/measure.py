"""Verification and timing: the original and each compiled artifact on the same inputs.

Inputs are generated from the declared shapes (seeded, so a job is reproducible) unless the job gives its
own in the calibration prefix. The error of an artifact is its largest absolute difference from the original,
relative to the original's largest absolute output (at least 1); class labels must match exactly.
"""

from __future__ import annotations

import statistics
import time
from pathlib import Path
from typing import Callable

import numpy as np

from jobforge.execution.context import JobStopped, WorkloadError
from jobforge.workloads.compile.shapes import InputSpec

SEED = 20240607
GENERATED_FEEDS = 2
CALIBRATION_LIMIT = 64


def generated(inputs: list[InputSpec], count: int = GENERATED_FEEDS) -> list[dict]:
    rng = np.random.default_rng(SEED)
    return [{spec.name: _array(rng, spec) for spec in inputs} for _ in range(count)]


def _array(rng, spec: InputSpec) -> np.ndarray:
    dtype = np.dtype(spec.dtype)
    if dtype.kind == "f":
        return rng.standard_normal(spec.shape).astype(dtype)
    if dtype.kind == "b":
        return rng.integers(0, 2, spec.shape).astype(bool)
    return rng.integers(0, 10, spec.shape).astype(dtype)  # small non-negative values: valid ids, counts, indices


def user_feeds(folder: Path, inputs: list[InputSpec]) -> list[dict]:
    """Feeds from ``.npz`` files (arrays named as the inputs) or ``.npy`` files (single-input models)."""
    files = sorted(p for p in folder.rglob("*") if p.suffix in (".npz", ".npy"))[:CALIBRATION_LIMIT]
    if not files:
        raise WorkloadError("The calibration prefix holds no .npz or .npy files.")
    feeds = []
    for path in files:
        if path.suffix == ".npy":
            if len(inputs) != 1:
                raise WorkloadError(f"{path.name}: .npy calibration files suit single-input models; this model "
                                    f"takes {len(inputs)} inputs, so give .npz files with arrays named "
                                    f"{', '.join(spec.name for spec in inputs)}.")
            arrays = {inputs[0].name: np.load(path, allow_pickle=False)}
        else:
            with np.load(path, allow_pickle=False) as data:
                arrays = {name: data[name] for name in data.files}
        feeds.append({spec.name: _checked(path, spec, arrays) for spec in inputs})
    return feeds


def _checked(path: Path, spec: InputSpec, arrays: dict) -> np.ndarray:
    if spec.name not in arrays:
        raise WorkloadError(f"{path.name} has no array named {spec.name}.")
    array = arrays[spec.name]
    if array.ndim != len(spec.shape) or any(
            not flexible and size != want for size, want, flexible in zip(array.shape, spec.shape, spec.dynamic)):
        raise WorkloadError(f"{path.name}: {spec.name} has shape {list(array.shape)}; the model takes "
                            f"{list(spec.shape)}.")
    return array.astype(spec.dtype, copy=False)


def compare(reference: list[list[np.ndarray]], compiled: list[list[np.ndarray]]) -> dict:
    """Differences over every feed and output: max_abs_diff, max_rel_diff (to the largest output), error."""
    max_abs, scale, label_mismatches = 0.0, 0.0, 0
    for expected_outputs, got_outputs in zip(reference, compiled, strict=True):
        if len(expected_outputs) != len(got_outputs):
            raise WorkloadError(f"The compiled model gives {len(got_outputs)} outputs; the original gives "
                                f"{len(expected_outputs)}.")
        for expected, got in zip(expected_outputs, got_outputs):
            expected, got = np.asarray(expected), np.asarray(got)
            if expected.size != got.size:
                raise WorkloadError(f"A compiled output has shape {list(got.shape)}; the original's has "
                                    f"{list(expected.shape)}.")
            got = got.reshape(expected.shape)
            if expected.dtype.kind in "iub":
                label_mismatches += int(np.count_nonzero(expected != got))
                continue
            expected, got = expected.astype(np.float64), got.astype(np.float64)
            max_abs = max(max_abs, float(np.max(np.abs(expected - got), initial=0.0)))
            scale = max(scale, float(np.max(np.abs(expected), initial=0.0)))
    return {"max_abs_diff": max_abs, "max_rel_diff": max_abs / scale if scale else max_abs,
            "error": max_abs / max(scale, 1.0), "label_mismatches": label_mismatches}


def latency(run: Callable[[dict], object], feed: dict, runs: int, should_stop: Callable[[], bool]) -> dict:
    """Median and p90 in microseconds over ``runs`` calls, after a warm-up that is not counted."""
    for _ in range(max(3, runs // 10)):
        run(feed)
    samples = []
    for i in range(runs):
        if i % 50 == 0 and should_stop():
            raise JobStopped()
        start = time.perf_counter_ns()
        run(feed)
        samples.append((time.perf_counter_ns() - start) / 1000)
    samples.sort()
    return {"median_us": round(statistics.median(samples), 2),
            "p90_us": round(samples[min(len(samples) - 1, int(0.9 * len(samples)))], 2), "runs": runs}
