"""restXml (S3): method + bucket/key path (or virtual host) + query flags, XML bodies.

Several S3 operations share one method and URI template (PutObject,
UploadPart, CopyObject and UploadPartCopy are all ``PUT /{Bucket}/{Key+}``);
the model tells them apart only by their required query-string and header
members, so routing picks the operation whose required members are all
present, preferring the one that requires the most.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import os
import re
from xml.etree import ElementTree
from xml.sax.saxutils import escape

from jobforge.core import objects
from jobforge.core import service_models
from jobforge.core.errors import ServiceError
from jobforge.server.protocol import rest
from jobforge.server.protocol.http import HttpRequest, HttpResponse
from jobforge.server.protocol.validate import parse_timestamp, printable
from jobforge.server.protocol.wire import from_text, to_xml

XML = "application/xml"
NUMERIC_OR_BOOLEAN = {"integer", "long", "float", "double", "boolean"}
# Hosts of virtual-hosted-style requests: "<bucket>.localhost" and "<bucket>.s3.<anything>".
_VIRTUAL_HOST = re.compile(r"(?P<bucket>[a-z0-9][a-z0-9.-]*?)\.(?:localhost|s3[.-].+)")
# The model does not name the root element of an output without a payload member.
ROOT_ELEMENTS = {
    "ListBuckets": "ListAllMyBucketsResult", "ListObjects": "ListBucketResult", "ListObjectsV2": "ListBucketResult",
    "CreateMultipartUpload": "InitiateMultipartUploadResult", "ListParts": "ListPartsResult",
    "CompleteMultipartUpload": "CompleteMultipartUploadResult", "ListMultipartUploads": "ListMultipartUploadsResult",
    "DeleteObjects": "DeleteResult", "GetBucketLocation": "LocationConstraint", "GetObjectTagging": "Tagging",
    "GetBucketTagging": "Tagging", "GetBucketCors": "CORSConfiguration",
    "GetBucketLifecycleConfiguration": "LifecycleConfiguration", "GetObjectAttributes": "GetObjectAttributesResponse",
}


def virtual_bucket(request: HttpRequest) -> str | None:
    """The bucket a virtual-hosted request names in its host; None for a path-style request.

    As on AWS, the host's form decides, never what exists: "<bucket>.localhost" and "<bucket>.s3.<domain>"
    are virtual-hosted (a bucket that does not exist is NoSuchBucket, not another bucket read from the
    path), every other host is path-style, and so is "s3.localhost": "s3" can never be a bucket name.
    """
    host = request.host.rsplit(":", 1)[0] if not request.host.startswith("[") else ""
    found = _VIRTUAL_HOST.fullmatch(host.lower())
    if found is None or not objects.valid_bucket_name(found.group("bucket")):
        return None
    return found.group("bucket")


def addressed(request: HttpRequest) -> HttpRequest:
    """The request as if path-style: a virtual host's bucket moves into the path.

    The original keeps its raw path for signature checks (clients sign the path they send).
    """
    bucket = virtual_bucket(request)
    if bucket is None:
        return request
    return dataclasses.replace(request, raw_path=f"/{bucket}{request.raw_path or '/'}")


def _required_present(service: str, operation: str, request: HttpRequest, query: dict) -> int:
    """How many required query/header members the request carries; -1 if one is missing."""
    shape = service_models.operation(service, operation).input_shape
    if shape is None:
        return 0
    count = 0
    for name in shape.required_members:
        serialization = shape.members[name].serialization
        location, wire = serialization.get("location"), serialization.get("name", name)
        if location == "querystring":
            present = wire in query
        elif location == "header":
            present = wire.lower() in request.headers
        else:
            continue
        if not present:
            return -1
        count += 1
    return count


def match(service: str, request: HttpRequest) -> str | None:
    target = addressed(request)
    query = dict(target.query())
    fitting = list(rest.path_matches(service, target.raw_path, query))
    found = [(route, matched) for route, matched in fitting if route.method == request.method]
    if not found:
        request.scratch["path_matched"] = bool(fitting)
        return None
    best = [item for item in found if item[0].rank == found[0][0].rank]
    scored = [(_required_present(service, route.operation, request, query), route, matched)
              for route, matched in best]
    score, route, matched = max(scored, key=lambda item: item[0])
    if score < 0:
        request.scratch["path_matched"] = True
        return None
    request.scratch["labels"] = _utf8_labels(matched)
    return route.operation


def _utf8_labels(matched) -> dict[str, str]:
    """The bucket and key of the path; one whose percent-encoding is not UTF-8 makes the URI unreadable to S3."""
    labels = rest.decoded_labels(matched)
    try:
        for label in labels.values():
            label.encode("utf-8")  # invalid UTF-8 decodes to surrogates, which do not encode
    except UnicodeEncodeError:
        raise ServiceError("InvalidURI", "Couldn't parse the specified URI.", 400) from None
    return labels


# -- requests ------------------------------------------------------------------


def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


def from_xml(shape, element):
    """An XML element → Python values, walking the input shape.

    S3 checks a document against its schema before anything else: a required element that is missing,
    or a number or boolean that does not read as one, is MalformedXML (the validator then checks the
    values' constraints).
    """
    kind = shape.type_name
    if kind == "structure":
        children: dict[str, list] = {}
        for child in element:
            children.setdefault(_local(child.tag), []).append(child)
        out = {}
        for name, member in shape.members.items():
            wire = member.serialization.get("name", name)
            if member.type_name == "list" and member.serialization.get("flattened"):
                items = children.get(wire, [])
                if items:
                    out[name] = [from_xml(member.member, item) for item in items]
            elif wire in children:
                out[name] = from_xml(member, children[wire][0])
        if any(name not in out for name in shape.required_members):
            raise objects.malformed_xml()
        return out
    if kind == "list":
        item_name = shape.member.serialization.get("name", "member")
        return [from_xml(shape.member, child) for child in element if _local(child.tag) == item_name]
    if kind == "map":
        out = {}
        for entry in element:
            key, value = entry.find("key"), entry.find("value")
            if key is None or value is None:
                raise objects.malformed_xml()
            out[key.text or ""] = from_xml(shape.value, value)
        return out
    if kind == "blob":
        try:
            return base64.b64decode(element.text or "", validate=True)
        except (binascii.Error, ValueError):
            raise objects.malformed_xml() from None
    value = from_text(shape, element.text or "")
    if kind in NUMERIC_OR_BOOLEAN and isinstance(value, str):
        raise objects.malformed_xml()
    if kind == "timestamp":
        try:
            parse_timestamp(value)  # the validator converts it
        except (ValueError, TypeError, OverflowError):
            raise objects.malformed_xml() from None
    return value


def _xml_document(body: bytes):
    if b"<!DOCTYPE" in body or b"<!ENTITY" in body:  # no DTDs: no entity expansion
        raise objects.malformed_xml()
    try:
        return ElementTree.fromstring(body)
    except ElementTree.ParseError:
        raise objects.malformed_xml() from None


def _payload_document(member, body: bytes) -> dict:
    """A structure payload read from its XML document, whose root element the model names."""
    root = _xml_document(body)
    if _local(root.tag) != member.serialization.get("name", member.name):
        raise objects.malformed_xml()
    return from_xml(member, root)


def parse(service: str, operation: str, request: HttpRequest) -> dict:
    shape = service_models.operation(service, operation).input_shape
    params, _ = rest.bound_members(service, operation, request)
    if shape is None:
        return params
    payload = shape.serialization.get("payload")
    if payload:
        member = shape.members[payload]
        if member.type_name == "structure" and request.body:
            params[payload] = _payload_document(member, request.body)
        elif member.type_name == "structure" and payload in shape.required_members:
            raise objects.malformed_xml()  # S3 reads a missing document as an empty, invalid one
        elif member.type_name == "string" and request.body:
            params[payload] = request.body.decode("utf-8", "surrogateescape")  # not UTF-8: refused by name
    return params


# -- responses -----------------------------------------------------------------


async def _no_body():
    return
    yield


def _namespace(service: str) -> str:
    return service_models.service_model(service).metadata.get("xmlNamespace", "http://s3.amazonaws.com/doc/2006-03-01/")


def _document(root: str, inner: str, service: str) -> bytes:
    return (f'<?xml version="1.0" encoding="UTF-8"?>\n<{root} xmlns="{_namespace(service)}">{inner}</{root}>').encode()


def serialize(service: str, operation: str, result: dict, request_id: str) -> HttpResponse:
    op = service_models.operation(service, operation)
    response = HttpResponse(op.http.get("responseCode", 200), _request_headers(request_id))
    shape = op.output_shape
    if shape is None:
        return response
    payload = shape.serialization.get("payload")
    body_members = rest.bind_output(shape, result, response)
    sized = any(name.lower() == "content-length" for name, _ in response.headers)
    if result.get("ContentRange") and response.status == 200:
        response.status = 206
    if payload:
        member = shape.members[payload]
        value = result.get(payload)
        if member.type_name == "blob":
            # A streamed body carries its own Content-Length header; App._send adds one only to bytes bodies.
            response.body = value if value is not None else (_no_body() if sized else b"")
        elif member.type_name == "string" and value is not None:  # GetBucketPolicy: the document as stored
            response.body = value.encode("utf-8", "surrogateescape")
        elif value is not None:
            root = member.serialization.get("name", payload)
            response.body = _document(root, _inner_xml(member, value), service)
            response.header("Content-Type", XML)
    elif body_members:
        root = ROOT_ELEMENTS.get(operation, f"{operation}Result")
        if list(body_members) == [root]:  # GetBucketLocation: the root element holds the value itself
            response.body = _document(root, escape(str(body_members[root])), service)
        else:
            response.body = _document(root, _inner_xml(shape, body_members), service)
        response.header("Content-Type", XML)
    elif sized:
        response.body = _no_body()
    return response


def _inner_xml(shape, value) -> str:
    text = to_xml(shape, value, "r")
    return text[len("<r>"):-len("</r>")]


def _request_headers(request_id: str) -> list[tuple[str, str]]:
    return [("x-amz-request-id", request_id), ("x-amz-id-2", base64.b64encode(os.urandom(24)).decode())]


def error(service: str, err: ServiceError, request_id: str) -> HttpResponse:
    status = err.status or service_models.error_index(service).get(err.code, (400, None))[0]
    response = HttpResponse(status, _request_headers(request_id))
    for name, value in err.headers.items():  # what S3 describes with the error (ETag, …)
        response.header(name, rest.header_value(str(value)))
    if status == 304:
        return response
    extra = "".join(f"<{name}>{escape(printable(str(value)))}</{name}>" for name, value in err.fields.items())
    host_id = dict(response.headers)["x-amz-id-2"]
    response.body = (f'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>{escape(err.code)}</Code>'
                     f"<Message>{escape(printable(err.message))}</Message>{extra}<RequestId>{request_id}</RequestId>"
                     f"<HostId>{host_id}</HostId></Error>").encode()
    response.header("Content-Type", XML)
    return response
