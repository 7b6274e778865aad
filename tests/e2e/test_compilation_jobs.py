"""SageMaker compilation jobs end to end: boto3 against the real server, models built in the test.

Every job runs few timing runs (CompilerOptions ``timing_runs``) so that each stays quick.
"""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
import time

import numpy as np
import pytest
import torch
from botocore.exceptions import ClientError

from jobforge.demo import tiny_nets
from jobforge.runtime import load

BUCKET = "compile-models"
QUICK = {"timing_runs": 10}
TERMINAL = ("COMPLETED", "FAILED", "STOPPED")


@pytest.fixture(scope="module")
def sm(server):
    return server.client("sagemaker")


@pytest.fixture(scope="module")
def s3(server):
    client = server.client("s3")
    client.create_bucket(Bucket=BUCKET)
    return client


def upload_model(s3, tmp_path, key: str, files) -> str:
    s3.upload_file(str(tiny_nets.tarball(files, tmp_path / "model.tar.gz")), BUCKET, key)
    return f"s3://{BUCKET}/{key}"


def create(sm, role_arn, name, uri, framework, *, shapes=None, device="ml_c5", platform=None, options=None,
           max_runtime=900, **extra):
    input_config = {"S3Uri": uri, "Framework": framework}
    if shapes is not None:
        input_config["DataInputConfig"] = shapes if isinstance(shapes, str) else json.dumps(shapes)
    output = {"S3OutputLocation": f"s3://{BUCKET}/out/{name}"}
    output.update({"TargetPlatform": platform} if platform else {"TargetDevice": device})
    output["CompilerOptions"] = json.dumps({**QUICK, **(options or {})})
    return sm.create_compilation_job(CompilationJobName=name, RoleArn=role_arn, InputConfig=input_config,
                                     OutputConfig=output, StoppingCondition={"MaxRuntimeInSeconds": max_runtime},
                                     **extra)


def wait(sm, name, until=TERMINAL, timeout=240) -> dict:
    deadline = time.time() + timeout
    while time.time() < deadline:
        job = sm.describe_compilation_job(CompilationJobName=name)
        if job["CompilationJobStatus"] in until:
            return job
        time.sleep(0.3)
    raise AssertionError(f"{name} stayed {job['CompilationJobStatus']}")


def artifact(s3, job, tmp_path):
    """The output tarball (downloaded), its manifest and its report."""
    uri = job["ModelArtifacts"]["S3ModelArtifacts"]
    bucket, key = uri.removeprefix("s3://").split("/", 1)
    path = tmp_path / key.rsplit("/", 1)[1]
    s3.download_file(bucket, key, str(path))
    with tarfile.open(path) as tar:
        manifest = json.load(tar.extractfile("manifest.json"))
        report = json.load(tar.extractfile("report.json"))
    return path, manifest, report


def completed(sm, name) -> dict:
    job = wait(sm, name)
    assert job["CompilationJobStatus"] == "COMPLETED", job["FailureReason"]
    return job


