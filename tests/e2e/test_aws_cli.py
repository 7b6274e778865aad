"""The AWS CLI against the control plane, configured only by the files the server wrote."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from selftest_kind import CATEGORY as TEST_CATEGORY

AWS = str(Path(sys.executable).with_name("aws"))


def aws(server, *args, credentials=None):
    env = {key: value for key, value in os.environ.items() if not key.startswith("AWS_")}
    env.update(AWS_CONFIG_FILE=str(server.data_dir / "config"),
               AWS_SHARED_CREDENTIALS_FILE=str(credentials or server.data_dir / "credentials"))
    return subprocess.run([AWS, *args, "--output", "json"], capture_output=True, text=True, env=env, timeout=120)


def test_identity_roles_and_a_job_through_the_cli(server, account_id, role_arn):
    identity = json.loads(aws(server, "sts", "get-caller-identity").stdout)
    assert identity["Account"] == account_id and identity["UserId"] == account_id  # the account's root

    policy = json.dumps({"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "sts:AssumeRole",
                                                                 "Principal": {"Service": "sagemaker.amazonaws.com"}}]})
    created = aws(server, "iam", "create-role", "--role-name", "CliRole", "--assume-role-policy-document", policy)
    assert created.returncode == 0, created.stderr
    got = json.loads(aws(server, "iam", "get-role", "--role-name", "CliRole").stdout)["Role"]
    assert got["Arn"] == f"arn:aws:iam::{account_id}:role/CliRole"
    listed = json.loads(aws(server, "iam", "list-roles").stdout)["Roles"]
    assert "CliRole" in {role["RoleName"] for role in listed}

    job = aws(server, "sagemaker", "create-job", "--job-name", "cli-made", "--role-arn", role_arn,
              "--job-category", TEST_CATEGORY, "--job-config-schema-version", "1.0.0",
              "--job-config-document", json.dumps({"Steps": 2, "SleepSeconds": 0.1}))
    assert job.returncode == 0, job.stderr
    described = aws(server, "sagemaker", "describe-job", "--job-name", "cli-made", "--job-category", TEST_CATEGORY)
    assert described.returncode == 0, described.stderr
    assert json.loads(described.stdout)["JobName"] == "cli-made"

    assert aws(server, "iam", "delete-role", "--role-name", "CliRole").returncode == 0


def test_cli_errors_are_the_services_own(server, role_arn, tmp_path):
    missing = aws(server, "iam", "get-role", "--role-name", "NoSuchRoleHere")
    assert missing.returncode == 255 and "NoSuchEntity" in missing.stderr

    invalid = aws(server, "sagemaker", "create-job", "--job-name", "bad name!", "--role-arn", role_arn,
                  "--job-category", TEST_CATEGORY, "--job-config-schema-version", "1.0.0",
                  "--job-config-document", "{}")
    assert invalid.returncode == 255 and "ValidationException" in invalid.stderr
    assert "failed to satisfy constraint" in invalid.stderr

    wrong = tmp_path / "credentials"
    creds = (server.data_dir / "credentials").read_text().splitlines()
    wrong.write_text("\n".join(line.split("=")[0] + "= " + "x" * 40 if line.startswith("aws_secret_access_key")
                               else line for line in creds))
    denied = aws(server, "sts", "get-caller-identity", credentials=wrong)
    assert denied.returncode == 255 and "SignatureDoesNotMatch" in denied.stderr

    unsigned = aws(server, "iam", "list-roles", "--no-sign-request")
    assert unsigned.returncode == 255 and "MissingAuthenticationToken" in unsigned.stderr
