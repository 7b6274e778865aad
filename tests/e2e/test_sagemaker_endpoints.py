"""SageMaker hosting end to end through boto3: models, endpoint configs and endpoints with real model
servers (scikit-learn, ONNX, a tiny Hugging Face text model, an inference.py script), invoked through
sagemaker-runtime, updated, weighted across variants, restarted after a crash, scoped to their account, and
refused where this host cannot realise the instance type."""

from __future__ import annotations

import io
import json
import tarfile
import time
import uuid

import numpy as np
import pytest
from botocore.exceptions import ClientError

INSTANCE = "ml.t2.medium"  # 2 vCPUs, 4 GiB: what a small CI host realises
BUCKET = "endpoint-models"


def tarball(files: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


@pytest.fixture(scope="module")
def sm(server):
    return server.client("sagemaker")


@pytest.fixture(scope="module")
def runtime(server):
    return server.client("sagemaker-runtime")


@pytest.fixture(scope="module")
def s3(server):
    client = server.client("s3")
    client.create_bucket(Bucket=BUCKET)
    return client


def upload(s3, files: dict[str, bytes]) -> str:
    key = f"{uuid.uuid4().hex}/model.tar.gz"
    s3.put_object(Bucket=BUCKET, Key=key, Body=tarball(files))
    return f"s3://{BUCKET}/{key}"


def wait(sm, name: str, timeout: float = 180) -> dict:
    deadline = time.time() + timeout
    while time.time() < deadline:
        described = sm.describe_endpoint(EndpointName=name)
        if described["EndpointStatus"] not in ("Creating", "Updating", "SystemUpdating"):
            return described
        time.sleep(0.2)
    raise AssertionError(f"endpoint {name} still {described['EndpointStatus']}")


def deploy(sm, role_arn, model_url: str | None, *, image: str | None = None, environment=None,
           variants=None, name=None) -> str:
    name = name or f"ep-{uuid.uuid4().hex[:8]}"
    container = {"Environment": environment or {}}
    if model_url:
        container["ModelDataUrl"] = model_url
    if image:
        container["Image"] = image
    sm.create_model(ModelName=name, ExecutionRoleArn=role_arn, PrimaryContainer=container)
    sm.create_endpoint_config(EndpointConfigName=name, ProductionVariants=variants or [
        {"VariantName": "AllTraffic", "ModelName": name, "InstanceType": INSTANCE, "InitialInstanceCount": 1}])
    sm.create_endpoint(EndpointName=name, EndpointConfigName=name)
    return name


@pytest.fixture(scope="module")
def iris():
    from sklearn.linear_model import LogisticRegression

    rng = np.random.default_rng(0)
    features = rng.normal(size=(200, 4))
    labels = (features[:, 0] + features[:, 1] > 0).astype(int)
    return LogisticRegression().fit(features, labels), features[:5]


@pytest.fixture(scope="module")
def sklearn_endpoint(sm, s3, role_arn, iris):
    import joblib

    buffer = io.BytesIO()
    joblib.dump(iris[0], buffer)
    name = deploy(sm, role_arn, upload(s3, {"model.joblib": buffer.getvalue()}),
                  image="683313688378.dkr.ecr.us-east-1.amazonaws.com/sagemaker-scikit-learn:1.2-1-cpu-py3")
    described = wait(sm, name)
    assert described["EndpointStatus"] == "InService", described.get("FailureReason")
    return name


def test_a_scikit_learn_model_answers_csv_and_json(sm, runtime, sklearn_endpoint, iris):
    model, rows = iris
    csv = "\n".join(",".join(str(value) for value in row) for row in rows)
    answer = runtime.invoke_endpoint(EndpointName=sklearn_endpoint, Body=csv, ContentType="text/csv",
                                     Accept="application/json")
    assert json.loads(answer["Body"].read()) == model.predict(rows).tolist()
    assert answer["ContentType"] == "application/json"
    assert answer["InvokedProductionVariant"] == "AllTraffic"
    answer = runtime.invoke_endpoint(EndpointName=sklearn_endpoint, Body=json.dumps(rows.tolist()),
                                     ContentType="application/json", Accept="text/csv")
    assert answer["Body"].read().decode().split() == [str(v) for v in model.predict(rows).tolist()]
    described = sm.describe_endpoint(EndpointName=sklearn_endpoint)
    assert described["ProductionVariants"][0]["CurrentInstanceCount"] == 1
    assert described["EndpointArn"].endswith(f":endpoint/{sklearn_endpoint}")


def test_bad_input_is_the_model_servers_error(runtime, sklearn_endpoint):
    with pytest.raises(ClientError) as caught:
        runtime.invoke_endpoint(EndpointName=sklearn_endpoint, Body=b"not,numbers", ContentType="text/csv")
    error = caught.value.response
    assert error["Error"]["Code"] == "ModelError"
    assert error["OriginalStatusCode"] == 400
    assert "Received client error (400)" in error["Error"]["Message"]