def test_torchscript_cnn_compiles_verifies_and_loads_in_the_runtime(server, sm, s3, role_arn, tmp_path):
    model, example = tiny_nets.build("cnn")
    uri = upload_model(s3, tmp_path, "cnn/model.tar.gz",
                       [tiny_nets.torchscript(model, example, tmp_path / "model.pth")])
    arn = create(sm, role_arn, "cnn-onnxruntime", uri, "PYTORCH", shapes={"input0": [1, 3, 64, 64]},
                 options={"backend": "onnxruntime"})["CompilationJobArn"]
    assert arn.endswith(":compilation-job/cnn-onnxruntime")
    assert sm.describe_compilation_job(CompilationJobName="cnn-onnxruntime")["CompilationJobStatus"] in (
        "STARTING", "INPROGRESS", "COMPLETED")
    job = completed(sm, "cnn-onnxruntime")
    assert job["FailureReason"] == ""
    assert job["ModelArtifacts"]["S3ModelArtifacts"] == f"s3://{BUCKET}/out/cnn-onnxruntime/model-ml_c5.tar.gz"
    assert job["InferenceImage"].startswith("jobforge-runtime:onnxruntime-")
    assert job["CompilationStartTime"] <= job["CompilationEndTime"]
    assert json.loads(job["DerivedInformation"]["DerivedDataInputConfig"]) == {"input0": [1, 3, 64, 64]}

    path, manifest, report = artifact(s3, job, tmp_path)
    assert job["ModelDigests"]["ArtifactDigest"] == "blake2b:" + hashlib.blake2b(path.read_bytes()).hexdigest()
    assert manifest["backend"] == "onnxruntime" and manifest["precision"] == "fp32"
    assert manifest["onnxruntime"]["optimization_level"] == "ORT_ENABLE_ALL"
    assert {"torch", "onnxruntime", "onnx"} <= set(manifest["versions"])
    chosen = next(c for c in report["candidates"] if c["status"] == "chosen")
    assert chosen["backend"] == "onnxruntime" and chosen["error"] <= 1e-4
    assert chosen["median_us"] > 0 and chosen["p90_us"] >= chosen["median_us"] and chosen["speedup"] > 0
    assert report["original"]["median_us"] > 0
    assert {c["backend"]: c["status"] for c in report["candidates"]}["openvino"] == "not applicable"

    compiled = load(path, threads=1)
    data = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        expected = model(data).numpy()
    np.testing.assert_allclose(compiled.run({"input0": data.numpy()})[0], expected, atol=1e-4, rtol=1e-4)

    logs = server.client("logs")
    streams = logs.describe_log_streams(logGroupName="/aws/sagemaker/CompilationJobs",
                                        logStreamNamePrefix="cnn-onnxruntime/")["logStreams"]
    events = logs.get_log_events(logGroupName="/aws/sagemaker/CompilationJobs",
                                 logStreamName=streams[0]["logStreamName"])["events"]
    text = "\n".join(event["message"] for event in events)
    assert "onnxruntime: chosen" in text and "median" in text


def test_onnx_auto_keeps_the_fastest_accurate_candidate(sm, s3, role_arn, tmp_path):
    model, example = tiny_nets.build("cnn", seed=1)
    torch.onnx.export(model, (example,), str(tmp_path / "model.onnx"), dynamo=False, input_names=["data"])
    uri = upload_model(s3, tmp_path, "cnn-onnx/model.tar.gz", [tmp_path / "model.onnx"])
    create(sm, role_arn, "cnn-onnx-auto", uri, "ONNX")  # shapes derived: the graph's are static
    job = completed(sm, "cnn-onnx-auto")
    assert json.loads(job["DerivedInformation"]["DerivedDataInputConfig"]) == {"data": [1, 3, 64, 64]}
    path, manifest, report = artifact(s3, job, tmp_path)
    statuses = {c["backend"]: c for c in report["candidates"]}
    assert statuses["aotinductor"]["status"] == "not applicable"
    timed = [c for c in report["candidates"] if "median_us" in c]
    assert {c["backend"] for c in timed} == {"onnxruntime", "openvino"}
    best = min(timed, key=lambda c: c["median_us"])
    assert best["status"] == "chosen" and manifest["backend"] == best["backend"]
    loser = next(c for c in timed if c is not best)
    assert loser["status"] == "not chosen" and "slower than" in loser["reason"]
    compiled = load(path)
    with torch.no_grad():
        np.testing.assert_allclose(compiled.run([example.numpy()])[0], model(example).numpy(), atol=1e-4)


def test_torch_export_program_shapes_derived_and_aotinductor(sm, s3, role_arn, tmp_path):
    model, example = tiny_nets.build("mlp")
    uri = upload_model(s3, tmp_path, "mlp-export/model.tar.gz",
                       [tiny_nets.exported(model, example, tmp_path / "model.pt2")])
    create(sm, role_arn, "mlp-aoti", uri, "PYTORCH", options={"backend": "aotinductor"})
    job = completed(sm, "mlp-aoti")
    assert json.loads(job["DerivedInformation"]["DerivedDataInputConfig"]) == {"x": [1, 256]}
    path, manifest, _ = artifact(s3, job, tmp_path)
    assert manifest["backend"] == "aotinductor" and manifest["files"]["model"] == "model.pt2"
    data = torch.randn(1, 256)
    with torch.no_grad():
        np.testing.assert_allclose(load(path).run([data.numpy()])[0], model(data).numpy(), atol=1e-5)


