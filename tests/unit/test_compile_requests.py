"""What a compilation request's strings and target mean: DataInputConfig, CompilerOptions, targets."""

from __future__ import annotations

import pytest

from jobforge.workloads.compile import options, shapes, targets
from jobforge.workloads.compile.shapes import InputSpec


@pytest.mark.parametrize("text", ['{"input0": [1, 3, 224, 224]}', "{'input0': [1, 3, 224, 224]}",
                                  '{"input0": {"shape": [1, 3, 224, 224]}}'])
def test_named_forms(text):
    assert shapes.parse(text) == [InputSpec("input0", (1, 3, 224, 224), (False,) * 4)]


def test_positional_forms_and_dtypes():
    assert shapes.parse("[1, 10]") == [InputSpec(None, (1, 10), (False, False))]
    assert [s.shape for s in shapes.parse("[[1, 3, 8, 8], [1, 4]]")] == [(1, 3, 8, 8), (1, 4)]
    typed = shapes.parse('[{"shape": [1, 16], "dtype": "long"}]')
    assert typed == [InputSpec(None, (1, 16), (False, False), "int64")]


def test_coreml_ranges_and_enumerated_shapes():
    ranged = shapes.parse('{"input_1": {"shape": ["1..10", 224, 224, 3], "default_shape": [4, 224, 224, 3]}}')
    assert ranged == [InputSpec("input_1", (4, 224, 224, 3), (True, False, False, False))]
    enumerated = shapes.parse('{"x": {"shape": [[1, 3, 224, 224], [1, 3, 112, 112]], '
                              '"default_shape": [1, 3, 112, 112]}}')
    assert enumerated == [InputSpec("x", (1, 3, 112, 112), (False, False, True, True))]


@pytest.mark.parametrize("text,reason", [
    ("__import__('os')", "neither JSON nor a Python literal"),
    ('{"a": [1, 0]}', "positive integer"),
    ('{"a": [true]}', "positive integer"),
    ('{"a": {"size": [1]}}', "takes the keys shape"),
    ('{"a": {"shape": ["5..2"]}}', "empty"),
    ('{"a": {"shape": [1, "1..4"], "default_shape": [2, 2]}}', "does not fit"),
    ('"just text"', "dictionary of input names"),
])
def test_malformed_data_input_config(text, reason):
    with pytest.raises(shapes.ShapeError, match=reason):
        shapes.parse(text)


def test_compiler_options_neo_keys_and_extensions():
    parsed = options.parse("{'mcpu': 'skylake-avx512', 'mattr': ['+avx2'], 'dtype': 'float', 'gpu-code': 'sm_75'}")
    assert parsed.input_dtype == "float32" and parsed.mattr == ("+avx2",)
    assert parsed.recorded == {"mcpu": "skylake-avx512", "gpu_code": "sm_75"}
    assert options.parse('{"precision_mode": "FP16"}').precision == "fp16"
    assert options.parse('{"precision": "int8"}').quantization == "dynamic"
    calibrated = options.parse('{"precision": "int8", "calibration": "s3://b/calib/"}')
    assert calibrated.quantization == "static" and calibrated.allowed_difference == options.TOLERANCE["int8"]
    assert options.Options.from_json(calibrated.to_json()) == calibrated


@pytest.mark.parametrize("text,reason", [
    ('{"opt": 1}', "not supported"),
    ('{"precision": "fp8"}', "precision 'fp8'"),
    ('{"precision": "fp16", "precision_mode": "FP32"}', "disagree"),
    ('{"quantization": "static"}', "only with precision int8"),
    ('{"timing_runs": 0}', "positive integer"),
    ('{"calibration": "/local/dir"}', "S3 prefix"),
    ('["mcpu"]', "dictionary"),
])
def test_bad_compiler_options(text, reason):
    with pytest.raises(options.OptionsError, match=reason):
        options.parse(text)


def test_targets(monkeypatch):
    monkeypatch.setattr(targets, "host_arch", lambda: "X86_64")
    c5 = targets.resolve({"TargetDevice": "ml_c5"})
    assert (c5.name, c5.arch, c5.served_here, c5.runs_on_host()) == ("ml_c5", "X86_64", True, True)
    graviton = targets.resolve({"TargetDevice": "ml_c6g"})
    assert not graviton.served_here and not graviton.runs_on_host()
    jetson = targets.resolve({"TargetPlatform": {"Os": "LINUX", "Arch": "ARM64", "Accelerator": "NVIDIA"}})
    assert jetson.name == "linux_arm64_nvidia" and not jetson.cpu
    for device in targets.REFUSED_DEVICES:
        with pytest.raises(targets.TargetRefused, match="not supported by jobforge"):
            targets.resolve({"TargetDevice": device})
    with pytest.raises(targets.TargetRefused, match="exactly one"):
        targets.resolve({})


def test_every_target_device_of_the_model_is_mapped_or_refused():
    from jobforge.core.service_models import service_model

    enum = service_model("sagemaker").shape_for("TargetDevice").enum
    assert set(enum) == set(targets.DEVICES) | set(targets.REFUSED_DEVICES)
