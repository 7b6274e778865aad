"""The compilation workload in process: static int8 calibrated on the user's data, a target this host's CPU
does not match, and (where torch sees a CUDA GPU) an AOTInductor package compiled for and verified on it."""

from __future__ import annotations

import json
import tarfile

import numpy as np
import pytest
import torch

from jobforge.demo import tiny_nets
from jobforge.execution.context import LocalJobContext
from jobforge.runtime import load
from jobforge.workloads.compile import job, options, shapes, targets


def compile_model(tmp_path, files, output: dict, data_input_config: str | None, framework="PYTORCH"):
    """Run the workload on a tarball of files; (context, report, output tarball path)."""
    bucket = tmp_path / "s3" / "models"
    bucket.mkdir(parents=True, exist_ok=True)
    tiny_nets.tarball(files, bucket / "model.tar.gz")
    output = {"S3OutputLocation": "s3://models/out", **output}
    target = targets.resolve(output)
    spec = {"request": {"InputConfig": {"S3Uri": "s3://models/model.tar.gz", "Framework": framework},
                        "OutputConfig": output, "StoppingCondition": {"MaxRuntimeInSeconds": 900}},
            "target": target.to_json(), "options": options.parse(output.get("CompilerOptions")).to_json(),
            "inputs": [s.to_json() for s in shapes.parse(data_input_config)] if data_input_config else None,
            "output_uri": f"s3://models/out/model-{target.name}.tar.gz"}
    ctx = LocalJobContext(s3_root=tmp_path / "s3", work_dir=tmp_path / "work", checkpoint_dir=tmp_path / "ckpt")
    job.run(ctx, spec)
    tarball = bucket / "out" / f"model-{target.name}.tar.gz"
    with tarfile.open(tarball) as tar:
        report = json.load(tar.extractfile("report.json"))
    return ctx, report, tarball


def test_static_int8_calibrated_on_user_data(tmp_path):
    model, example = tiny_nets.build("cnn")
    calibration = tmp_path / "s3" / "models" / "calibration"
    calibration.mkdir(parents=True)
    rng = np.random.default_rng(3)
    for i in range(4):
        np.savez(calibration / f"sample{i}.npz", input0=rng.standard_normal((1, 3, 64, 64)).astype(np.float32))
    options_ = {"precision": "int8", "calibration": "s3://models/calibration/", "timing_runs": 5,
                "backend": "onnxruntime"}
    ctx, report, tarball = compile_model(tmp_path, [tiny_nets.torchscript(model, example, tmp_path / "m.pt")],
                                         {"TargetDevice": "ml_c5", "CompilerOptions": json.dumps(options_)},
                                         '{"input0": [1, 3, 64, 64]}')
    chosen = next(c for c in report["candidates"] if c["status"] == "chosen")
    assert report["verification_inputs"] == "calibration prefix"
    assert "calibrated on 4 input(s)" in chosen["notes"][0] and 0 < chosen["error"] <= 0.1
    assert load(tarball).manifest["onnxruntime"]["quantization"] == "static"


def test_a_feature_this_cpu_lacks_means_a_portable_untimed_artifact(tmp_path):
    model, example = tiny_nets.build("mlp")
    compiler_options = json.dumps({"mattr": ["+no-such-feature"], "backend": "onnxruntime"})
    ctx, report, tarball = compile_model(tmp_path, [tiny_nets.torchscript(model, example, tmp_path / "m.pt")],
                                         {"TargetDevice": "ml_c5", "CompilerOptions": compiler_options}, "[[1, 256]]")
    assert not report["timed_on_host"] and "lacks no-such-feature" in report["original"]["not_timed"]
    assert load(tarball).manifest["onnxruntime"]["optimization_level"] == "ORT_ENABLE_EXTENDED"


def test_aotinductor_for_cuda_is_verified_on_the_gpu(tmp_path):
    if not torch.cuda.is_available():
        pytest.skip("no CUDA GPU visible to torch on this host")
    model, example = tiny_nets.build("cnn")
    ctx, report, tarball = compile_model(tmp_path, [tiny_nets.torchscript(model, example, tmp_path / "m.pt")],
                                         {"TargetDevice": "ml_g4dn", "CompilerOptions": '{"timing_runs": 5}'},
                                         '{"input0": [1, 3, 64, 64]}')
    by_backend = {c["backend"]: c for c in report["candidates"]}
    assert by_backend["aotinductor"]["status"] == "chosen", by_backend
    assert by_backend["aotinductor"]["verified_on"] == "this host's NVIDIA GPU"
    assert by_backend["onnxruntime"]["verified_on"] == "this host's CPU, not the target's NVIDIA"
    compiled = load(tarball)
    assert compiled.manifest["aotinductor"]["device"] == "cuda"
    with torch.no_grad():
        np.testing.assert_allclose(compiled.run([example.numpy()])[0], model(example).numpy(), atol=1e-3)


def test_a_scikit_learn_regression_pipeline(tmp_path):
    import joblib
    from sklearn.linear_model import Ridge
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    features = np.random.default_rng(0).standard_normal((100, 5))
    pipeline = make_pipeline(StandardScaler(), Ridge()).fit(features, features @ np.arange(5))
    joblib.dump(pipeline, tmp_path / "model.joblib")
    ctx, report, tarball = compile_model(tmp_path, [tmp_path / "model.joblib"],
                                         {"TargetDevice": "ml_m5", "CompilerOptions": '{"timing_runs": 5}'}, None,
                                         framework="SKLEARN")
    assert ctx.results["DerivedDataInputConfig"] == '{"input": [1, 5]}'
    assert {c["backend"]: c["status"] for c in report["candidates"]} == {
        "onnxruntime": "chosen", "openvino": "not applicable", "aotinductor": "not applicable"}
    rows = features[:7].astype(np.float32)
    np.testing.assert_allclose(load(tarball).run([rows])[0].ravel(), pipeline.predict(rows), rtol=1e-4, atol=1e-4)