def test_transformer_through_openvino(sm, s3, role_arn, tmp_path):
    model, example = tiny_nets.build("transformer")
    uri = upload_model(s3, tmp_path, "transformer/model.tar.gz",
                       [tiny_nets.torchscript(model, example, tmp_path / "model.pt")])
    create(sm, role_arn, "transformer-openvino", uri, "PYTORCH", shapes="{'input0': [1, 32, 64]}",  # Python quoting
           options={"backend": "openvino"})
    job = completed(sm, "transformer-openvino")
    path, manifest, report = artifact(s3, job, tmp_path)
    assert manifest["backend"] == "openvino" and manifest["openvino"]["inference_precision"] == "f32"
    data = torch.randn(1, 32, 64)
    with torch.no_grad():
        np.testing.assert_allclose(load(path).run([data.numpy()])[0], model(data).numpy(), atol=1e-3)


def test_sklearn_and_xgboost_models(sm, s3, role_arn, tmp_path):
    import joblib
    import xgboost
    from sklearn.ensemble import RandomForestClassifier

    rng = np.random.default_rng(0)
    features = rng.standard_normal((200, 6)).astype(np.float32)
    labels = (features[:, 0] + features[:, 1] > 0).astype(int)
    forest = RandomForestClassifier(n_estimators=5, max_depth=4, random_state=0).fit(features, labels)
    joblib.dump(forest, tmp_path / "model.joblib")
    create(sm, role_arn, "forest", upload_model(s3, tmp_path, "forest/model.tar.gz", [tmp_path / "model.joblib"]),
           "SKLEARN")
    booster = xgboost.train({"objective": "binary:logistic", "max_depth": 3},
                            xgboost.DMatrix(features, label=labels), num_boost_round=5)
    booster.save_model(str(tmp_path / "xgboost.json"))
    create(sm, role_arn, "boosted", upload_model(s3, tmp_path, "boosted/model.tar.gz", [tmp_path / "xgboost.json"]),
           "XGBOOST", shapes=[[8, 6]])  # list form: eight rows are verified
    for name, predict in (("forest", forest.predict_proba),
                          ("boosted", lambda x: booster.predict(xgboost.DMatrix(x)))):
        job = completed(sm, name)
        assert json.loads(job["DerivedInformation"]["DerivedDataInputConfig"]) == {
            "input": [1, 6] if name == "forest" else [8, 6]}
        path, manifest, _ = artifact(s3, job, tmp_path)
        assert manifest["backend"] == "onnxruntime" and manifest["outputs"] == ["label", "probabilities"]
        labels_out, probabilities = load(path).run([features[:20]])
        expected = predict(features[:20])
        np.testing.assert_allclose(probabilities if expected.ndim == 2 else probabilities[:, 1], expected, atol=1e-5)


@pytest.mark.parametrize("shapes,reason", [
    ("{not json", "neither JSON nor a Python literal"),
    ('{"input0": [1, -3]}', "positive integer"),
    ('{"input0": "big"}', "non-empty list"),
    ("[]", "declares no input"),
])
def test_malformed_data_input_config_is_refused(sm, role_arn, shapes, reason):
    with pytest.raises(ClientError) as caught:
        create(sm, role_arn, "malformed", f"s3://{BUCKET}/x/model.tar.gz", "PYTORCH", shapes=shapes)
    assert caught.value.response["Error"]["Code"] == "ValidationException"
    assert reason in caught.value.response["Error"]["Message"]


