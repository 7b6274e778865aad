"""The model-driven protocol layer, checked against botocore's own serializers and parsers."""

from __future__ import annotations

import datetime as dt
import json

import pytest
from botocore import parsers, serialize
from botocore.awsrequest import prepare_request_dict

from jobforge.core import service_models
from jobforge.core.errors import ServiceError
from jobforge.server.protocol import awsjson, query, rest, restjson
from jobforge.server.protocol.http import HttpRequest
from jobforge.server.protocol.validate import check_input

UTC = dt.timezone.utc


def botocore_request(service: str, operation: str, params: dict) -> HttpRequest:
    """What boto3 would send for params, as the server receives it."""
    model = service_models.service_model(service)
    op = model.operation_model(operation)
    request_dict = serialize.create_serializer(model.protocol).serialize_to_request(params, op)
    prepare_request_dict(request_dict, endpoint_url="http://localhost")
    path, _, query_string = request_dict["url"][len("http://localhost"):].partition("?")
    body = request_dict["body"]
    if isinstance(body, dict):
        from urllib.parse import urlencode

        body = urlencode(body)
    body = body.encode() if isinstance(body, str) else (body or b"")
    headers = {k.lower(): v for k, v in request_dict["headers"].items()}
    return HttpRequest(request_dict["method"], path, query_string, headers, body)


def roundtrip(service: str, operation: str, params: dict) -> dict:
    request = botocore_request(service, operation, params)
    protocol = {"json": awsjson, "rest-json": restjson, "query": query}[service_models.service_model(service).protocol]
    assert protocol.match(service, request) == operation
    return check_input(service_models.operation(service, operation).input_shape,
                       protocol.parse(service, operation, request))


def botocore_parse(service: str, operation: str, response) -> dict:
    model = service_models.service_model(service)
    parser = parsers.create_parser(model.protocol)
    return parser.parse({"status_code": response.status, "headers": dict(response.headers), "body": response.body},
                        model.operation_model(operation).output_shape)


def test_rest_json_labels_are_decoded_after_splitting():
    arn = "arn:aws:braket:us-east-1:123456789012:job/abc"
    request = botocore_request("braket", "GetJob", {"jobArn": arn, "additionalAttributeNames": ["QueueInfo"]})
    assert "%3A" in request.raw_path and "%2F" in request.raw_path
    assert roundtrip("braket", "GetJob", {"jobArn": arn, "additionalAttributeNames": ["QueueInfo"]}) == {
        "jobArn": arn, "additionalAttributeNames": ["QueueInfo"]}


def test_rest_json_query_strings_and_body():
    after = dt.datetime(2024, 1, 2, 3, 4, 5, tzinfo=UTC)
    parsed = roundtrip("bedrock", "ListModelCustomizationJobs", {
        "creationTimeAfter": after, "statusEquals": "InProgress", "maxResults": 5, "sortOrder": "Ascending"})
    assert parsed == {"creationTimeAfter": after, "statusEquals": "InProgress", "maxResults": 5,
                      "sortOrder": "Ascending"}
    body = roundtrip("braket", "SearchJobs", {"filters": [{"name": "status", "operator": "EQUAL",
                                                          "values": ["RUNNING"]}], "maxResults": 3})
    assert body["filters"][0]["values"] == ["RUNNING"] and body["maxResults"] == 3


def test_rest_routes_prefer_literal_segments():
    request = botocore_request("bedrock", "CreateCustomModel", {"modelName": "m", "modelSourceConfig": {
        "s3DataSource": {"s3Uri": "s3://b/k"}}})
    assert rest.match("bedrock", request) == "CreateCustomModel"


def test_json_timestamps_and_blobs():
    params = roundtrip("sagemaker", "ListJobs", {"JobCategory": "AgentRFT",
                                                 "CreationTimeAfter": dt.datetime(2025, 1, 1, tzinfo=UTC)})
    assert params["CreationTimeAfter"] == dt.datetime(2025, 1, 1, tzinfo=UTC)


def test_query_protocol_nested_lists_and_maps():
    params = roundtrip("iam", "CreateRole", {
        "RoleName": "r", "AssumeRolePolicyDocument": "{}", "Tags": [{"Key": "a", "Value": "1"},
                                                                    {"Key": "b", "Value": "2"}]})
    assert params["Tags"] == [{"Key": "a", "Value": "1"}, {"Key": "b", "Value": "2"}]


