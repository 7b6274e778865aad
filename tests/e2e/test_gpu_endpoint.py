"""Where torch sees a CUDA GPU, an endpoint on a GPU instance type gets the GPU (CUDA_VISIBLE_DEVICES) and a
Hugging Face text model generates on it, through the real server and boto3; skipped elsewhere."""

from __future__ import annotations

import json
import time

import pytest

from jobforge import tinylm
from test_sagemaker_endpoints import deploy, upload, wait  # noqa: F401 (fixtures come from that module too)
from test_sagemaker_endpoints import runtime, s3, server, sm  # noqa: F401

GPU_TYPE = "ml.g5.xlarge"  # 4 vCPUs, 16 GiB, one NVIDIA A10G

SCRIPT = b"""
import os, torch

def model_fn(model_dir):
    return torch.nn.Linear(2, 1).to("cuda")

def transform_fn(model, body, content_type, accept):
    import json
    return json.dumps({"visible": os.environ["CUDA_VISIBLE_DEVICES"], "available": torch.cuda.is_available(),
                       "device": str(next(model.parameters()).device), "cores": len(os.sched_getaffinity(0))})
"""


@pytest.fixture(scope="module")
def cuda() -> None:
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available():
        pytest.skip("no CUDA GPU visible to torch on this host")


def on_a_gpu(name: str) -> list[dict]:
    return [{"VariantName": "AllTraffic", "ModelName": name, "InstanceType": GPU_TYPE, "InitialInstanceCount": 1}]


def test_a_gpu_instance_gets_its_gpu_and_pinned_cores(cuda, sm, s3, runtime, role_arn):
    name = deploy(sm, role_arn, upload(s3, {"code/inference.py": SCRIPT}), variants=on_a_gpu("gpu-script"),
                  name="gpu-script")
    described = wait(sm, name, timeout=300)
    assert described["EndpointStatus"] == "InService", described.get("FailureReason")
    answer = json.loads(runtime.invoke_endpoint(EndpointName=name, Body=b"{}",
                                                ContentType="application/json")["Body"].read())
    assert answer["available"] and answer["device"] == "cuda:0" and answer["visible"] != "-1"
    assert answer["cores"] == 4
    sm.delete_endpoint(EndpointName=name)  # its GPU is its own until it is gone
    while name in [e["EndpointName"] for e in sm.list_endpoints()["Endpoints"]]:
        time.sleep(0.2)


def test_a_text_model_generates_on_the_gpu(cuda, sm, s3, runtime, role_arn, tmp_path):
    folder = tinylm.build(tmp_path / "model", ["alpha bravo charlie delta echo"] * 20)
    files = {path.name: path.read_bytes() for path in folder.iterdir() if path.is_file()}
    name = deploy(sm, role_arn, upload(s3, files), variants=on_a_gpu("gpu-text"), name="gpu-text")
    described = wait(sm, name, timeout=300)
    assert described["EndpointStatus"] == "InService", described.get("FailureReason")
    request = {"inputs": "alpha bravo", "parameters": {"max_new_tokens": 8}}
    answer = runtime.invoke_endpoint(EndpointName=name, Body=json.dumps(request), ContentType="application/json")
    assert isinstance(json.loads(answer["Body"].read())[0]["generated_text"], str)
