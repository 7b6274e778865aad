"""Send hand-made, correctly signed requests: the server must judge what SDKs would refuse to send."""

from __future__ import annotations

import json as jsonlib

import urllib3
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

_http = urllib3.PoolManager()


def send(endpoint, method, path, *, service, credentials, body=b"", headers=None, region="us-east-1",
         sign=True, mutate=None, auth=SigV4Auth):
    """auth: the signer; S3SigV4Auth signs a path as sent (S3 does not encode it again)."""
    headers = dict(headers or {})
    request = AWSRequest(method=method, url=endpoint + path, data=body, headers=headers)
    if sign:
        auth(Credentials(credentials["aws_access_key_id"], credentials["aws_secret_access_key"],
                         credentials.get("aws_session_token")), service, region).add_auth(request)
    prepared = request.prepare()
    sent_headers = dict(prepared.headers)
    sent_body = prepared.body or b""
    if mutate:
        sent_body, sent_headers = mutate(sent_body, sent_headers)
    response = _http.request(method, prepared.url, body=sent_body, headers=sent_headers, retries=False)
    return response.status, response.headers, response.data


def sagemaker(endpoint, credentials, operation, payload, **kw):
    body = payload if isinstance(payload, bytes) else jsonlib.dumps(payload).encode()
    return send(endpoint, "POST", "/", service="sagemaker", credentials=credentials, body=body,
                headers={"X-Amz-Target": f"SageMaker.{operation}",
                         "Content-Type": "application/x-amz-json-1.1"}, **kw)