def test_shapes_that_cannot_be_derived_or_do_not_fit_fail_the_job(sm, s3, role_arn, tmp_path):
    model, example = tiny_nets.build("mlp")
    script = upload_model(s3, tmp_path, "mlp-script/model.tar.gz",
                          [tiny_nets.torchscript(model, example, tmp_path / "model.pth")])
    create(sm, role_arn, "no-shapes", script, "PYTORCH")
    torch.onnx.export(model, (example,), str(tmp_path / "model.onnx"), dynamo=False, input_names=["features"],
                      dynamic_axes={"features": {0: "batch"}})
    dynamic = upload_model(s3, tmp_path, "mlp-dynamic/model.tar.gz", [tmp_path / "model.onnx"])
    create(sm, role_arn, "dynamic-no-shapes", dynamic, "ONNX")
    create(sm, role_arn, "wrong-name", dynamic, "ONNX", shapes={"pixels": [4, 256]})
    create(sm, role_arn, "dynamic-given", dynamic, "ONNX", shapes={"features": [4, 256]},
           options={"backend": "onnxruntime"})
    assert "TorchScript file records no input shapes" in wait(sm, "no-shapes")["FailureReason"]
    assert "features[0]" in wait(sm, "dynamic-no-shapes")["FailureReason"]
    assert "its inputs are features" in wait(sm, "wrong-name")["FailureReason"]
    given = completed(sm, "dynamic-given")
    assert json.loads(given["DerivedInformation"]["DerivedDataInputConfig"]) == {"features": [4, 256]}


def test_bad_tarballs_fail_with_the_reason(sm, s3, role_arn, tmp_path):
    s3.put_object(Bucket=BUCKET, Key="bad/plain.tar.gz", Body=b"not a gzip file at all")
    empty = io.BytesIO()
    with tarfile.open(fileobj=empty, mode="w:gz") as tar:
        info = tarfile.TarInfo("README.txt")
        info.size = 5
        tar.addfile(info, io.BytesIO(b"hello"))
    s3.put_object(Bucket=BUCKET, Key="bad/empty.tar.gz", Body=empty.getvalue())
    model, example = tiny_nets.build("mlp")
    first = tiny_nets.torchscript(model, example, tmp_path / "a.pt")
    second = tiny_nets.torchscript(model, example, tmp_path / "b.pt")
    two = upload_model(s3, tmp_path, "bad/two.tar.gz", [first, second])
    create(sm, role_arn, "not-gzip", f"s3://{BUCKET}/bad/plain.tar.gz", "PYTORCH", shapes=[[1, 256]])
    create(sm, role_arn, "no-model", f"s3://{BUCKET}/bad/empty.tar.gz", "PYTORCH", shapes=[[1, 256]])
    create(sm, role_arn, "two-models", two, "PYTORCH", shapes=[[1, 256]])
    create(sm, role_arn, "missing", f"s3://{BUCKET}/bad/nothing-here.tar.gz", "PYTORCH", shapes=[[1, 256]])
    assert "not a gzip-compressed tar archive" in wait(sm, "not-gzip")["FailureReason"]
    assert "holds no PYTORCH model" in wait(sm, "no-model")["FailureReason"]
    assert "holds 2 PYTORCH model files (a.pt, b.pt)" in wait(sm, "two-models")["FailureReason"]
    failed = wait(sm, "missing")
    assert failed["CompilationJobStatus"] == "FAILED" and "nothing-here.tar.gz" in failed["FailureReason"]


