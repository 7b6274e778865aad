"""SageMaker hosting end to end through boto3: models, endpoint configs and endpoints with real model
servers (scikit-learn, ONNX, a tiny Hugging Face text model, an inference.py script), invoked through
sagemaker-runtime, updated, weighted across variants, restarted after a crash, scoped to their account, and
refused where this host cannot realise the instance type."""

from __future__ import annotations

import io
import json
import subprocess
import sys
import tarfile
import time
import uuid

import numpy as np
import pytest
from botocore.exceptions import ClientError

from jobforge.testing_server import ServerProcess
from selftest_kind import SELFTEST_ENV

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
def server(tmp_path_factory):
    """Each instance holds its instance type's memory (4 GiB for ml.t2.medium): this module's endpoints, side
    by side, are allowed more than a small CI host has (they use far less)."""
    srv = ServerProcess(tmp_path_factory.mktemp("server") / "data", env=SELFTEST_ENV,
                        extra_args=["--memory-mb", "65536"]).start()
    yield srv
    srv.stop()


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
           variants=None, name=None, container=None) -> str:
    name = name or f"ep-{uuid.uuid4().hex[:8]}"
    container = container or {"Environment": environment or {}}
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


def test_an_onnx_model_answers_with_its_graph(runtime, sm, s3, role_arn):
    from skl2onnx import convert_sklearn
    from skl2onnx.common.data_types import FloatTensorType
    from sklearn.linear_model import LinearRegression

    rng = np.random.default_rng(1)
    features = rng.normal(size=(50, 3)).astype(np.float32)
    model = LinearRegression().fit(features, features @ np.array([1.0, -2.0, 0.5]) + 3)
    graph = convert_sklearn(model, initial_types=[("features", FloatTensorType([None, 3]))])
    name = deploy(sm, role_arn, upload(s3, {"model.onnx": graph.SerializeToString()}))
    assert wait(sm, name)["EndpointStatus"] == "InService"
    answer = runtime.invoke_endpoint(EndpointName=name, Body=json.dumps(features[:4].tolist()),
                                     ContentType="application/json")
    predicted = np.asarray(json.loads(answer["Body"].read())).reshape(-1)
    np.testing.assert_allclose(predicted, model.predict(features[:4]), rtol=1e-4)
    named = runtime.invoke_endpoint(EndpointName=name, Body=json.dumps({"features": features[:2].tolist()}),
                                    ContentType="application/json")
    assert np.asarray(json.loads(named["Body"].read())).size == 2
    sm.delete_endpoint(EndpointName=name)


@pytest.fixture(scope="module")
def text_endpoint(sm, s3, role_arn, tmp_path_factory):
    from jobforge import tinylm
    folder = tinylm.build(tmp_path_factory.mktemp("tiny") / "model", ["alpha bravo charlie delta echo"] * 20)
    files = {path.name: path.read_bytes() for path in folder.iterdir() if path.is_file()}
    name = deploy(sm, role_arn, upload(s3, files),
                  image="763104351884.dkr.ecr.us-east-1.amazonaws.com/huggingface-pytorch-tgi-inference:2.4-tgi3.0")
    described = wait(sm, name, timeout=300)
    assert described["EndpointStatus"] == "InService", described.get("FailureReason")
    return name


def test_a_hugging_face_text_model_generates_and_streams(runtime, text_endpoint):
    request = {"inputs": "alpha bravo", "parameters": {"max_new_tokens": 8}}
    answer = runtime.invoke_endpoint(EndpointName=text_endpoint, Body=json.dumps(request),
                                     ContentType="application/json")
    generated = json.loads(answer["Body"].read())[0]["generated_text"]
    assert isinstance(generated, str) and generated
    streamed = runtime.invoke_endpoint_with_response_stream(EndpointName=text_endpoint, Body=json.dumps(request),
                                                            ContentType="application/json")
    assert streamed["ContentType"] == "text/event-stream"
    raw = b"".join(event["PayloadPart"]["Bytes"] for event in streamed["Body"])
    events = [json.loads(line[len(b"data:"):]) for line in raw.split(b"\n\n") if line.startswith(b"data:")]
    assert len(events) >= 2
    assert "".join(event["token"]["text"] for event in events) == generated  # greedy: the same text
    assert events[-1]["generated_text"] == generated
    assert events[-1]["details"]["generated_tokens"] <= 8


SCRIPT = b"""
import json, os

def model_fn(model_dir):
    with open(os.path.join(model_dir, "weights.json")) as handle:
        return json.load(handle)

def input_fn(body, content_type):
    assert content_type == "application/json", content_type
    return json.loads(body)

def predict_fn(data, model):
    if data.get("crash"):
        os._exit(3)  # the model server dies: the supervisor starts it again
    return {"score": sum(w * x for w, x in zip(model["weights"], data["x"])), "pid": os.getpid()}

def output_fn(prediction, accept):
    return json.dumps(prediction), "application/json"
"""


