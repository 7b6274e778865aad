"""S3 reads a request's path as UTF-8: a bucket or key whose percent-encoding is not UTF-8 is an unreadable URI."""

from __future__ import annotations

from botocore.auth import S3SigV4Auth

import rawclient


def test_a_key_whose_percent_encoding_is_not_utf8_is_an_invalid_uri(server):
    s3 = server.client("s3")
    s3.create_bucket(Bucket="invalid-uri")
    status, _, body = rawclient.send(server.endpoint, "PUT", "/invalid-uri/a%FF%FEb", service="s3",
                                     credentials=server.credentials(), body=b"data", auth=S3SigV4Auth)
    assert status == 400, body
    assert b"<Code>InvalidURI</Code>" in body and b"<Message>Couldn't parse the specified URI.</Message>" in body
    assert s3.list_objects_v2(Bucket="invalid-uri")["KeyCount"] == 0  # nothing stored under a replaced key
