"""The SageMaker Python SDK v3 pointed at a test server as a user sets it up: endpoint and credentials in the
environment, MLflow reached through the endpoint, telemetry opted out in the SDK's config file. The
process-wide caches that would keep an earlier server's endpoint or keys (boto3's default session,
sagemaker-core's default SageMaker client) are emptied on the way in and out."""

from __future__ import annotations

import json
from contextlib import contextmanager
from pathlib import Path

import boto3
import pytest


@contextmanager
def sdk_environment(server, config_dir: Path):
    from sagemaker.core.utils.utils import SageMakerClient

    config = config_dir / "config.yaml"
    config.write_text(json.dumps({"SchemaVersion": "1.0",
                                  "SageMaker": {"PythonSDK": {"Modules": {"TelemetryOptOut": True}}}}))
    creds = server.credentials()
    with pytest.MonkeyPatch.context() as patch:
        for name, value in (("AWS_ENDPOINT_URL", server.endpoint), ("AWS_DEFAULT_REGION", "us-east-1"),
                            ("AWS_ACCESS_KEY_ID", creds["aws_access_key_id"]),
                            ("AWS_SECRET_ACCESS_KEY", creds["aws_secret_access_key"]),
                            ("SAGEMAKER_MLFLOW_CUSTOM_ENDPOINT", server.endpoint),
                            ("SAGEMAKER_USER_CONFIG_OVERRIDE", str(config))):
            patch.setenv(name, value)
        patch.delenv("AWS_SESSION_TOKEN", raising=False)
        patch.delenv("AWS_PROFILE", raising=False)
        patch.setattr(boto3, "DEFAULT_SESSION", None)
        SageMakerClient.reset()
        try:
            yield patch
        finally:
            SageMakerClient.reset()
