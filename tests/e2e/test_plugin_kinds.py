"""A job kind declared outside jobforge is served once the server is told to import it, and only then."""

from __future__ import annotations

import json

import pytest
from botocore.exceptions import ClientError

from selftest_kind import CATEGORY as TEST_CATEGORY, TESTS_DIR
from jobforge.testing_server import ServerProcess


def test_a_kind_is_served_only_by_a_server_given_its_plugin(tmp_path):
    env = {"PYTHONPATH": TESTS_DIR, "JOBFORGE_PLUGINS": ""}
    plain = ServerProcess(tmp_path / "plain", env=env).start()
    try:
        sm = plain.client("sagemaker")
        account = plain.client("sts").get_caller_identity()["Account"]
        with pytest.raises(ClientError) as refused:
            sm.create_job(JobName="j", RoleArn=f"arn:aws:iam::{account}:role/JobforgeExecutionRole",
                          JobCategory=TEST_CATEGORY, JobConfigSchemaVersion="1.0.0", JobConfigDocument="{}")
        assert refused.value.response["Error"]["Code"] == "ValidationException"
        assert f"JobCategory {TEST_CATEGORY} is not available on this server" in str(refused.value)
        assert sm.list_jobs(JobCategory=TEST_CATEGORY)["JobSummaries"] == []
    finally:
        plain.stop()

    served = ServerProcess(tmp_path / "served", extra_args=["--plugin", "selftest_kind"], env=env).start()
    try:
        sm = served.client("sagemaker")
        versions = sm.list_job_schema_versions(JobCategory=TEST_CATEGORY)["JobConfigSchemas"]
        assert versions == [{"JobConfigSchemaVersion": "1.0.0"}]
        schema = sm.describe_job_schema_version(JobCategory=TEST_CATEGORY)["JobConfigSchema"]
        assert "Steps" in json.loads(schema)["properties"]
    finally:
        served.stop()