@pytest.mark.parametrize("framework,device,platform,options,extra,reason", [
    ("TENSORFLOW", "ml_c5", None, None, {}, "tensorflow and tf2onnx"),
    ("MXNET", "ml_c5", None, None, {}, "MXNet is retired"),
    ("DARKNET", "ml_c5", None, None, {}, "Darknet"),
    ("PYTORCH", "ml_inf2", None, None, {}, "Neuron compiler"),
    ("PYTORCH", None, {"Os": "LINUX", "Arch": "ARM64", "Accelerator": "MALI"}, None, {}, "Mali"),
    ("ONNX", "ml_c5", None, None, {"FrameworkVersion": "1.7"}, "FrameworkVersion is only supported"),
    ("PYTORCH", "ml_c5", None, {"backend": "tvm"}, {}, "backend 'tvm'"),
    ("PYTORCH", "ml_c5", None, {"precision": "int4"}, {}, "precision 'int4'"),
    ("SKLEARN", "ml_c5", None, {"precision": "int8"}, {}, "fp32 only"),
    ("PYTORCH", "ml_c5", None, {"backend": "openvino", "precision": "int8"}, {}, "openvino backend does not"),
])
def test_unsupported_requests_are_refused_with_the_reason(sm, role_arn, framework, device, platform, options,
                                                          extra, reason):
    input_config = {"S3Uri": f"s3://{BUCKET}/x/model.tar.gz", "Framework": framework, **extra}
    output = {"S3OutputLocation": f"s3://{BUCKET}/out"}
    output.update({"TargetPlatform": platform} if platform else {"TargetDevice": device})
    if options:
        output["CompilerOptions"] = json.dumps(options)
    with pytest.raises(ClientError) as caught:
        sm.create_compilation_job(CompilationJobName="refused", RoleArn=role_arn, InputConfig=input_config,
                                  OutputConfig=output, StoppingCondition={"MaxRuntimeInSeconds": 60})
    assert caught.value.response["Error"]["Code"] == "ValidationException"
    assert reason in caught.value.response["Error"]["Message"]


def test_cross_field_rules(sm, role_arn, account_id):
    base = dict(CompilationJobName="rules", RoleArn=role_arn, StoppingCondition={"MaxRuntimeInSeconds": 60})
    input_config = {"S3Uri": f"s3://{BUCKET}/x/model.tar.gz", "Framework": "ONNX"}
    package = f"arn:aws:sagemaker:us-east-1:{account_id}:model-package/pkg/1"
    cases = [
        (dict(OutputConfig={"S3OutputLocation": "s3://b/o", "TargetDevice": "ml_c5"}), "exactly one of InputConfig"),
        (dict(InputConfig=input_config, ModelPackageVersionArn=package,
              OutputConfig={"S3OutputLocation": "s3://b/o", "TargetDevice": "ml_c5"}), "exactly one of InputConfig"),
        (dict(ModelPackageVersionArn=package, OutputConfig={"S3OutputLocation": "s3://b/o", "TargetDevice": "ml_c5"}),
         "does not exist"),
        (dict(InputConfig=input_config, OutputConfig={"S3OutputLocation": "s3://b/o"}), "exactly one of TargetDevice"),
        (dict(InputConfig=input_config, OutputConfig={"S3OutputLocation": "s3://b/o", "TargetDevice": "ml_c5",
                                                      "TargetPlatform": {"Os": "LINUX", "Arch": "X86_64"}}),
         "exactly one of TargetDevice"),
        (dict(InputConfig=input_config, OutputConfig={"S3OutputLocation": "s3://b/o", "TargetDevice": "ml_c5",
                                                      "KmsKeyId": "alias/mine"}), "KMS"),
    ]
    for extra, reason in cases:
        with pytest.raises(ClientError) as caught:
            sm.create_compilation_job(**base, **extra)
        assert caught.value.response["Error"]["Code"] == "ValidationException", extra
        assert reason in caught.value.response["Error"]["Message"]


def test_int8_is_within_its_bound_and_a_tighter_bound_fails(sm, s3, role_arn, tmp_path):
    model, example = tiny_nets.build("mlp")
    uri = upload_model(s3, tmp_path, "mlp-int8/model.tar.gz",
                       [tiny_nets.torchscript(model, example, tmp_path / "model.pth")])
    create(sm, role_arn, "mlp-int8", uri, "PYTORCH", shapes=[[1, 256]], options={"precision": "int8"})
    create(sm, role_arn, "mlp-int8-strict", uri, "PYTORCH", shapes=[[1, 256]],
           options={"precision": "int8", "tolerance": 1e-7})
    job = completed(sm, "mlp-int8")
    path, manifest, report = artifact(s3, job, tmp_path)
    assert manifest["precision"] == "int8" and manifest["onnxruntime"]["quantization"] == "dynamic"
    chosen = next(c for c in report["candidates"] if c["status"] == "chosen")
    assert 0 < chosen["error"] <= 0.1  # really quantised, and within the int8 bound
    assert report["allowed_error"] == 0.1
    strict = wait(sm, "mlp-int8-strict")
    assert strict["CompilationJobStatus"] == "FAILED"
    assert "No backend produced an accurate artifact" in strict["FailureReason"]
    assert "exceeds the allowed 1e-07 for int8" in strict["FailureReason"]


