"""CompilerOptions: SageMaker Neo's keys, and jobforge's own for precision and the choice of backend.

Neo's keys honoured: ``dtype`` (input dtype of PyTorch models), ``mcpu`` and ``mattr`` (recorded; a feature
in ``mattr`` that this host's CPU lacks means the artifact is not tuned for or timed on this host),
``precision_mode`` (``FP32``/``FP16``/``INT8``, as for TensorRT), ``gpu-code``/``gpu_code``, ``trt-ver``,
``cuda-ver`` and ``ANDROID_PLATFORM`` (recorded in the manifest).

jobforge's keys:

* ``precision``: ``fp32`` (default), ``fp16``, ``bf16`` or ``int8``;
* ``quantization``: for int8, ``dynamic`` (default without calibration data) or ``static``;
* ``calibration``: an S3 prefix of ``.npy``/``.npz`` files: inputs for static quantization and verification;
* ``backend``: ``auto`` (default: build every applicable backend, keep the fastest accurate one) or one of
  ``onnxruntime``, ``openvino``, ``aotinductor``;
* ``tolerance``: the largest absolute difference from the original allowed, relative to the largest
  absolute output (default per precision);
* ``timing_runs``: how many timed runs per candidate (default 200, warm-up excluded).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

from jobforge.workloads.compile.shapes import ShapeError, normalize_dtype, read_literal

PRECISIONS = ("fp32", "fp16", "bf16", "int8")
BACKENDS = ("onnxruntime", "openvino", "aotinductor")
QUANTIZATION = ("dynamic", "static")
# Relative tolerance per precision: max |compiled - original| / max(|original|, 1e-6 floor) allowed.
TOLERANCE = {"fp32": 1e-4, "fp16": 1e-2, "bf16": 5e-2, "int8": 1e-1}
DEFAULT_TIMING_RUNS = 200
RECORDED = {"gpu-code": "gpu_code", "gpu_code": "gpu_code", "trt-ver": "trt_ver", "cuda-ver": "cuda_ver",
            "ANDROID_PLATFORM": "android_platform", "mcpu": "mcpu"}
KNOWN = ("dtype", "mattr", "precision_mode", "precision", "quantization", "calibration", "backend", "tolerance",
         "timing_runs", *RECORDED)


class OptionsError(ValueError):
    """CompilerOptions that cannot be honoured; the message says why."""


@dataclass(frozen=True)
class Options:
    precision: str = "fp32"
    quantization: str | None = None
    calibration: str | None = None
    backend: str = "auto"
    tolerance: float | None = None
    timing_runs: int = DEFAULT_TIMING_RUNS
    input_dtype: str | None = None
    mattr: tuple[str, ...] = ()
    recorded: dict = field(default_factory=dict)

    @property
    def allowed_difference(self) -> float:
        return self.tolerance if self.tolerance is not None else TOLERANCE[self.precision]

    def to_json(self) -> dict:
        return dict(asdict(self), mattr=list(self.mattr))

    @classmethod
    def from_json(cls, data: dict) -> "Options":
        return cls(**dict(data, mattr=tuple(data.get("mattr", ()))))


def parse(text: str | None) -> Options:
    if not text:
        return Options()
    try:
        value = read_literal(text, "CompilerOptions")
    except ShapeError as err:
        raise OptionsError(str(err)) from None
    if not isinstance(value, dict):
        raise OptionsError("CompilerOptions must be a dictionary of option names to values.")
    unknown = [key for key in value if key not in KNOWN]
    if unknown:
        raise OptionsError(f"CompilerOptions key(s) {', '.join(map(str, unknown))} not supported; supported: "
                           f"{', '.join(KNOWN)}.")
    precision = _precision(value)
    quantization = value.get("quantization")
    if quantization is not None and (precision != "int8" or quantization not in QUANTIZATION):
        raise OptionsError(f"quantization takes {' or '.join(QUANTIZATION)}, and only with precision int8.")
    calibration = value.get("calibration")
    if calibration is not None and (not isinstance(calibration, str) or not calibration.startswith("s3://")):
        raise OptionsError("calibration must be an S3 prefix such as s3://bucket/calibration/.")
    if precision == "int8":
        quantization = quantization or ("static" if calibration else "dynamic")
    backend = value.get("backend", "auto")
    if backend != "auto" and backend not in BACKENDS:
        raise OptionsError(f"backend {backend!r} is not one of auto, {', '.join(BACKENDS)}.")
    return Options(precision=precision, quantization=quantization, calibration=calibration, backend=backend,
                   tolerance=_positive(value, "tolerance", float), input_dtype=_dtype(value),
                   timing_runs=_positive(value, "timing_runs", int) or DEFAULT_TIMING_RUNS,
                   mattr=_mattr(value.get("mattr")),
                   recorded={RECORDED[key]: value[key] for key in RECORDED if key in value})


def _precision(value: dict) -> str:
    precision = str(value.get("precision", "fp32")).lower()
    if precision not in PRECISIONS:
        raise OptionsError(f"precision {value['precision']!r} is not one of {', '.join(PRECISIONS)}.")
    if "precision_mode" in value:
        mode = str(value["precision_mode"]).lower()
        if mode not in PRECISIONS:
            raise OptionsError(f"precision_mode {value['precision_mode']!r} is not one of FP32, FP16, BF16, INT8.")
        if "precision" in value and mode != precision:
            raise OptionsError("precision and precision_mode disagree.")
        precision = mode
    return precision


def _positive(value: dict, key: str, kind: type):
    if key not in value:
        return None
    number = value[key]
    if isinstance(number, bool) or not isinstance(number, (int, float)) or number <= 0 or \
            (kind is int and (not isinstance(number, int) or number > 100_000)):
        raise OptionsError(f"{key} must be a positive {'integer up to 100000' if kind is int else 'number'}.")
    return kind(number)


def _dtype(value: dict) -> str | None:
    if "dtype" not in value:
        return None
    try:
        return normalize_dtype(value["dtype"])
    except ShapeError as err:
        raise OptionsError(f"CompilerOptions {err}") from None


def _mattr(value) -> tuple[str, ...]:
    if value is None:
        return ()
    items = value.split(",") if isinstance(value, str) else value
    if not isinstance(items, (list, tuple)) or not all(isinstance(item, str) for item in items):
        raise OptionsError("mattr must be a list of feature flags such as ['+avx2', '+fma'].")
    return tuple(item.strip() for item in items if item.strip())
