"""Jobs belong to the region of the request that made them, as on AWS: listed, described and stopped only
there, named uniquely per region, with that region in their ARNs."""

from __future__ import annotations

import json

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
