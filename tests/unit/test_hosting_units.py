"""SageMaker hosting pieces: the instance catalog and its override file, whether this host realises an
instance type, which model server a model gets, payload codecs, and the XGBoost and scikit-learn servers."""

from __future__ import annotations

import json
from types import SimpleNamespace

import numpy as np
import pytest

from jobforge.core import instance_types
from jobforge.workloads.serving import codecs, frameworks


def test_the_catalog_covers_the_endpoint_types_with_dated_sourced_prices():
    import botocore.session

    model = botocore.session.get_session().get_service_model("sagemaker")
    enum = set(model.shape_for("ProductionVariantInstanceType").enum)
    catalog = instance_types.load()
    assert len(enum & set(catalog)) >= 250
    medium = catalog["ml.t2.medium"]
    assert (medium.vcpus, medium.memory_mb, medium.gpus, medium.architecture) == (2, 4096, 0, "x86_64")
    assert medium.price_per_hour == 0.056 and "us-east-1" in medium.price_source and "2024" in medium.price_source
    assert catalog["ml.g4dn.xlarge"].gpu == "NVIDIA T4" and catalog["ml.c7g.large"].architecture == "arm64"
    assert catalog["ml.inf2.xlarge"].accelerator == "AWS Inferentia2"
    assert catalog["ml.r5.large"].price_per_hour is None  # no agreed price: none is made up


def test_an_override_file_changes_and_adds_types(tmp_path):
    override = tmp_path / "catalog.json"
    override.write_text(json.dumps({
        "prices": {"offer": "our negotiated rate", "region": "eu-west-1", "as_of": "2026-01", "source": "contract"},
        "instance_types": {"ml.r5.large": {"price_per_hour": 0.2},
                           "ml.custom.large": {"vcpus": 2, "memory_gib": 3, "gpus": 0, "architecture": "x86_64"}}}))
    catalog = instance_types.load(override)
    assert catalog["ml.r5.large"].price_per_hour == 0.2 and "contract" in catalog["ml.r5.large"].price_source
    assert catalog["ml.r5.large"].vcpus == 2  # the shipped fields stay
    assert catalog["ml.custom.large"].memory_mb == 3072
    override.write_text("{}")
    with pytest.raises(ValueError, match="instance_types"):
        instance_types.load(override)


def _host(cores: int, memory_mb: int, gpus: int = 0, architecture: str = "x86_64"):
    from jobforge.execution.endpoint_host import EndpointHost

    host = EndpointHost.__new__(EndpointHost)
    host.cores, host.memory_mb, host.gpu_ids, host.architecture = list(range(cores)), memory_mb, \
        [str(i) for i in range(gpus)], architecture
    return host


def test_a_type_this_host_cannot_realise_is_refused_with_what_it_lacks():
    from jobforge.execution.endpoint_host import DeployFailed

    small = _host(2, 8192)
    assert small.placement("ml.t2.medium").vcpus == 2
    with pytest.raises(DeployFailed, match=r"4 vCPUs \(this host has 2\)"):
        small.placement("ml.c5.xlarge")
    with pytest.raises(DeployFailed, match="arm64 CPU"):
        small.placement("ml.c7g.large")
    with pytest.raises(DeployFailed, match="AWS Inferentia2"):
        _host(64, 1 << 20).placement("ml.inf2.xlarge")
    with pytest.raises(DeployFailed, match="1 NVIDIA T4"):
        _host(8, 65536).placement("ml.g4dn.xlarge")
    assert _host(8, 65536, gpus=1).placement("ml.g4dn.xlarge").gpus == 1
    with pytest.raises(DeployFailed, match="not in this server's instance catalog"):
        small.placement("ml.g7.2xlarge")


def test_images_and_model_contents_choose_the_server(tmp_path):
    assert frameworks.image_framework(None) is None
    assert frameworks.image_framework(
        "683313688378.dkr.ecr.us-east-1.amazonaws.com/sagemaker-xgboost:1.7-1") == "xgboost"
    with pytest.raises(frameworks.Unservable, match="TensorFlow"):
        frameworks.image_framework("763104351884.dkr.ecr.us-east-1.amazonaws.com/tensorflow-inference:2.13-cpu")
    with pytest.raises(frameworks.Unservable, match="runs no other image for an endpoint"):
        frameworks.image_framework("123456789012.dkr.ecr.us-east-1.amazonaws.com/mine:latest")
    (tmp_path / "model.joblib").write_bytes(b"x")
    assert frameworks.server_kind(tmp_path, None, None, {}) == "sklearn"
    assert frameworks.server_kind(tmp_path, None, "xgboost", {}) == "xgboost"
    (tmp_path / "model.onnx").write_bytes(b"x")
    assert frameworks.server_kind(tmp_path, None, None, {}) == "onnx"
    (tmp_path / "code").mkdir()
    (tmp_path / "code" / "inference.py").write_text("")
    assert frameworks.server_kind(tmp_path, tmp_path / "code", None, {}) == "script"
    with pytest.raises(frameworks.Unservable, match="serve.py"):
        frameworks.server_kind(tmp_path, tmp_path / "code", None, {"SAGEMAKER_PROGRAM": "serve.py"})
    with pytest.raises(frameworks.Unservable, match="nothing jobforge can serve"):
        frameworks.server_kind(tmp_path / "code", None, None, {})


def test_codecs_read_and_write_json_csv_and_npy():
    import io

    array = np.array([[1.5, 2.0], [3.0, 4.25]])
    assert codecs.decode(b"1.5,2\n3,4.25\n", "text/csv").tolist() == array.tolist()
    assert codecs.decode(b'{"instances": [[1.5, 2.0]]}', "application/json").tolist() == [[1.5, 2.0]]
    body, kind = codecs.encode(array, "application/x-npy")
    assert kind == "application/x-npy" and np.load(io.BytesIO(body)).tolist() == array.tolist()
    assert codecs.encode(np.array([1, 2]), "text/csv") == (b"1\n2\n", "text/csv")
    assert codecs.encode(np.float32(0.5), "*/*") == (b"0.5", "application/json")
    with pytest.raises(codecs.UnsupportedType):
        codecs.decode(b"x", "image/png")


def test_the_xgboost_server_answers_with_the_boosters_predictions(tmp_path):
    import xgboost

    from jobforge.workloads.serving import xgboost_model

    rng = np.random.default_rng(0)
    features = rng.normal(size=(64, 3))
    booster = xgboost.train({"max_depth": 2}, xgboost.DMatrix(features, label=features[:, 0] > 0), 5)
    booster.save_model(str(tmp_path / "xgboost-model"))
    predictor = xgboost_model.load(tmp_path, threads=1)
    answer, kind = predictor.invoke(b"\n".join(b",".join(b"%f" % v for v in row) for row in features[:3]),
                                    "text/csv", "application/json")
    expected = booster.predict(xgboost.DMatrix(features[:3].astype(np.float32)))
    assert kind == "application/json" and json.loads(answer) == pytest.approx(expected.tolist(), rel=1e-5)


def test_usage_sums_a_process_tree():
    import os

    from jobforge.execution.endpoint_host import EndpointHost

    instance = SimpleNamespace(hosted=SimpleNamespace(cgroup=None, process=SimpleNamespace(pid=os.getpid(),
                                                                                             poll=lambda: None)),
                               pid=os.getpid())
    usage = EndpointHost.usage(instance)
    assert usage.cpu_seconds > 0 and usage.memory_bytes > 10 * 2**20
