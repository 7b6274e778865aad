"""SageMaker endpoints through the AWS CLI and the SageMaker Python SDK v3 (sagemaker-core ``Model``,
``EndpointConfig``, ``Endpoint``), unmodified, configured only by the files the server wrote."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import numpy as np
import pytest

AWS = str(Path(sys.executable).with_name("aws"))
BUCKET = "endpoint-clients"


def client_env(server) -> dict:
    env = {key: value for key, value in os.environ.items() if not key.startswith("AWS_")}
    env.update(AWS_CONFIG_FILE=str(server.data_dir / "config"),
               AWS_SHARED_CREDENTIALS_FILE=str(server.data_dir / "credentials"))
    return env


def aws(server, *args, parse=True):
    done = subprocess.run([AWS, *args], capture_output=True, text=True, env=client_env(server), timeout=120)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout) if parse and done.stdout.strip() else done.stdout


@pytest.fixture(scope="module")
def model_uri(server):
    import joblib
    from sklearn.tree import DecisionTreeRegressor

    rng = np.random.default_rng(3)
    features = rng.normal(size=(100, 2))
    model = DecisionTreeRegressor(max_depth=3).fit(features, features.sum(axis=1))
    saved = io.BytesIO()
    joblib.dump(model, saved)
    archive = io.BytesIO()
    with tarfile.open(fileobj=archive, mode="w:gz") as tar:
        info = tarfile.TarInfo("model.joblib")
        info.size = len(saved.getvalue())
        tar.addfile(info, io.BytesIO(saved.getvalue()))
    s3 = server.client("s3")
    s3.create_bucket(Bucket=BUCKET)
    s3.put_object(Bucket=BUCKET, Key="tree/model.tar.gz", Body=archive.getvalue())
    return f"s3://{BUCKET}/tree/model.tar.gz", model


def settled(server, name: str) -> str:
    deadline = time.time() + 120
    while (status := aws(server, "sagemaker", "describe-endpoint", "--endpoint-name", name)["EndpointStatus"]) in \
            ("Creating", "Updating"):
        assert time.time() < deadline
        time.sleep(0.5)
    return status


def test_the_aws_cli_deploys_invokes_and_deletes(server, role_arn, model_uri, tmp_path):
    uri, model = model_uri
    aws(server, "sagemaker", "create-model", "--model-name", "cli-tree", "--execution-role-arn", role_arn,
        "--primary-container", json.dumps({"ModelDataUrl": uri}))
    aws(server, "sagemaker", "create-endpoint-config", "--endpoint-config-name", "cli-tree", "--production-variants",
        json.dumps([{"VariantName": "AllTraffic", "ModelName": "cli-tree", "InstanceType": "ml.t2.medium",
                     "InitialInstanceCount": 1}]))
    aws(server, "sagemaker", "create-endpoint", "--endpoint-name", "cli-tree", "--endpoint-config-name", "cli-tree")
    assert settled(server, "cli-tree") == "InService"  # (the CLI's waiter polls every 30 s)
    out = tmp_path / "answer.json"
    meta = aws(server, "sagemaker-runtime", "invoke-endpoint", "--endpoint-name", "cli-tree", "--content-type",
               "text/csv", "--body", "0.5,0.25", str(out))
    assert meta["InvokedProductionVariant"] == "AllTraffic"
    assert json.loads(out.read_text()) == pytest.approx(model.predict([[0.5, 0.25]]).tolist())
    aws(server, "sagemaker", "delete-endpoint", "--endpoint-name", "cli-tree", parse=False)
    deadline = time.time() + 60
    while "cli-tree" in [e["EndpointName"] for e in aws(server, "sagemaker", "list-endpoints")["Endpoints"]]:
        assert time.time() < deadline
        time.sleep(0.5)


SDK_SCRIPT = """
import json, sys
from sagemaker.core.resources import Endpoint, EndpointConfig, Model
from sagemaker.core.shapes import ContainerDefinition, ProductionVariant

uri, role = sys.argv[1:3]
model = Model.create(model_name="sdk-tree", execution_role_arn=role,
                     primary_container=ContainerDefinition(model_data_url=uri))
config = EndpointConfig.create(endpoint_config_name="sdk-tree", production_variants=[ProductionVariant(
    variant_name="AllTraffic", model_name=model.model_name, instance_type="ml.t2.medium", initial_instance_count=1)])
endpoint = Endpoint.create(endpoint_name="sdk-tree", endpoint_config_name=config.endpoint_config_name)
endpoint.wait_for_status("InService", poll=1, timeout=120)
answer = endpoint.invoke(body="0.5,0.25", content_type="text/csv", accept="application/json")
prediction = json.loads(answer.body.read())
endpoint.delete()
endpoint.wait_for_delete(poll=1, timeout=120)
print()  # the SDK's progress panel ends without a newline
print(json.dumps({"prediction": prediction, "variant": answer.invoked_production_variant}))
"""


def test_the_sagemaker_sdk_deploys_invokes_and_deletes(server, role_arn, model_uri):
    uri, model = model_uri
    done = subprocess.run([sys.executable, "-c", SDK_SCRIPT, uri, role_arn], capture_output=True, text=True,
                          env=client_env(server), timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["prediction"] == pytest.approx(model.predict([[0.5, 0.25]]).tolist())
    assert result["variant"] == "AllTraffic"
