"""The Braket API through boto3: devices, hybrid-job requests and their errors, tags, search.

Hybrid jobs here ask for a GPU instance from a server that offers none, so
the scheduler fails them at once without running anything: these tests are
about the API. Jobs that really run are in test_braket_sdk.py.
"""

from __future__ import annotations

import datetime as dt
import json
import time
import uuid

import pytest
from botocore.exceptions import ClientError

from jobforge.testing_server import ServerProcess

SV1 = "arn:aws:braket:::device/quantum-simulator/amazon/sv1"
DM1 = "arn:aws:braket:::device/quantum-simulator/amazon/dm1"
TN1 = "arn:aws:braket:::device/quantum-simulator/amazon/tn1"
QPU = "arn:aws:braket:us-east-1::device/qpu/ionq/Forte-1"


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    srv = ServerProcess(tmp_path_factory.mktemp("braket-api") / "data", extra_args=["--gpus", "0"]).start()
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def braket(server):
    return server.client("braket")


@pytest.fixture(scope="module")
def account(server):
    return server.client("sts").get_caller_identity()["Account"]


def code_of(call) -> tuple[str, int]:
    with pytest.raises(ClientError) as err:
        call()
    return err.value.response["Error"]["Code"], err.value.response["ResponseMetadata"]["HTTPStatusCode"]


def job_request(account: str, name: str, **changes) -> dict:
    request = dict(
        clientToken=str(uuid.uuid4()), jobName=name, roleArn=f"arn:aws:iam::{account}:role/JobforgeExecutionRole",
        algorithmSpecification={"scriptModeConfig": {"entryPoint": "algo:main", "s3Uri": "s3://b/source.tar.gz",
                                                     "compressionType": "GZIP"}},
        outputDataConfig={"s3Path": "s3://b/out"},
        instanceConfig={"instanceType": "ml.g4dn.xlarge", "volumeSizeInGb": 30},
        deviceConfig={"device": SV1}, hyperParameters={"shots": "100"}, tags={"team": "quantum"})
    request.update(changes)
    return request


def wait_status(braket, arn: str, wanted=("COMPLETED", "FAILED", "CANCELLED"), timeout=30) -> dict:
    deadline = time.time() + timeout
    while (job := braket.get_job(jobArn=arn))["status"] not in wanted:
        assert time.time() < deadline, job["status"]
        time.sleep(0.1)
    return job


def test_devices(braket):
    from braket.device_schema.simulators import GateModelSimulatorDeviceCapabilities

    devices = {d["deviceArn"]: d for d in braket.search_devices(filters=[])["devices"]}
    assert devices[SV1]["deviceStatus"] == devices[DM1]["deviceStatus"] == "ONLINE"
    assert devices[TN1]["deviceStatus"] == "RETIRED" and devices[QPU]["deviceStatus"] == "OFFLINE"
    assert {d["deviceType"] for d in devices.values()} == {"SIMULATOR", "QPU"}
    sv1 = braket.get_device(deviceArn=SV1)
    capabilities = GateModelSimulatorDeviceCapabilities.parse_raw(sv1["deviceCapabilities"])
    assert "braket.ir.openqasm.program" in capabilities.action
    assert {q["queue"] for q in sv1["deviceQueueInfo"]} == {"QUANTUM_TASKS_QUEUE", "JOBS_QUEUE"}
    assert braket.get_device(deviceArn=QPU)["deviceStatus"] == "OFFLINE"
    from braket.device_schema.ionq import IonqDeviceCapabilities
    from braket.schema_common import BraketSchemaBase

    qpu = BraketSchemaBase.parse_raw_schema(braket.get_device(deviceArn=QPU)["deviceCapabilities"])
    assert isinstance(qpu, IonqDeviceCapabilities) and qpu.paradigm.qubitCount == 36
    tn1 = BraketSchemaBase.parse_raw_schema(braket.get_device(deviceArn=TN1)["deviceCapabilities"])
    assert isinstance(tn1, GateModelSimulatorDeviceCapabilities) and tn1.paradigm.qubitCount == 50
    assert code_of(lambda: braket.get_device(deviceArn="arn:aws:braket:::device/qpu/acme/nothing")) == \
        ("ResourceNotFoundException", 404)
    only = braket.search_devices(filters=[{"name": "deviceArn", "values": [DM1]}])["devices"]
    assert [d["deviceArn"] for d in only] == [DM1]
    first = braket.search_devices(filters=[], maxResults=5)
    second = braket.search_devices(filters=[], maxResults=5, nextToken=first["nextToken"])
    assert len(first["devices"]) == len(second["devices"]) == 5
    assert not {d["deviceArn"] for d in first["devices"]} & {d["deviceArn"] for d in second["devices"]}
    assert code_of(lambda: braket.search_devices(filters=[{"name": "deviceType", "values": ["QPU"]}])) == \
        ("ValidationException", 400)


