"""The HTTP bindings restJson1 and restXml share: output members on headers and status, the text a header
carries, and how percent-encoded text that is not UTF-8 is read from a path or query string."""

from __future__ import annotations

import base64
import datetime as dt

import pytest
from botocore.model import ShapeResolver

from jobforge.core import service_models
from jobforge.core.errors import ServiceError
from jobforge.server.protocol import query, rest, restjson, restxml
from jobforge.server.protocol.http import HttpRequest, HttpResponse


def _output(service: str, operation: str):
    return service_models.operation(service, operation).output_shape


def test_output_members_go_to_headers_and_status_and_the_rest_is_left_for_the_body():
    response = HttpResponse()
    when = dt.datetime(2024, 5, 6, 7, 8, 9, tzinfo=dt.timezone.utc)
    left = rest.bind_output(_output("s3", "GetObject"), {
        "ContentLength": 3, "LastModified": when, "DeleteMarker": False, "Metadata": {"a": "1", "b": "x\ny"},
        "Body": b"abc", "ContentType": None}, response)
    headers = dict(response.headers)
    assert headers["Content-Length"] == "3"
    assert headers["Last-Modified"] == "Mon, 06 May 2024 07:08:09 GMT"
    assert headers["x-amz-delete-marker"] == "false"
    assert headers["x-amz-meta-a"] == "1"
    assert headers["x-amz-meta-b"] == "=?UTF-8?B?" + base64.b64encode(b"x\ny").decode() + "?="
    assert "Content-Type" not in headers  # None is not sent
    assert left == {}  # the payload member is the caller's to write


def test_a_status_code_member_sets_the_status_and_body_members_come_back():
    shape = ShapeResolver({
        "Output": {"type": "structure", "payload": "Document", "members": {
            "Status": {"shape": "Integer", "location": "statusCode"},
            "Expires": {"shape": "Time", "location": "header", "locationName": "X-Expires",
                        "timestampFormat": "iso8601"},
            "Name": {"shape": "String"}, "Count": {"shape": "Integer"}, "Document": {"shape": "String"}}},
        "Integer": {"type": "integer"}, "String": {"type": "string"}, "Time": {"type": "timestamp"},
    }).get_shape_by_name("Output")
    response = HttpResponse(200)
    left = rest.bind_output(shape, {"Status": 202, "Expires": 0, "Name": "n", "Count": None, "Document": "d"},
                            response)
    assert response.status == 202
    assert response.headers == [("X-Expires", "1970-01-01T00:00:00.000Z")]
    assert left == {"Name": "n"}


@pytest.mark.parametrize("text, sent", [
    ("plain; value", "plain; value"),
    ("café", "café"),  # Latin-1 goes as it is
    ("naïve ✓", "=?UTF-8?B?" + base64.b64encode("naïve ✓".encode()).decode() + "?="),
    ("two\r\nlines", "=?UTF-8?B?" + base64.b64encode(b"two\r\nlines").decode() + "?="),
])
def test_header_values_never_break_the_header_line(text, sent):
    assert rest.header_value(text) == sent


def test_both_rest_protocols_write_headers_alike():
    result = {"body": b"{}", "contentType": "text/plain", "performanceConfigLatency": "standard"}
    json_headers = dict(restjson.serialize("bedrock-runtime", "InvokeModel", result, "r1").headers)
    assert json_headers["Content-Type"] == "text/plain"
    assert json_headers["X-Amzn-Bedrock-PerformanceConfig-Latency"] == "standard"
    assert [name for name, _ in restjson.serialize("bedrock-runtime", "InvokeModel", result, "r1").headers
            ].count("Content-Type") == 1
    xml = restxml.serialize("s3", "HeadObject", {"ContentLength": 5, "ContentType": "text/plain",
                                                 "Metadata": {"k": "✓"}}, "r2")
    xml_headers = dict(xml.headers)
    assert xml_headers["Content-Type"] == "text/plain" and xml_headers["Content-Length"] == "5"
    assert xml_headers["x-amz-meta-k"] == rest.header_value("✓")


def test_pop_header_takes_it_out_whatever_its_case():
    response = HttpResponse(200, [("a", "1"), ("Content-Type", "text/plain")])
    assert response.pop_header("content-type") == "text/plain"
    assert response.headers == [("a", "1")]
    assert response.pop_header("content-type") is None


def test_an_s3_key_whose_percent_encoding_is_not_utf8_is_an_invalid_uri():
    request = HttpRequest("GET", "/bucket/a%FF%FEb", "", {"host": "localhost"})
    with pytest.raises(ServiceError) as raised:
        restxml.match("s3", request)
    assert (raised.value.code, raised.value.status) == ("InvalidURI", 400)
    request = HttpRequest("GET", "/bucket/caf%C3%A9/%E2%9C%93", "", {"host": "localhost"})
    assert restxml.match("s3", request) == "GetObject"
    assert request.scratch["labels"] == {"Bucket": "bucket", "Key": "café/✓"}


def test_a_query_string_that_is_not_utf8_decodes_to_surrogates_for_the_validator():
    request = HttpRequest("GET", "/", "prefix=a%FF&list-type=2&x=caf%C3%A9", {})
    assert request.query() == [("prefix", "a\udcff"), ("list-type", "2"), ("x", "café")]


def test_a_form_that_is_not_utf8_decodes_to_surrogates_and_an_unknown_action_is_echoed_printably():
    request = HttpRequest("POST", "/", "", {}, b"Action=GetRole&RoleName=%FF%FE&Version=2010-05-08")
    assert query.form(request)["RoleName"] == "\udcff\udcfe"
    request = HttpRequest("POST", "/", "", {}, b"Action=%C0%80&Version=2010-05-08")
    with pytest.raises(ServiceError) as raised:
        query.match("iam", request)
    assert raised.value.code == "InvalidAction" and "\\udcc0\\udc80" in raised.value.message
    query.error("iam", raised.value, "r").body.decode("utf-8")  # the answer can be written