def test_serialized_responses_parse_with_botocore():
    created = dt.datetime(2026, 1, 2, 3, 4, 5, 678000, tzinfo=UTC)
    response = restjson.serialize("bedrock", "GetModelCustomizationJob", {
        "jobArn": "arn:aws:bedrock:us-east-1:123456789012:model-customization-job/x", "jobName": "x",
        "outputModelName": "m", "roleArn": "arn:aws:iam::123456789012:role/r", "creationTime": created,
        "baseModelArn": "arn:aws:bedrock:us-east-1::foundation-model/m", "hyperParameters": {},
        "trainingDataConfig": {"s3Uri": "s3://b/k"}, "outputDataConfig": {"s3Uri": "s3://b/o"},
        "validationDataConfig": {"validators": []}, "status": "InProgress", "unknownMember": 1}, "rid")
    body = json.loads(response.body)
    assert body["creationTime"] == "2026-01-02T03:04:05.678Z" and "unknownMember" not in body
    parsed = botocore_parse("bedrock", "GetModelCustomizationJob", response)
    assert parsed["creationTime"] == created
    created_job = restjson.serialize("braket", "CreateJob", {"jobArn": "arn:aws:braket:us-east-1:1:job/j"}, "rid")
    assert created_job.status == 201
    sm = awsjson.serialize("sagemaker", "DescribeJob", {"JobName": "j", "CreationTime": created}, "rid")
    assert json.loads(sm.body)["CreationTime"] == pytest.approx(created.timestamp())
    iam = query.serialize("iam", "GetRole", {"Role": {"RoleName": "r", "Path": "/", "RoleId": "AROA", "Arn": "a",
                                                       "CreateDate": created}}, "rid")
    assert botocore_parse("iam", "GetRole", iam)["Role"]["CreateDate"] == created


def test_errors_carry_modelled_status_and_shape():
    response = restjson.error("braket", ServiceError("ConflictException", "busy"), "rid")
    assert response.status == 409
    assert dict(response.headers)["X-Amzn-ErrorType"] == "ConflictException"
    assert json.loads(response.body) == {"__type": "ConflictException", "message": "busy"}
    assert restjson.error("bedrock", ServiceError("ResourceNotFoundException", "x"), "rid").status == 404
    assert restjson.error("braket", ServiceError("DeviceOfflineException", "x"), "rid").status == 424
    sm = awsjson.error("sagemaker", ServiceError("ResourceNotFound", "gone"), "rid")
    assert sm.status == 400 and json.loads(sm.body)["Message"] == "gone"
    iam = query.error("iam", ServiceError("NoSuchEntity", "no"), "rid")
    assert iam.status == 404 and b"<Code>NoSuchEntity</Code>" in iam.body


def test_validation_messages_follow_aws_wording():
    shape = service_models.operation("sagemaker", "CreateJob").input_shape
    with pytest.raises(ServiceError) as err:
        check_input(shape, {"JobName": "", "RoleArn": "arn:aws:iam::123456789012:role/r", "JobCategory": "X",
                            "JobConfigSchemaVersion": "1.0.0", "JobConfigDocument": "{}",
                            "Tags": [{"Key": "k"}]})
    message = err.value.message
    assert message.startswith("4 validation errors detected: ")
    assert "Value '' at 'jobName' failed to satisfy constraint: Member must have length greater than or equal to 1" \
        in message
    assert "Value null at 'tags.1.member.value' failed to satisfy constraint: Member must not be null" in message


def test_a_list_longer_than_allowed_is_refused_whole_in_a_short_message():
    shape = service_models.operation("sagemaker", "AddTags").input_shape
    tags = [{"Key": "k" * 200, "Value": "\x00"} for _ in range(10_000)]  # every item broken too
    with pytest.raises(ServiceError) as err:
        check_input(shape, {"ResourceArn": "arn:aws:sagemaker:us-east-1:123456789012:training-job/j", "Tags": tags})
    message = err.value.message
    assert message.startswith("1 validation error detected: Value '[{")
    assert "at 'tags' failed to satisfy constraint: Member must have length less than or equal to 50" in message
    assert len(message) < 2_000