def test_create_job_validation(braket, account):
    cases = [
        (job_request(account, "bad_name!"), ("ValidationException", 400)),
        (job_request(account, "no-role", roleArn=f"arn:aws:iam::{account}:role/Missing"), ("ValidationException", 400)),
        (job_request(account, "other-account", roleArn="arn:aws:iam::123456789012:role/JobforgeExecutionRole"),
         ("ValidationException", 400)),
        (job_request(account, "on-qpu", deviceConfig={"device": QPU}), ("DeviceOfflineException", 424)),
        (job_request(account, "on-tn1", deviceConfig={"device": TN1}), ("DeviceRetiredException", 410)),
        (job_request(account, "unknown-device", deviceConfig={"device": "arn:aws:braket:::device/qpu/x/y"}),
         ("ValidationException", 400)),
        (job_request(account, "two-hosts", instanceConfig={"instanceType": "ml.m5.large", "volumeSizeInGb": 30,
                                                           "instanceCount": 2}), ("ValidationException", 400)),
        (job_request(account, "too-long", stoppingCondition={"maxRuntimeInSeconds": 432_001}),
         ("ValidationException", 400)),
    ]
    for request, expected in cases:
        assert code_of(lambda: braket.create_job(**request)) == expected, request["jobName"]
    retired = [d["deviceArn"] for d in braket.search_devices(filters=[])["devices"] if d["deviceStatus"] == "RETIRED"]
    if retired:
        request = job_request(account, "on-retired", deviceConfig={"device": retired[0]})
        assert code_of(lambda: braket.create_job(**request)) == ("DeviceRetiredException", 410)


def test_job_record_idempotency_and_conflicts(braket, account):
    request = job_request(account, "gpu-job")
    arn = braket.create_job(**request)["jobArn"]
    assert arn.startswith(f"arn:aws:braket:us-east-1:{account}:job/")
    assert braket.create_job(**request)["jobArn"] == arn  # same token, same request: the same job
    changed = dict(request, hyperParameters={"shots": "200"})
    assert code_of(lambda: braket.create_job(**changed)) == ("ConflictException", 409)
    assert code_of(lambda: braket.create_job(**dict(request, clientToken=str(uuid.uuid4())))) == \
        ("ConflictException", 409)  # the name is taken

    job = wait_status(braket, arn)
    assert job["status"] == "FAILED" and "GPU" in job["failureReason"]
    assert job["jobName"] == "gpu-job" and job["hyperParameters"] == {"shots": "100"}
    assert job["deviceConfig"] == {"device": SV1} and job["tags"] == {"team": "quantum"}
    assert job["stoppingCondition"] == {"maxRuntimeInSeconds": 432000}
    assert job["instanceConfig"] == {"instanceType": "ml.g4dn.xlarge", "volumeSizeInGb": 30, "instanceCount": 1}
    assert [e["eventType"] for e in job["events"]] == ["QUEUED_FOR_EXECUTION", "FAILED"]
    assert job["createdAt"] <= job["endedAt"]
    queue = braket.get_job(jobArn=arn, additionalAttributeNames=["QueueInfo"])["queueInfo"]
    assert queue["queue"] == "JOBS_QUEUE" and queue["position"] == "None" and "FAILED" in queue["message"]
    assert code_of(lambda: braket.cancel_job(jobArn=arn)) == ("ConflictException", 409)
    missing = arn.rsplit("/", 1)[0] + "/" + str(uuid.uuid4())
    assert code_of(lambda: braket.get_job(jobArn=missing)) == ("ResourceNotFoundException", 404)
    assert code_of(lambda: braket.cancel_job(jobArn=missing)) == ("ResourceNotFoundException", 404)


