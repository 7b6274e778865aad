"""Jobs, quantum tasks and Logs Insights queries belong to the region of the request that made them, as on AWS:
listed, described, stopped and tagged only there, jobs named uniquely per region, with that region in their
ARNs; a client token used in another region makes another resource. (Bedrock's: test_bedrock_regions.py.)"""

from __future__ import annotations

import json
import time
import uuid

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

from selftest_kind import CATEGORY as TEST_CATEGORY


def _sagemaker(server, region: str):
    return boto3.client("sagemaker", endpoint_url=server.endpoint, region_name=region,
                        config=Config(retries={"max_attempts": 1}), **server.credentials())


def _create(sm, name: str, role_arn: str) -> str:
    return sm.create_job(JobName=name, RoleArn=role_arn, JobCategory=TEST_CATEGORY, JobConfigSchemaVersion="1.0.0",
                         JobConfigDocument=json.dumps({"Steps": 1, "SleepSeconds": 0}))["JobArn"]


def test_a_job_lives_in_the_region_it_was_created_in(server, role_arn):
    west, east, europe = (_sagemaker(server, r) for r in ("us-west-2", "us-east-1", "eu-west-1"))
    west_arn = _create(west, "regional", role_arn)
    assert west_arn.split(":")[3] == "us-west-2"
    east_arn = _create(east, "regional", role_arn)  # the same name in another region is another job
    assert east_arn != west_arn and east_arn.split(":")[3] == "us-east-1"

    def names(sm) -> list[str]:
        return [j["JobArn"] for j in sm.list_jobs(JobCategory=TEST_CATEGORY, NameContains="regional")["JobSummaries"]]

    assert names(west) == [west_arn] and names(east) == [east_arn] and names(europe) == []
    assert west.describe_job(JobName="regional", JobCategory=TEST_CATEGORY)["JobArn"] == west_arn
    with pytest.raises(ClientError) as missing:
        europe.describe_job(JobName="regional", JobCategory=TEST_CATEGORY)
    assert missing.value.response["Error"]["Code"] == "ResourceNotFound"
    with pytest.raises(ClientError) as taken:
        _create(west, "regional", role_arn)
    assert taken.value.response["Error"]["Code"] == "ResourceInUse"


BELL = json.dumps({"braketSchemaHeader": {"name": "braket.ir.openqasm.program", "version": "1"},
                   "source": "OPENQASM 3;\nqubit[2] q;\nh q[0];\ncnot q[0], q[1];"})
SV1 = "arn:aws:braket:::device/quantum-simulator/amazon/sv1"


def _code(call) -> str:
    with pytest.raises(ClientError) as err:
        call()
    return err.value.response["Error"]["Code"]


def test_a_quantum_task_lives_in_the_region_it_was_created_in(server, account_id):
    west, east, europe = (server.client("braket", region=r) for r in ("us-west-2", "us-east-1", "eu-west-1"))
    bucket = f"amazon-braket-regions-{account_id}"
    server.client("s3").create_bucket(Bucket=bucket)

    def create(braket) -> str:  # one client token in two regions: two tasks
        return braket.create_quantum_task(clientToken="regional-token", deviceArn=SV1, shots=10, action=BELL,
                                          outputS3Bucket=bucket, outputS3KeyPrefix="tasks",
                                          tags={"team": "physics"})["quantumTaskArn"]

    west_arn, east_arn = create(west), create(east)
    assert west_arn.split(":")[3] == "us-west-2" and east_arn.split(":")[3] == "us-east-1"
    assert create(west) == west_arn  # the token replays in its own region

    def searched(braket) -> list[str]:
        found = braket.search_quantum_tasks(filters=[{"name": "deviceArn", "operator": "EQUAL", "values": [SV1]}])
        return [t["quantumTaskArn"] for t in found["quantumTasks"]]

    assert searched(west) == [west_arn] and searched(east) == [east_arn] and searched(europe) == []
    assert west.get_quantum_task(quantumTaskArn=west_arn)["quantumTaskArn"] == west_arn
    assert west.list_tags_for_resource(resourceArn=west_arn)["tags"] == {"team": "physics"}
    for call in (lambda: europe.get_quantum_task(quantumTaskArn=west_arn),
                 lambda: east.get_quantum_task(quantumTaskArn=west_arn),
                 lambda: europe.cancel_quantum_task(quantumTaskArn=west_arn, clientToken="cancel"),
                 lambda: europe.list_tags_for_resource(resourceArn=west_arn),
                 lambda: europe.tag_resource(resourceArn=west_arn, tags={"stolen": "yes"})):
        assert _code(call) == "ResourceNotFoundException"


def _hybrid_job(braket, role_arn: str) -> str:
    """A hybrid job whose group, /aws/braket/jobs, then exists in the region (the job itself may fail)."""
    return braket.create_job(
        clientToken=str(uuid.uuid4()), jobName="regional-job", roleArn=role_arn,
        algorithmSpecification={"scriptModeConfig": {"entryPoint": "algo:main", "s3Uri": "s3://b/source.tar.gz",
                                                     "compressionType": "GZIP"}},
        outputDataConfig={"s3Path": "s3://b/out"}, instanceConfig={"instanceType": "ml.m5.large",
                                                                   "volumeSizeInGb": 30},
        deviceConfig={"device": "local:braket/braket_sv"})["jobArn"]


def test_a_logs_insights_query_belongs_to_the_region_it_was_started_in(server, role_arn):
    west, east, europe = (server.client("logs", region=r) for r in ("us-west-2", "us-east-1", "eu-west-1"))
    for region in ("us-west-2", "us-east-1"):
        _hybrid_job(server.client("braket", region=region), role_arn)
    window = dict(startTime=0, endTime=int(time.time()) + 60, queryString="fields @message")
    query_id = west.start_query(logGroupName="/aws/braket/jobs", **window)["queryId"]
    assert west.get_query_results(queryId=query_id)["status"] == "Complete"
    assert _code(lambda: east.get_query_results(queryId=query_id)) == "ResourceNotFoundException"
    assert _code(lambda: europe.stop_query(queryId=query_id)) == "ResourceNotFoundException"
    # eu-west-1 has no hybrid job, so no such group; us-east-1 has one, yet not the group us-west-2's ARN names
    assert _code(lambda: europe.start_query(logGroupName="/aws/braket/jobs", **window)) == \
        "ResourceNotFoundException"
    west_group = west.describe_log_groups(logGroupNamePrefix="/aws/braket/jobs")["logGroups"][0]["logGroupArn"]
    assert west_group.split(":")[3] == "us-west-2"
    assert _code(lambda: east.start_query(logGroupIdentifiers=[west_group], **window)) == \
        "ResourceNotFoundException"
    assert east.describe_log_groups(logGroupIdentifiers=[west_group])["logGroups"] == []
    assert east.start_query(logGroupIdentifiers=[west_group.replace("us-west-2", "us-east-1")], **window)["queryId"]
