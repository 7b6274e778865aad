"""Credentials issued to execution environments that died with a killed server are revoked when the next
server starts, instead of staying valid until they expire."""

from __future__ import annotations

import io
import json
import sys
import time
import zipfile

import boto3
import pytest
from botocore.exceptions import ClientError

from jobforge.testing_server import ServerProcess

HANDLER = """
import os

def handler(event, context):
    return {name: os.environ[name] for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN")}
"""


def test_a_killed_servers_function_credentials_are_revoked(tmp_path):
    server = ServerProcess(tmp_path / "data").start()
    try:
        account = server.client("sts").get_caller_identity()["Account"]
        lam = server.client("lambda")
        archive = io.BytesIO()
        with zipfile.ZipFile(archive, "w") as zipped:
            zipped.writestr("app.py", HANDLER)
        lam.create_function(FunctionName="leaky", Runtime=f"python3.{sys.version_info[1]}", Handler="app.handler",
                            Role=f"arn:aws:iam::{account}:role/JobforgeExecutionRole",
                            Code={"ZipFile": archive.getvalue()})
        deadline = time.time() + 30
        while lam.get_function_configuration(FunctionName="leaky")["State"] != "Active":
            assert time.time() < deadline
            time.sleep(0.05)
        credentials = json.loads(lam.invoke(FunctionName="leaky")["Payload"].read())
        environment = boto3.client("sts", endpoint_url=server.endpoint, region_name="us-east-1",
                                   aws_access_key_id=credentials["AWS_ACCESS_KEY_ID"],
                                   aws_secret_access_key=credentials["AWS_SECRET_ACCESS_KEY"],
                                   aws_session_token=credentials["AWS_SESSION_TOKEN"])
        assert ":assumed-role/JobforgeExecutionRole/" in environment.get_caller_identity()["Arn"]

        server.kill()
        server.start()
        with pytest.raises(ClientError) as revoked:
            environment.get_caller_identity()
        assert revoked.value.response["ResponseMetadata"]["HTTPStatusCode"] == 403
    finally:
        server.stop()
