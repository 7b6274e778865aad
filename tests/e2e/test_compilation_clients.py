"""Compilation jobs through the AWS CLI and the SageMaker Python SDK v3 (sagemaker-core), unmodified,
configured only by the files the server wrote."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from jobforge.demo import tiny_nets
from jobforge.runtime import load

AWS = str(Path(sys.executable).with_name("aws"))
BUCKET = "compile-clients"


def client_env(server) -> dict:
    env = {key: value for key, value in os.environ.items() if not key.startswith("AWS_")}
    env.update(AWS_CONFIG_FILE=str(server.data_dir / "config"),
               AWS_SHARED_CREDENTIALS_FILE=str(server.data_dir / "credentials"))
    return env


def aws(server, *args):
    done = subprocess.run([AWS, *args, "--output", "json"], capture_output=True, text=True, env=client_env(server),
                          timeout=120)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout) if args[0] != "s3" else done.stdout


@pytest.fixture(scope="module")
def model_uri(server, tmp_path_factory):
    folder = tmp_path_factory.mktemp("model")
    model, example = tiny_nets.build("mlp")
    tarball = tiny_nets.tarball([tiny_nets.torchscript(model, example, folder / "model.pth")], folder / "model.tar.gz")
    s3 = server.client("s3")
    s3.create_bucket(Bucket=BUCKET)
    s3.upload_file(str(tarball), BUCKET, "mlp/model.tar.gz")
    return f"s3://{BUCKET}/mlp/model.tar.gz"


def test_the_aws_cli_creates_describes_and_lists_a_compilation_job(server, role_arn, model_uri, tmp_path):
    created = aws(server, "sagemaker", "create-compilation-job", "--compilation-job-name", "cli-compiled",
                  "--role-arn", role_arn,
                  "--input-config", json.dumps({"S3Uri": model_uri, "DataInputConfig": '{"input0": [1, 256]}',
                                                "Framework": "PYTORCH", "FrameworkVersion": "2.0"}),
                  "--output-config", json.dumps({"S3OutputLocation": f"s3://{BUCKET}/cli-out",
                                                 "TargetDevice": "ml_c5",
                                                 "CompilerOptions": '{"timing_runs": 10, "backend": "onnxruntime"}'}),
                  "--stopping-condition", "MaxRuntimeInSeconds=900")
    assert created["CompilationJobArn"].endswith(":compilation-job/cli-compiled")
    deadline = time.time() + 240
    while time.time() < deadline:
        job = aws(server, "sagemaker", "describe-compilation-job", "--compilation-job-name", "cli-compiled")
        if job["CompilationJobStatus"] in ("COMPLETED", "FAILED", "STOPPED"):
            break
        time.sleep(0.5)
    assert job["CompilationJobStatus"] == "COMPLETED", job["FailureReason"]
    assert job["InputConfig"]["FrameworkVersion"] == "2.0"
    assert job["ModelArtifacts"]["S3ModelArtifacts"] == f"s3://{BUCKET}/cli-out/model-ml_c5.tar.gz"
    listed = aws(server, "sagemaker", "list-compilation-jobs", "--name-contains", "cli-")
    assert [j["CompilationJobName"] for j in listed["CompilationJobSummaries"]] == ["cli-compiled"]
    aws(server, "s3", "cp", job["ModelArtifacts"]["S3ModelArtifacts"], str(tmp_path / "compiled.tar.gz"))
    assert load(tmp_path / "compiled.tar.gz").backend == "onnxruntime"
    objects = server.client("s3").list_objects_v2(Bucket=BUCKET, Prefix="cli-out/")["Contents"]
    assert {o["Key"] for o in objects} == {"cli-out/model-ml_c5.tar.gz", "cli-out/model-ml_c5-report.json"}


SDK_SCRIPT = """
import json, sys
from sagemaker.core.resources import CompilationJob
from sagemaker.core.shapes import InputConfig, OutputConfig, StoppingCondition

uri, role, output = sys.argv[1:4]
job = CompilationJob.create(
    compilation_job_name="sdk-compiled", role_arn=role,
    input_config=InputConfig(s3_uri=uri, data_input_config='{"input0": [1, 256]}', framework="PYTORCH"),
    output_config=OutputConfig(s3_output_location=output, target_device="ml_m5",
                               compiler_options='{"timing_runs": 10, "backend": "onnxruntime"}'),
    stopping_condition=StoppingCondition(max_runtime_in_seconds=900))
job.wait(poll=1, timeout=240)
job.refresh()
print(json.dumps({"status": job.compilation_job_status, "artifact": job.model_artifacts.s3_model_artifacts,
                  "digest": job.model_digests.artifact_digest, "image": job.inference_image}))
"""


def test_the_sagemaker_sdk_creates_and_waits_for_a_compilation_job(server, role_arn, model_uri):
    done = subprocess.run([sys.executable, "-c", SDK_SCRIPT, model_uri, role_arn, f"s3://{BUCKET}/sdk-out"],
                          capture_output=True, text=True, env=client_env(server), timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["status"] == "COMPLETED"
    assert result["artifact"] == f"s3://{BUCKET}/sdk-out/model-ml_m5.tar.gz"
    assert result["digest"].startswith("blake2b:") and result["image"].startswith("jobforge-runtime:onnxruntime-")
