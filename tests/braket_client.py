"""The Braket SDK pointed at a test server: the environment it (and every boto3 client it makes) reads, and
an ``AwsSession`` made in it. Both restore the environment on exit."""

from __future__ import annotations

import os
from contextlib import contextmanager

import boto3


@contextmanager
def sdk_environment(server):
    saved = dict(os.environ)
    creds = server.credentials()
    os.environ.update(AWS_ENDPOINT_URL=server.endpoint, AWS_ACCESS_KEY_ID=creds["aws_access_key_id"],
                      AWS_SECRET_ACCESS_KEY=creds["aws_secret_access_key"], AWS_DEFAULT_REGION="us-east-1",
                      AWS_CONFIG_FILE=os.devnull, AWS_SHARED_CREDENTIALS_FILE=os.devnull)
    try:
        yield
    finally:
        os.environ.clear()
        os.environ.update(saved)


@contextmanager
def sdk_session(server):
    from braket.aws import AwsSession

    with sdk_environment(server):
        yield AwsSession(boto_session=boto3.Session(region_name="us-east-1"))