def test_stop_and_timeout(sm, s3, role_arn, tmp_path):
    model, example = tiny_nets.build("cnn")
    uri = upload_model(s3, tmp_path, "cnn-long/model.tar.gz",
                       [tiny_nets.torchscript(model, example, tmp_path / "model.pth")])
    long_running = {"timing_runs": 100_000, "backend": "onnxruntime"}  # over a minute of timing the original
    shape = [[1, 3, 64, 64]]
    create(sm, role_arn, "stop-me", uri, "PYTORCH", shapes=shape, options=long_running)
    create(sm, role_arn, "time-me-out", uri, "PYTORCH", shapes=shape, options=long_running, max_runtime=5)
    wait(sm, "stop-me", until=("INPROGRESS",) + TERMINAL)
    sm.stop_compilation_job(CompilationJobName="stop-me")
    assert sm.describe_compilation_job(CompilationJobName="stop-me")["CompilationJobStatus"] in ("STOPPING", "STOPPED")
    assert wait(sm, "stop-me")["CompilationJobStatus"] == "STOPPED"
    with pytest.raises(ClientError) as caught:
        sm.stop_compilation_job(CompilationJobName="stop-me")
    assert caught.value.response["Error"]["Code"] == "ValidationException"
    timed_out = wait(sm, "time-me-out")
    assert timed_out["CompilationJobStatus"] == "FAILED"
    assert timed_out["FailureReason"].startswith("TimeOut")
    assert "MaxRuntimeInSeconds (5 s)" in timed_out["FailureReason"]


def test_accelerator_and_foreign_cpu_targets_are_compiled_but_not_timed(sm, s3, role_arn, tmp_path):
    model, example = tiny_nets.build("mlp")
    uri = upload_model(s3, tmp_path, "mlp-targets/model.tar.gz",
                       [tiny_nets.torchscript(model, example, tmp_path / "model.pth")])
    create(sm, role_arn, "for-g4dn", uri, "PYTORCH", shapes=[[1, 256]], device="ml_g4dn")
    create(sm, role_arn, "for-graviton", uri, "PYTORCH", shapes=[[1, 256]],
           platform={"Os": "LINUX", "Arch": "ARM64"})
    gpu = completed(sm, "for-g4dn")
    path, manifest, report = artifact(s3, gpu, tmp_path)
    assert path.name == "model-ml_g4dn.tar.gz"
    assert manifest["onnxruntime"]["providers"][:2] == ["TensorrtExecutionProvider", "CUDAExecutionProvider"]
    assert manifest["onnxruntime"]["optimization_level"] == "ORT_ENABLE_BASIC"
    assert not report["timed_on_host"] and all("median_us" not in c for c in report["candidates"])
    assert "not the target's NVIDIA" in manifest["verification"]["verified_on"]
    arm = completed(sm, "for-graviton")
    path, manifest, report = artifact(s3, arm, tmp_path)
    assert path.name == "model-linux_arm64.tar.gz" and manifest["onnxruntime"]["optimization_level"] == \
        "ORT_ENABLE_EXTENDED"
    assert "does not run" in report["original"]["not_timed"]


