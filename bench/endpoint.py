"""SageMaker endpoints: what InvokeEndpoint (boto3, through jobforge: SigV4, routing, the endpoint's
variant and instance, the model server) costs over calling the same model server's ``POST /invocations``
directly (the anchor: a plain kept-alive HTTP/1.1 client on its Unix socket), side by side in one run,
interleaved round by round.

Two models, each deployed on an ml.t2.medium endpoint: a scikit-learn random forest scoring a batch of rows
(a typical request: target at most 1.3x the direct call's p50), and a one-row linear model (nearly free, so
its ratio is the fixed cost of the hop; its added milliseconds are printed too).
"""

from __future__ import annotations

import argparse
import http.client
import io
import json
import socket
import statistics
import sys
import tarfile
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from jobforge.testing_server import ServerProcess  # noqa: E402

BUCKET = "bench-endpoints"
TARGET = 1.3


class UnixHTTP(http.client.HTTPConnection):
    def __init__(self, path: str):
        super().__init__("localhost", timeout=60)
        self.socket_path = path

    def connect(self):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.connect(self.socket_path)


def models():
    import joblib
    from sklearn.ensemble import RandomForestRegressor
    from sklearn.linear_model import LinearRegression

    rng = np.random.default_rng(0)
    features = rng.normal(size=(2000, 16))
    target = features @ rng.normal(size=16) + rng.normal(size=2000)
    forest = RandomForestRegressor(n_estimators=100, max_depth=10, random_state=0, n_jobs=1).fit(features, target)
    linear = LinearRegression().fit(features, target)
    for name, model, rows in (("forest, 200 rows", forest, features[:200]), ("linear, 1 row", linear, features[:1])):
        saved = io.BytesIO()
        joblib.dump(model, saved)
        yield name, saved.getvalue(), "\n".join(",".join(f"{v:.6f}" for v in row) for row in rows).encode()


def tarball(data: bytes) -> bytes:
    archive = io.BytesIO()
    with tarfile.open(fileobj=archive, mode="w:gz") as tar:
        info = tarfile.TarInfo("model.joblib")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    return archive.getvalue()


def deploy(server, name: str, model: bytes) -> Path:
    s3, sm = server.client("s3"), server.client("sagemaker")
    s3.put_object(Bucket=BUCKET, Key=f"{name}/model.tar.gz", Body=tarball(model))
    role = f"arn:aws:iam::{server.client('sts').get_caller_identity()['Account']}:role/JobforgeExecutionRole"
    before = set(server.data_dir.glob("jobs/ep-*/model.sock"))
    sm.create_model(ModelName=name, ExecutionRoleArn=role,
                    PrimaryContainer={"ModelDataUrl": f"s3://{BUCKET}/{name}/model.tar.gz"})
    sm.create_endpoint_config(EndpointConfigName=name, ProductionVariants=[
        {"VariantName": "AllTraffic", "ModelName": name, "InstanceType": "ml.t2.medium", "InitialInstanceCount": 1}])
    sm.create_endpoint(EndpointName=name, EndpointConfigName=name)
    while (status := sm.describe_endpoint(EndpointName=name)["EndpointStatus"]) == "Creating":
        time.sleep(0.1)
    if status != "InService":
        raise SystemExit(f"{name}: {sm.describe_endpoint(EndpointName=name).get('FailureReason')}")
    (socket_path,) = set(server.data_dir.glob("jobs/ep-*/model.sock")) - before
    return socket_path


def direct_call(connection: UnixHTTP, body: bytes) -> float:
    began = time.perf_counter()
    connection.request("POST", "/invocations", body=body, headers={"Content-Type": "text/csv",
                                                                    "Accept": "application/json"})
    response = connection.getresponse()
    response.read()
    assert response.status == 200
    return time.perf_counter() - began


def endpoint_call(runtime, name: str, body: bytes) -> float:
    began = time.perf_counter()
    runtime.invoke_endpoint(EndpointName=name, Body=body, ContentType="text/csv", Accept="application/json")[
        "Body"].read()
    return time.perf_counter() - began


def measure(server, runtime, name: str, socket_path: Path, body: bytes, rounds: int, per_round: int) -> dict:
    connection = UnixHTTP(str(socket_path))
    direct, through = [], []
    for _ in range(3):  # warm both paths
        direct_call(connection, body)
        endpoint_call(runtime, name, body)
    for _ in range(rounds):
        direct += [direct_call(connection, body) for _ in range(per_round)]
        through += [endpoint_call(runtime, name, body) for _ in range(per_round)]
    connection.close()
    return {"direct_ms": 1000 * statistics.median(direct), "endpoint_ms": 1000 * statistics.median(through)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--per-round", type=int, default=20)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-endpoint-") as tmp:
        server = ServerProcess(Path(tmp) / "jobforge").start()
        try:
            server.client("s3").create_bucket(Bucket=BUCKET)
            runtime = server.client("sagemaker-runtime")
            results = {}
            for index, (label, model, body) in enumerate(models()):
                name = f"bench-{index}"
                results[label] = measure(server, runtime, name, deploy(server, name, model), body, args.rounds,
                                         args.per_round)
        finally:
            server.stop()
    print(f"{'model':20}{'direct p50 ms':>15}{'InvokeEndpoint p50 ms':>23}{'added ms':>10}{'ratio':>8}")
    for label, result in results.items():
        ratio = result["endpoint_ms"] / result["direct_ms"]
        print(f"{label:20}{result['direct_ms']:>15.2f}{result['endpoint_ms']:>23.2f}"
              f"{result['endpoint_ms'] - result['direct_ms']:>10.2f}{ratio:>7.2f}x")
    typical = results["forest, 200 rows"]
    ratio = typical["endpoint_ms"] / typical["direct_ms"]
    print(f"\nInvokeEndpoint over the model server called directly (forest, 200 rows): {ratio:.2f}x "
          f"(target at most {TARGET}x): {'met' if ratio <= TARGET else 'missed'}")
    print(json.dumps({"ratio": round(ratio, 3), "target": TARGET}))


if __name__ == "__main__":
    main()
