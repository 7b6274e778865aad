"""Two servers on one PostgreSQL database, each owning the processes and tasks it starts.

A Lambda function created and invoked through the first server keeps working once the second starts (the
second's start revokes none of the first's environments' credentials), and works through the second too (in
an environment of its own); quantum tasks accepted by the first are run by it alone. Killed with SIGKILL, the
first server's lease expires and the second reclaims what it left: its environments' credentials are
revoked, the tasks it had queued run on the second, and the function answers through the second.

An endpoint is served by the server that created it: invoked through the other, the request is forwarded to
it; updated through the other, it makes the update; killed, the other deploys the endpoint anew and serves it.
"""

from __future__ import annotations

import io
import json
import tarfile
import textwrap
import time
import uuid
import zipfile

import pytest
import sqlalchemy as sa

from jobforge.core import server_leases
from jobforge.core.quantum_tasks import quantum_tasks
from jobforge.core.store import access_keys, create_engine
from jobforge.testing_server import ServerProcess

SV1 = "arn:aws:braket:::device/quantum-simulator/amazon/sv1"
SKLEARN_IMAGE = "683313688378.dkr.ecr.us-east-1.amazonaws.com/sagemaker-scikit-learn:1.2-1-cpu-py3"


def ghz(qubits: int) -> str:
    return f"OPENQASM 3.0;\nqubit[{qubits}] q;\nbit[{qubits}] b;\nh q[0];\n" + "".join(
        f"cnot q[{i}], q[{i + 1}];\n" for i in range(qubits - 1)) + "b = measure q;"


WHO_AM_I = """
import boto3

def handler(event, context):
    return {"arn": boto3.client("sts").get_caller_identity()["Arn"], "echo": event}
"""


@pytest.fixture
def cluster(tmp_path_factory, postgres_url, external_s3):
    """Starts servers on one database and object store, as the test asks; stops them all afterwards. Their data
    dirs have short paths: a model server's socket path must fit AF_UNIX's limit."""
    args = ["--database-url", postgres_url, "--cpus", "2", "--object-store", external_s3["url"]]
    root = tmp_path_factory.mktemp("srv")
    started = []

    def start(name: str) -> ServerProcess:
        (root / name).mkdir()
        server = ServerProcess(root / name / "data", extra_args=args, env=external_s3["env"]).start()
        started.append(server)
        return server

    engine = create_engine(postgres_url)
    yield start, engine
    for server in started:
        server.stop()
    engine.dispose()


def _code(source: str) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("app.py", textwrap.dedent(source))
    return buffer.getvalue()


def _server_id(server: ServerProcess) -> str:
    return (server.data_dir / server_leases.ID_FILE).read_text().strip()


def _invoke(server: ServerProcess, name: str, event: dict) -> dict:
    answer = server.client("lambda").invoke(FunctionName=name, Payload=json.dumps(event).encode())
    payload = json.loads(answer["Payload"].read())
    assert "FunctionError" not in answer, payload
    return payload


def _create_tasks(server: ServerProcess, count: int, qubits: int) -> list[str]:
    braket = server.client("braket")
    program = json.dumps({"braketSchemaHeader": {"name": "braket.ir.openqasm.program", "version": "1"},
                          "source": ghz(qubits)})
    return [braket.create_quantum_task(clientToken=str(uuid.uuid4()), deviceArn=SV1, shots=1000,
                                       outputS3Bucket="results", outputS3KeyPrefix="tasks",
                                       action=program)["quantumTaskArn"] for _ in range(count)]


def _tasks(engine, arns: list[str]) -> list:
    with engine.connect() as conn:
        return conn.execute(sa.select(quantum_tasks.c.status, quantum_tasks.c.server_id)
                            .where(quantum_tasks.c.arn.in_(arns))).all()


def _wait_for_tasks(engine, arns: list[str], seconds: float = 180) -> list:
    deadline = time.time() + seconds
    while True:
        rows = _tasks(engine, arns)
        if all(row.status == "COMPLETED" for row in rows):
            return rows
        assert all(row.status in ("QUEUED", "RUNNING", "COMPLETED") for row in rows), rows
        assert time.time() < deadline, rows
        time.sleep(0.2)