def test_list_filters_sorting_paging_and_delete(sm, role_arn):
    missing = f"s3://{BUCKET}/listing/no-such-model.tar.gz"  # each job fails fast: its input is not there
    for name in ("listed-c", "listed-a", "listed-e"):
        create(sm, role_arn, name, missing, "ONNX")
    create(sm, role_arn, "listed-b", missing, "ONNX", device="ml_g4dn")
    create(sm, role_arn, "listed-d", missing, "ONNX", platform={"Os": "LINUX", "Arch": "ARM64"})
    names = [f"listed-{letter}" for letter in "abcde"]
    for name in names:
        assert wait(sm, name)["CompilationJobStatus"] == "FAILED"

    pages, token = [], None
    while True:
        page = sm.list_compilation_jobs(NameContains="listed-", MaxResults=2, SortBy="Name", SortOrder="Ascending",
                                        **({"NextToken": token} if token else {}))
        pages.append([job["CompilationJobName"] for job in page["CompilationJobSummaries"]])
        token = page.get("NextToken")
        if not token:
            break
    assert pages == [names[:2], names[2:4], names[4:]]
    failed = sm.list_compilation_jobs(NameContains="listed-", StatusEquals="FAILED")["CompilationJobSummaries"]
    assert sorted(job["CompilationJobName"] for job in failed) == names
    assert sm.list_compilation_jobs(NameContains="listed-", StatusEquals="COMPLETED")["CompilationJobSummaries"] == []
    newest = sm.list_compilation_jobs(NameContains="listed-", SortBy="CreationTime",
                                      SortOrder="Descending")["CompilationJobSummaries"]
    assert [j["CompilationJobName"] for j in newest] == ["listed-d", "listed-b", "listed-e", "listed-a", "listed-c"]
    middle = newest[2]["CreationTime"]
    # Times go out rounded to milliseconds, so the middle job itself may fall on either side of its own time.
    after = sm.list_compilation_jobs(NameContains="listed-", CreationTimeAfter=middle)["CompilationJobSummaries"]
    assert {"listed-d", "listed-b"} <= {j["CompilationJobName"] for j in after} <= {"listed-d", "listed-b", "listed-e"}
    before = sm.list_compilation_jobs(NameContains="listed-", CreationTimeBefore=middle)["CompilationJobSummaries"]
    assert {"listed-a", "listed-c"} <= {j["CompilationJobName"] for j in before} <= {"listed-a", "listed-c", "listed-e"}
    modified = sm.list_compilation_jobs(NameContains="listed-", LastModifiedTimeAfter=newest[-1]["LastModifiedTime"],
                                        LastModifiedTimeBefore=newest[0]["LastModifiedTime"])["CompilationJobSummaries"]
    assert all(newest[-1]["LastModifiedTime"] <= j["LastModifiedTime"] <= newest[0]["LastModifiedTime"]
               for j in modified)
    by_status = sm.list_compilation_jobs(NameContains="listed-", SortBy="Status")["CompilationJobSummaries"]
    assert len(by_status) == 5
    summaries = {j["CompilationJobName"]: j for j in newest}
    assert summaries["listed-d"]["CompilationTargetPlatformOs"] == "LINUX"
    assert summaries["listed-d"]["CompilationTargetPlatformArch"] == "ARM64"
    assert summaries["listed-b"]["CompilationTargetDevice"] == "ml_g4dn"
    assert summaries["listed-a"]["CompilationStartTime"] <= summaries["listed-a"]["CompilationEndTime"]

    sm.delete_compilation_job(CompilationJobName="listed-d")
    with pytest.raises(ClientError) as caught:
        sm.describe_compilation_job(CompilationJobName="listed-d")
    assert caught.value.response["Error"]["Code"] == "ResourceNotFound"
    with pytest.raises(ClientError) as caught:
        sm.delete_compilation_job(CompilationJobName="listed-d")
    assert caught.value.response["Error"]["Code"] == "ResourceNotFound"


def test_a_name_is_taken_once(sm, role_arn):
    create(sm, role_arn, "taken", f"s3://{BUCKET}/x/model.tar.gz", "ONNX")
    with pytest.raises(ClientError) as caught:
        create(sm, role_arn, "taken", f"s3://{BUCKET}/x/model.tar.gz", "ONNX")
    assert caught.value.response["Error"]["Code"] == "ResourceInUse"
    wait(sm, "taken")
