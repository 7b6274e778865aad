"""CreateCompilationJob with ModelPackageVersionArn: the versioned package's first container gives the model
data, framework and input shapes (as InputConfig would), end to end through boto3 against the real server."""

from __future__ import annotations

import json
import time

import pytest
from botocore.exceptions import ClientError

from jobforge.demo import tiny_nets

BUCKET = "packaged-models"


def test_a_package_version_compiles_like_its_input_config(server, role_arn, tmp_path):
    sm, s3 = server.client("sagemaker"), server.client("s3")
    s3.create_bucket(Bucket=BUCKET)
    model, example = tiny_nets.build("mlp")
    s3.upload_file(str(tiny_nets.tarball([tiny_nets.torchscript(model, example, tmp_path / "model.pth")],
                                         tmp_path / "model.tar.gz")), BUCKET, "mlp/model.tar.gz")
    sm.create_model_package_group(ModelPackageGroupName="compiled-mlp")
    container = {"Image": "763104351884.dkr.ecr.us-east-1.amazonaws.com/pytorch-inference:2.1-cpu-py310",
                 "ModelDataUrl": f"s3://{BUCKET}/mlp/model.tar.gz", "Framework": "PYTORCH",
                 "ModelInput": {"DataInputConfig": json.dumps([[1, 256]])}}
    version = sm.create_model_package(ModelPackageGroupName="compiled-mlp", InferenceSpecification={
        "Containers": [container]})["ModelPackageArn"]
    output = {"S3OutputLocation": f"s3://{BUCKET}/out", "TargetDevice": "ml_c5",
              "CompilerOptions": json.dumps({"timing_runs": 10})}
    base = dict(RoleArn=role_arn, OutputConfig=output, StoppingCondition={"MaxRuntimeInSeconds": 900})
    sm.create_compilation_job(CompilationJobName="from-package", ModelPackageVersionArn=version, **base)
    deadline = time.time() + 240
    while (job := sm.describe_compilation_job(CompilationJobName="from-package"))["CompilationJobStatus"] not in (
            "COMPLETED", "FAILED", "STOPPED"):
        assert time.time() < deadline
        time.sleep(0.3)
    assert job["CompilationJobStatus"] == "COMPLETED", job["FailureReason"]
    assert job["ModelPackageVersionArn"] == version
    assert job["InputConfig"] == {"S3Uri": container["ModelDataUrl"], "Framework": "PYTORCH",
                                  "DataInputConfig": "[[1, 256]]"}
    assert job["ModelArtifacts"]["S3ModelArtifacts"] == f"s3://{BUCKET}/out/model-ml_c5.tar.gz"

    # An unversioned package, a container without a framework, and a version that does not exist are refused.
    loose = sm.create_model_package(ModelPackageName="loose-mlp", InferenceSpecification={
        "Containers": [container]})["ModelPackageArn"]
    bare = sm.create_model_package(ModelPackageGroupName="compiled-mlp", InferenceSpecification={
        "Containers": [{"ModelDataUrl": container["ModelDataUrl"]}]})["ModelPackageArn"]
    for arn, reason in ((loose, "versioned"), (bare, "Framework"), (version[:-1] + "9", "does not exist")):
        with pytest.raises(ClientError) as caught:
            sm.create_compilation_job(CompilationJobName="refused", ModelPackageVersionArn=arn, **base)
        assert caught.value.response["Error"]["Code"] == "ValidationException"
        assert reason in caught.value.response["Error"]["Message"]