def test_each_server_keeps_its_own_and_the_survivor_reclaims_a_killed_ones(cluster):
    start, engine = cluster
    first = start("a")
    lam = first.client("lambda")
    account = first.client("sts").get_caller_identity()["Account"]
    lam.create_function(FunctionName="who", Runtime="python3.11", Handler="app.handler", Timeout=30,
                        Role=f"arn:aws:iam::{account}:role/JobforgeExecutionRole", Code={"ZipFile": _code(WHO_AM_I)})
    lam.get_waiter("function_active_v2").wait(FunctionName="who")
    assert _invoke(first, "who", {"n": 1})["arn"].endswith("/who")  # a warm environment on the first server
    first.client("s3").create_bucket(Bucket="results")
    before = _create_tasks(first, 6, 12)  # queued on the first server, one simulator at a time

    second = start("b")
    first_id, second_id = _server_id(first), _server_id(second)
    assert first_id != second_id
    # The first server's warm environment still holds valid credentials, and the second runs the function too.
    assert _invoke(first, "who", {"n": 2}) == {"arn": f"arn:aws:sts::{account}:assumed-role/JobforgeExecutionRole/who",
                                               "echo": {"n": 2}}
    assert _invoke(second, "who", {"n": 3})["echo"] == {"n": 3}
    with engine.connect() as conn:
        holders = dict(conn.execute(sa.select(access_keys.c.server_id, sa.func.count()).where(
            access_keys.c.job_id.startswith("lambda-env-")).group_by(access_keys.c.server_id)).all())
    assert holders == {first_id: 1, second_id: 1}  # one environment each
    # Every task the first accepted ran there, once: the second's start queued none of them again.
    assert {row.server_id for row in _wait_for_tasks(engine, before)} == {first_id}

    left = _create_tasks(first, 3, 22)  # a few seconds each: the first server dies before it has run them
    first.kill()
    killed_at = time.time()
    # Within the lease and a renewal or two, the second takes over the first's tasks and revokes its credentials.
    deadline = killed_at + server_leases.LEASE_SECONDS + 6 * server_leases.RENEW_SECONDS + 60
    while True:
        with engine.connect() as conn:
            leases = set(conn.execute(sa.select(server_leases.server_leases.c.server_id)).scalars())
            first_keys = conn.execute(sa.select(sa.func.count()).select_from(access_keys)
                                      .where(access_keys.c.server_id == first_id)).scalar()
        if leases == {second_id} and first_keys == 0:
            break
        assert time.time() < deadline, (leases, first_keys)
        time.sleep(0.5)
    rows = _wait_for_tasks(engine, left)
    assert {row.server_id for row in rows} <= {first_id, second_id}
    assert second_id in {row.server_id for row in rows}  # what the first left queued ran on the second
    assert _invoke(second, "who", {"n": 4})["echo"] == {"n": 4}


def _deploy(server: ServerProcess, name: str, model_url: str, account: str) -> None:
    sm = server.client("sagemaker")
    sm.create_model(ModelName=name, ExecutionRoleArn=f"arn:aws:iam::{account}:role/JobforgeExecutionRole",
                    PrimaryContainer={"ModelDataUrl": model_url, "Image": SKLEARN_IMAGE})
    sm.create_endpoint_config(EndpointConfigName=name, ProductionVariants=[
        {"VariantName": "AllTraffic", "ModelName": name, "InstanceType": "ml.t2.medium", "InitialInstanceCount": 1}])


def _in_service(server: ServerProcess, name: str, seconds: float = 240) -> dict:
    sm = server.client("sagemaker")
    deadline = time.time() + seconds
    while True:
        described = sm.describe_endpoint(EndpointName=name)
        if described["EndpointStatus"] not in ("Creating", "Updating", "SystemUpdating"):
            assert described["EndpointStatus"] == "InService", described.get("FailureReason")
            return described
        assert time.time() < deadline, described["EndpointStatus"]
        time.sleep(0.3)


def _predict(server: ServerProcess, name: str, rows) -> list:
    answer = server.client("sagemaker-runtime").invoke_endpoint(
        EndpointName=name, Body=json.dumps(rows), ContentType="application/json", Accept="application/json")
    return json.loads(answer["Body"].read())


def test_an_endpoint_is_served_by_its_server_through_either_and_taken_over_when_it_dies(cluster):
    import joblib
    import numpy as np
    from sklearn.linear_model import LogisticRegression

    start, engine = cluster
    rng = np.random.default_rng(0)
    features = rng.normal(size=(100, 4))
    model = LogisticRegression().fit(features, (features[:, 0] > 0).astype(int))
    rows = features[:4].tolist()
    expected = model.predict(features[:4]).tolist()
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        data = io.BytesIO()
        joblib.dump(model, data)
        info = tarfile.TarInfo("model.joblib")
        info.size = len(data.getvalue())
        archive.addfile(info, io.BytesIO(data.getvalue()))

    first, second = start("a"), start("b")
    account = first.client("sts").get_caller_identity()["Account"]
    first.client("s3").create_bucket(Bucket="models")
    first.client("s3").put_object(Bucket="models", Key="model.tar.gz", Body=buffer.getvalue())
    _deploy(first, "iris", "s3://models/model.tar.gz", account)
    _deploy(first, "iris-2", "s3://models/model.tar.gz", account)
    first.client("sagemaker").create_endpoint(EndpointName="iris", EndpointConfigName="iris")
    _in_service(second, "iris")
    assert _predict(first, "iris", rows) == expected
    assert _predict(second, "iris", rows) == expected  # forwarded to the first, which serves it
    with engine.connect() as conn:
        owners = set(conn.execute(sa.text("SELECT server_id FROM endpoints")).scalars())
    assert owners == {_server_id(first)}

    # An update asked of the second server is made by the first, which serves the endpoint.
    second.client("sagemaker").update_endpoint(EndpointName="iris", EndpointConfigName="iris-2")
    assert _in_service(second, "iris")["EndpointConfigName"] == "iris-2"
    assert _predict(second, "iris", rows) == expected

    first.kill()
    # Once the first server's lease has expired, the second deploys the endpoint anew and serves it.
    deadline = time.time() + server_leases.LEASE_SECONDS + 6 * server_leases.RENEW_SECONDS + 60
    while True:
        with engine.connect() as conn:
            owners = set(conn.execute(sa.text("SELECT server_id FROM endpoints")).scalars())
        if owners == {_server_id(second)}:
            break
        assert time.time() < deadline, owners
        time.sleep(0.5)
    assert _in_service(second, "iris")["EndpointConfigName"] == "iris-2"
    assert _predict(second, "iris", rows) == expected
