"""Which service and operation a request is for.

Route on the SigV4 credential scope's service first, then on X-Amz-Target,
the query Action or the method and path. Several models share a signing name
(SageMaker, its runtime and its job runtime; Bedrock and its runtime), so each scope lists
its candidates in order.
"""

from __future__ import annotations

from types import ModuleType

from jobforge.api.base import PATH_ALIASES
from jobforge.core import service_models
from jobforge.core.errors import ServiceError
from jobforge.server.protocol import awsjson, query, restjson, restxml
from jobforge.server.protocol.http import HttpRequest

PROTOCOLS: dict[str, ModuleType] = {"json": awsjson, "rest-json": restjson, "query": query, "rest-xml": restxml}

SERVICES_BY_SCOPE: dict[str, tuple[str, ...]] = {
    "sagemaker": ("sagemaker", "sagemaker-runtime", "sagemakerjobruntime"),
    "bedrock": ("bedrock", "bedrock-runtime"),
    "braket": ("braket",),
    "iam": ("iam",),
    "sts": ("sts",),
    "logs": ("logs",),
    "ecr": ("ecr",),
    "s3": ("s3",),
    "lambda": ("lambda",),
    "bedrock-agentcore": ("bedrock-agentcore-control", "bedrock-agentcore"),
    "monitoring": ("cloudwatch",),
}
QUERY_VERSIONS = {"2011-06-15": "sts", "2010-05-08": "iam"}


# A model may declare several protocols (CloudWatch: CBOR, JSON, query); clients use the first of botocore's
# order that it declares, which botocore's resolved_protocol names.
def protocol_of(service: str) -> ModuleType:
    return PROTOCOLS[service_models.service_model(service).resolved_protocol]


def candidates(scope_service: str | None, request: HttpRequest) -> tuple[str, ...]:
    if scope_service is not None:
        if scope_service not in SERVICES_BY_SCOPE:
            raise ServiceError("UnrecognizedClientException", f"Service {scope_service!r} is not served here", 400)
        return SERVICES_BY_SCOPE[scope_service]
    # Unsigned request (auth disabled): infer from the request's shape.
    target = request.headers.get("x-amz-target", "")
    if target.startswith("SageMaker."):
        return ("sagemaker",)
    if target.startswith("Logs_"):
        return ("logs",)
    if target.startswith("GraniteServiceVersion20100801."):
        return ("cloudwatch",)
    content_type = request.headers.get("content-type", "")
    if "x-www-form-urlencoded" in content_type or "Action=" in request.query_string:
        version = query.form(request).get("Version")
        if version in QUERY_VERSIONS:
            return (QUERY_VERSIONS[version],)
    return ("sagemaker-runtime", "sagemakerjobruntime", "bedrock", "bedrock-runtime", "braket", "s3")


def route(scope_service: str | None, request: HttpRequest) -> tuple[str, str]:
    """(service model name, operation name), or a ServiceError in the first candidate's shape."""
    services = candidates(scope_service, request)
    alias = PATH_ALIASES.get(request.raw_path.rstrip("/"))
    if alias is not None and alias[0] in services and request.method == "POST":
        return alias
    path_matched = False
    for service in services:
        if service_models.service_model(service).resolved_protocol not in PROTOCOLS:
            continue
        operation = protocol_of(service).match(service, request)
        if operation is not None:
            return service, operation
        path_matched = path_matched or request.scratch.pop("path_matched", False)
    if path_matched:
        raise ServiceError("UnknownOperationException",
                           f"{request.method} is not supported on {request.raw_path}", 405)
    if service_models.service_model(services[0]).resolved_protocol == "json":
        raise ServiceError("UnknownOperationException", "Missing or malformed X-Amz-Target header", 400)
    raise ServiceError("UnknownOperationException", f"No operation matches {request.method} {request.raw_path}", 400)



def candidates_or_default(scope_service: str | None, request: HttpRequest | None = None) -> str:
    """The service whose error shape answers a request that routed nowhere."""
    if scope_service in SERVICES_BY_SCOPE:
        return SERVICES_BY_SCOPE[scope_service][0]
    if request is not None and scope_service is None:
        content_type = request.headers.get("content-type", "")
        if "x-www-form-urlencoded" in content_type:
            return "iam"  # an awsQuery form
        if "x-amz-target" not in request.headers and "json" not in content_type:
            return "s3"  # unsigned and not JSON: a browser, curl or an old presigned URL, all S3's callers
    return "sagemaker"  # a JSON error, never an HTML page


def protocol_name(service: str) -> str:
    return service_models.service_model(service).resolved_protocol