@pytest.fixture(scope="module")
def script_endpoint(sm, s3, role_arn):
    files = {"weights.json": json.dumps({"weights": [1, 2, 3]}).encode(), "code/inference.py": SCRIPT}
    name = deploy(sm, role_arn, upload(s3, files),
                  image="763104351884.dkr.ecr.us-east-1.amazonaws.com/pytorch-inference:2.1-cpu-py310")
    described = wait(sm, name)
    assert described["EndpointStatus"] == "InService", described.get("FailureReason")
    return name


def score(runtime, name: str, body: dict) -> dict:
    answer = runtime.invoke_endpoint(EndpointName=name, Body=json.dumps(body), ContentType="application/json")
    return json.loads(answer["Body"].read())


def test_an_inference_script_serves_with_its_own_functions(runtime, script_endpoint):
    assert score(runtime, script_endpoint, {"x": [1, 1, 1]})["score"] == 6


def test_a_crashing_model_server_is_restarted(server, runtime, script_endpoint):
    before = score(runtime, script_endpoint, {"x": [0, 0, 1]})["pid"]
    with pytest.raises(ClientError) as caught:
        runtime.invoke_endpoint(EndpointName=script_endpoint, Body=json.dumps({"crash": True}),
                                ContentType="application/json")
    assert caught.value.response["Error"]["Code"] == "ServiceUnavailable"
    after = score(runtime, script_endpoint, {"x": [0, 0, 1]})  # waits for the restarted server
    assert after["score"] == 3
    logs = server.client("logs")
    streams = logs.describe_log_streams(logGroupName=f"/aws/sagemaker/Endpoints/{script_endpoint}")["logStreams"]
    assert streams and streams[0]["logStreamName"].startswith("AllTraffic/")


def test_update_moves_traffic_to_the_new_config_without_dropping_requests(sm, runtime, script_endpoint,
                                                                          sklearn_endpoint, role_arn):
    import threading

    config = f"{script_endpoint}-v2"
    sm.create_endpoint_config(EndpointConfigName=config, ProductionVariants=[
        {"VariantName": "Second", "ModelName": script_endpoint, "InstanceType": INSTANCE,
         "InitialInstanceCount": 1}])
    failures, stop = [], threading.Event()

    def keep_calling():
        while not stop.is_set():
            try:
                score(runtime, script_endpoint, {"x": [1, 0, 0]})
            except ClientError as err:
                failures.append(err)

    caller = threading.Thread(target=keep_calling)
    caller.start()
    sm.update_endpoint(EndpointName=script_endpoint, EndpointConfigName=config)
    assert sm.describe_endpoint(EndpointName=script_endpoint)["EndpointStatus"] == "Updating"
    described = wait(sm, script_endpoint)
    stop.set()
    caller.join()
    assert described["EndpointStatus"] == "InService" and described["EndpointConfigName"] == config
    assert [v["VariantName"] for v in described["ProductionVariants"]] == ["Second"]
    assert not failures
    answer = runtime.invoke_endpoint(EndpointName=script_endpoint, Body=json.dumps({"x": [1, 0, 0]}),
                                     ContentType="application/json")
    assert answer["InvokedProductionVariant"] == "Second"


def test_traffic_is_shared_by_weight_across_variants(sm, runtime, sklearn_endpoint, iris):
    name = f"weights-{uuid.uuid4().hex[:6]}"
    sm.create_endpoint_config(EndpointConfigName=name, ProductionVariants=[
        {"VariantName": variant, "ModelName": sklearn_endpoint, "InstanceType": INSTANCE, "InitialInstanceCount": 1,
         "InitialVariantWeight": weight} for variant, weight in (("Light", 1.0), ("Heavy", 3.0))])
    sm.create_endpoint(EndpointName=name, EndpointConfigName=name)
    described = wait(sm, name)
    assert described["EndpointStatus"] == "InService", described.get("FailureReason")
    body = json.dumps(iris[1][:1].tolist())
    seen = [runtime.invoke_endpoint(EndpointName=name, Body=body, ContentType="application/json")[
        "InvokedProductionVariant"] for _ in range(200)]
    assert 110 < seen.count("Heavy") < 190 and seen.count("Light") + seen.count("Heavy") == 200
    targeted = runtime.invoke_endpoint(EndpointName=name, Body=body, ContentType="application/json",
                                       TargetVariant="Light")
    assert targeted["InvokedProductionVariant"] == "Light"
    assert {v["CurrentWeight"] for v in described["ProductionVariants"]} == {1.0, 3.0}
    sm.delete_endpoint(EndpointName=name)
    deadline = time.time() + 60
    while name in [e["EndpointName"] for e in sm.list_endpoints()["Endpoints"]] and time.time() < deadline:
        time.sleep(0.2)
    assert name not in [e["EndpointName"] for e in sm.list_endpoints()["Endpoints"]]