def rfc3339(when: dt.datetime, seconds_only: bool = False) -> str:
    text = when.astimezone(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f")
    return (text[:-7] if seconds_only else text[:-3]) + "Z"


def test_search_jobs(braket, account):
    devices = [SV1, DM1, "local:braket/braket_sv"]
    arns = []
    for i, device in enumerate(devices):
        arns.append(braket.create_job(**job_request(account, f"search-{i}", deviceConfig={"device": device}))["jobArn"])
        time.sleep(0.01)  # distinct createdAt milliseconds
    for arn in arns:
        wait_status(braket, arn)
    created = [braket.get_job(jobArn=arn)["createdAt"] for arn in arns]

    def search(*filters) -> set[str]:
        return {j["jobArn"] for j in braket.search_jobs(filters=[dict(zip(("name", "operator", "values"), f))
                                                                   for f in filters])["jobs"]}

    def refused(*filters) -> str:
        with pytest.raises(ClientError) as err:
            search(*filters)
        assert err.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400
        assert err.value.response["Error"]["Code"] == "ValidationException"
        return err.value.response["Error"]["Message"]

    found = braket.search_jobs(filters=[{"name": "jobArn", "operator": "EQUAL", "values": arns[:2]}])["jobs"]
    assert sorted(j["jobArn"] for j in found) == sorted(arns[:2])
    assert {j["device"] for j in found} == {SV1, DM1} and found[0]["tags"] == {"team": "quantum"}
    # jobName: EQUAL and CONTAINS
    assert search(("jobName", "EQUAL", ["search-1"])) == {arns[1]}
    assert search(("jobName", "CONTAINS", ["earch-"])) >= set(arns)
    assert search(("jobName", "CONTAINS", ["earch-"]), ("deviceArn", "EQUAL", [DM1])) == {arns[1]}
    # deviceArn: EQUAL, an ARN or a local simulator id
    assert search(("deviceArn", "EQUAL", ["local:braket/braket_sv"])) == {arns[2]}
    assert arns[0] in search(("deviceArn", "EQUAL", [SV1])) and arns[1] not in search(("deviceArn", "EQUAL", [SV1]))
    # createdAt: RFC 3339 values, compared at the precision they are written in
    same_names = ("jobName", "CONTAINS", ["search-"])
    assert search(same_names, ("createdAt", "EQUAL", [rfc3339(created[1])])) == {arns[1]}
    assert arns[1] in search(("createdAt", "EQUAL", [rfc3339(created[1], seconds_only=True)]))
    assert search(same_names, ("createdAt", "GT", [rfc3339(created[1])])) == {arns[2]}
    assert search(same_names, ("createdAt", "GTE", [rfc3339(created[1])])) == set(arns[1:])
    assert search(same_names, ("createdAt", "LT", [rfc3339(created[1])])) == {arns[0]}
    assert search(same_names, ("createdAt", "LTE", [rfc3339(created[1])])) == set(arns[:2])
    assert search(same_names, ("createdAt", "BETWEEN", [rfc3339(created[0]), rfc3339(created[1])])) == set(arns[:2])
    offset = created[2].astimezone(dt.timezone(dt.timedelta(hours=2))).isoformat()  # +02:00, microseconds
    assert search(same_names, ("createdAt", "GTE", [offset])) == {arns[2]}
    # what the documentation rules out
    assert "cannot be combined" in refused(("jobArn", "EQUAL", [arns[0]]), ("jobName", "EQUAL", ["search-0"]))
    assert "operator" in refused(("jobArn", "CONTAINS", [arns[2].rsplit("/", 1)[1][:12]]))
    assert "operator" in refused(("jobName", "GT", ["search-0"]))
    assert "operator" in refused(("deviceArn", "CONTAINS", ["sv1"]))
    assert "operator" in refused(("createdAt", "CONTAINS", [rfc3339(created[0])]))
    assert "filter name" in refused(("status", "EQUAL", ["FAILED"]))
    assert "RFC 3339" in refused(("createdAt", "LT", ["yesterday"]))
    assert "RFC 3339" in refused(("createdAt", "LT", [str(int(time.time()))]))  # epoch seconds are not RFC 3339
    assert "RFC 3339" in refused(("createdAt", "LT", ["2026-01-01T00:00:00"]))  # no time zone
    assert "exactly 2" in refused(("createdAt", "BETWEEN", [rfc3339(created[0])]))
    assert "exactly 1" in refused(("createdAt", "GT", [rfc3339(created[0]), rfc3339(created[1])]))
    pages, token = [], None
    while True:
        page = braket.search_jobs(filters=[], maxResults=2, **({"nextToken": token} if token else {}))
        pages.append(page["jobs"])
        token = page.get("nextToken")
        if not token:
            break
    everything = [j["jobArn"] for page in pages for j in page]
    assert set(arns) <= set(everything) and len(everything) == len(set(everything))
    first = braket.search_jobs(filters=[{"name": "deviceArn", "operator": "EQUAL", "values": [SV1, DM1]}],
                               maxResults=1)
    second = braket.search_jobs(filters=[{"name": "deviceArn", "operator": "EQUAL", "values": [SV1, DM1]}],
                                maxResults=1, nextToken=first["nextToken"])
    assert first["jobs"][0]["jobArn"] != second["jobs"][0]["jobArn"]


def test_tags(braket, account):
    arn = braket.create_job(**job_request(account, "tagged"))["jobArn"]
    braket.tag_resource(resourceArn=arn, tags={"stage": "dev", "team": "physics"})
    assert braket.list_tags_for_resource(resourceArn=arn)["tags"] == {"stage": "dev", "team": "physics"}
    braket.untag_resource(resourceArn=arn, tagKeys=["stage"])
    assert braket.list_tags_for_resource(resourceArn=arn)["tags"] == {"team": "physics"}
    missing = f"arn:aws:braket:us-east-1:{account}:quantum-task/{uuid.uuid4()}"
    assert code_of(lambda: braket.list_tags_for_resource(resourceArn=missing)) == ("ResourceNotFoundException", 404)


def test_quantum_task_requests_are_checked(server, braket, account):
    from braket.circuits import Circuit

    bucket = f"amazon-braket-us-east-1-{account}"
    server.client("s3").create_bucket(Bucket=bucket)
    action = Circuit().h(0).cnot(0, 1).to_ir("OPENQASM").json()
    base = dict(deviceArn=SV1, shots=100, outputS3Bucket=bucket, outputS3KeyPrefix="tasks", action=action)

    def create(**changes):
        return braket.create_quantum_task(**dict(base, clientToken=str(uuid.uuid4()), **changes))

    assert code_of(lambda: create(deviceArn=QPU)) == ("DeviceOfflineException", 424)
    assert code_of(lambda: create(deviceArn=TN1)) == ("DeviceRetiredException", 410)
    assert code_of(lambda: create(deviceArn="arn:aws:braket:::device/qpu/acme/x")) == ("ValidationException", 400)
    assert code_of(lambda: create(action="{not json")) == ("ValidationException", 400)
    assert code_of(lambda: create(action=json.dumps({"braketSchemaHeader": {"name": "braket.ir.ahs.program",
                                                                             "version": "1"}}))) == \
        ("ValidationException", 400)
    assert code_of(lambda: create(outputS3Bucket="no-such-bucket-here")) == ("ValidationException", 400)
    for device in (SV1, DM1, "braket_sv"):  # SV1 and DM1 take at most 100,000 shots, as on AWS
        assert code_of(lambda: create(deviceArn=device, shots=100_001)) == ("ValidationException", 400)
        assert json.loads(braket.get_device(deviceArn=device)["deviceCapabilities"])["service"]["shotsRange"] == \
            [0, 100000]
    assert code_of(lambda: create(jobToken="not-a-job-token")) == ("ValidationException", 400)
    token = str(uuid.uuid4())
    arn = braket.create_quantum_task(clientToken=token, **base)["quantumTaskArn"]
    assert braket.create_quantum_task(clientToken=token, **base)["quantumTaskArn"] == arn
    assert code_of(lambda: braket.create_quantum_task(clientToken=token, **dict(base, shots=5))) == \
        ("ValidationException", 400)


def test_a_job_token_creates_quantum_tasks_only_in_its_jobs_region(server, braket, account):
    import boto3
    import sqlalchemy as sa

    from jobforge.core.store import create_engine, jobs_table

    from braket.circuits import Circuit

    s3 = server.client("s3")
    bucket = f"amazon-braket-us-east-1-{account}"
    if bucket not in [b["Name"] for b in s3.list_buckets()["Buckets"]]:
        s3.create_bucket(Bucket=bucket)
    arn = braket.create_job(**job_request(account, "token-region"))["jobArn"]
    engine = create_engine(f"sqlite:///{server.data_dir / 'jobforge.db'}")
    with engine.connect() as conn:
        token = conn.execute(sa.select(jobs_table.c.spec).where(jobs_table.c.arn == arn)).scalar_one()["jobToken"]
    engine.dispose()
    request = dict(deviceArn=SV1, shots=10, outputS3Bucket=bucket,
                   outputS3KeyPrefix="tasks", action=Circuit().h(0).to_ir("OPENQASM").json(), jobToken=token)
    west = boto3.client("braket", endpoint_url=server.endpoint, region_name="us-west-2", **server.credentials())
    with pytest.raises(ClientError) as elsewhere:
        west.create_quantum_task(clientToken=str(uuid.uuid4()), **request)
    assert "in this region" in str(elsewhere.value)
    with pytest.raises(ClientError) as ended:  # in its own region the token is known (the job has ended: no GPU)
        braket.create_quantum_task(clientToken=str(uuid.uuid4()), **request)
    assert "can no longer create quantum tasks" in str(ended.value)