def test_an_instance_type_this_host_cannot_realise_fails_with_the_reason(sm, sklearn_endpoint):
    name = f"toolarge-{uuid.uuid4().hex[:6]}"
    sm.create_endpoint_config(EndpointConfigName=name, ProductionVariants=[
        {"VariantName": "AllTraffic", "ModelName": sklearn_endpoint, "InstanceType": "ml.p4d.24xlarge",
         "InitialInstanceCount": 1}])
    sm.create_endpoint(EndpointName=name, EndpointConfigName=name)
    described = wait(sm, name)
    assert described["EndpointStatus"] == "Failed"
    assert "cannot realise the instance type ml.p4d.24xlarge" in described["FailureReason"]
    assert "96 vCPUs" in described["FailureReason"] and "NVIDIA A100" in described["FailureReason"]
    sm.delete_endpoint(EndpointName=name)


def test_another_accounts_endpoint_is_unreachable(server, sklearn_endpoint):
    subprocess.run([sys.executable, "-m", "jobforge.cli", "--data-dir", str(server.data_dir), "accounts", "create",
                    "hosting-other"], check=True, capture_output=True, timeout=120)
    other = server.client("sagemaker-runtime", profile="hosting-other")
    with pytest.raises(ClientError) as caught:
        other.invoke_endpoint(EndpointName=sklearn_endpoint, Body=b"1,2,3,4", ContentType="text/csv")
    assert caught.value.response["Error"]["Code"] == "ValidationError"
    assert sklearn_endpoint not in [e["EndpointName"] for e in
                                    server.client("sagemaker", profile="hosting-other").list_endpoints()["Endpoints"]]
    elsewhere = server.client("sagemaker-runtime", region="eu-west-1")
    with pytest.raises(ClientError):
        elsewhere.invoke_endpoint(EndpointName=sklearn_endpoint, Body=b"1,2,3,4", ContentType="text/csv")


def test_refusals_say_why(sm, role_arn):
    with pytest.raises(ClientError) as caught:
        sm.create_model(ModelName="custom-image", ExecutionRoleArn=role_arn,
                        PrimaryContainer={"Image": "123456789012.dkr.ecr.us-east-1.amazonaws.com/mine:1"})
    assert "runs no other image for an endpoint" in caught.value.response["Error"]["Message"]
    with pytest.raises(ClientError) as caught:
        sm.create_model(ModelName="package", ExecutionRoleArn=role_arn,
                        PrimaryContainer={"ModelPackageName": "no-such-package/1"})
    assert caught.value.response["Error"]["Code"] == "ValidationException"
    with pytest.raises(ClientError) as caught:
        sm.describe_endpoint(EndpointName="nowhere")
    assert caught.value.response["Error"]["Code"] == "ValidationException"


def test_models_and_configs_list_and_delete(sm, sklearn_endpoint):
    models = sm.list_models(NameContains=sklearn_endpoint)["Models"]
    assert [m["ModelName"] for m in models] == [sklearn_endpoint]
    described = sm.describe_model(ModelName=sklearn_endpoint)
    assert described["PrimaryContainer"]["ModelDataUrl"].startswith("s3://")
    config = sm.describe_endpoint_config(EndpointConfigName=sklearn_endpoint)
    assert config["ProductionVariants"][0]["InstanceType"] == INSTANCE
    page = sm.list_endpoint_configs(MaxResults=1, SortBy="Name", SortOrder="Ascending")
    assert len(page["EndpointConfigs"]) == 1 and "NextToken" in page


def test_a_model_package_version_is_deployed(sm, runtime, role_arn, sklearn_endpoint, iris):
    url = sm.describe_model(ModelName=sklearn_endpoint)["PrimaryContainer"]["ModelDataUrl"]
    sm.create_model_package_group(ModelPackageGroupName="iris-models")
    arn = sm.create_model_package(ModelPackageGroupName="iris-models", InferenceSpecification={
        "Containers": [{"Image": "683313688378.dkr.ecr.us-east-1.amazonaws.com/sagemaker-scikit-learn:1.2-1-cpu-py3",
                        "ModelDataUrl": url}],
        "SupportedContentTypes": ["text/csv"], "SupportedResponseMIMETypes": ["application/json"]})[
        "ModelPackageArn"]
    name = deploy(sm, role_arn, None, name="from-package", container={"ModelPackageName": arn})
    described = wait(sm, name)
    assert described["EndpointStatus"] == "InService", described.get("FailureReason")
    assert sm.describe_model(ModelName=name)["PrimaryContainer"]["ModelPackageName"] == arn
    model, rows = iris
    answer = runtime.invoke_endpoint(EndpointName=name, Body=json.dumps(rows.tolist()),
                                     ContentType="application/json")
    assert json.loads(answer["Body"].read()) == model.predict(rows).tolist()
    sm.delete_endpoint(EndpointName=name)
