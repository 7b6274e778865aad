"""Creating, reading, changing and deleting functions.

A function's code is checked as AWS checks it (a readable .zip archive,
member names that stay in its directory, 50 MB sent directly, 250 MB
unzipped) and kept under the data dir, or is a container image the server's
engine has (``images``); the function is Pending (created) or InProgress
(updated) until the host has it ready, as on AWS.
"""

from __future__ import annotations

from jobforge.api.base import RequestContext, handler
from jobforge.api.lambda_functions import images
from jobforge.api.lambda_functions.common import configuration, function_of, host, invalid, lambda_error
from jobforge.api.roles import require_role
from jobforge.core import functions as records
from jobforge.core import paging, tags
from jobforge.core.errors import ServiceError
from jobforge.execution import function_code
from jobforge.execution.container_engine import HOST_ARCHITECTURE

PYTHON_RUNTIMES = ("python3.10", "python3.11", "python3.12", "python3.13")
MAX_TIMEOUT = 900
MAX_MEMORY = 10240
MAX_ENVIRONMENT_BYTES = 4096
# Variables Lambda sets itself and refuses to take from the function's configuration.
RESERVED_VARIABLES = ("_HANDLER", "_X_AMZN_TRACE_ID", "AWS_DEFAULT_REGION", "AWS_REGION", "AWS_EXECUTION_ENV",
                      "AWS_LAMBDA_FUNCTION_NAME", "AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "AWS_LAMBDA_FUNCTION_VERSION",
                      "AWS_LAMBDA_INITIALIZATION_TYPE", "AWS_LAMBDA_LOG_GROUP_NAME", "AWS_LAMBDA_LOG_STREAM_NAME",
                      "AWS_ACCESS_KEY", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN",
                      "AWS_LAMBDA_RUNTIME_API", "LAMBDA_TASK_ROOT", "LAMBDA_RUNTIME_DIR")
# Settings that change what a function does and that jobforge does not carry out: refused, never ignored.
UNSUPPORTED = {
    "Layers": "Layers", "VpcConfig": "VPC configuration", "DeadLetterConfig": "Dead-letter queues",
    "KMSKeyArn": "Customer-managed KMS keys", "FileSystemConfigs": "File systems (EFS)",
    "CodeSigningConfigArn": "Code signing", "CapacityProviderConfig": "Capacity providers",
    "DurableConfig": "Durable functions", "TenancyConfig": "Tenancy configuration",
    "AcceleratorConfig": "Accelerators", "RuntimeConfig": "Runtime configuration", "PublishTo": "Publishing",
}


def _refuse_unsupported(req: dict) -> None:
    for member, what in UNSUPPORTED.items():
        value = req.get(member)
        if value in (None, [], {}, ""):
            continue
        if member == "VpcConfig" and not (value.get("SubnetIds") or value.get("SecurityGroupIds")):
            continue
        if member == "DeadLetterConfig" and not value.get("TargetArn"):
            continue
        raise invalid(f"{what} ({member}) are not supported by jobforge.")
    if req.get("Publish"):
        raise invalid("Publishing versions (Publish) is not supported by jobforge: functions have $LATEST only.")
    tracing = (req.get("TracingConfig") or {}).get("Mode", "PassThrough")
    if tracing != "PassThrough":
        raise invalid("Active tracing (TracingConfig) is not supported by jobforge.")
    if (req.get("SnapStart") or {}).get("ApplyOn", "None") != "None":
        raise invalid("SnapStart is not supported by jobforge.")
    logging_config = req.get("LoggingConfig") or {}
    if logging_config.get("LogFormat", "Text") != "Text" or logging_config.get("ApplicationLogLevel") \
            or logging_config.get("SystemLogLevel") or logging_config.get("LogGroup"):
        raise invalid("Only the default logging configuration (Text, /aws/lambda/NAME) is supported by jobforge.")


def _check_runtime(ctx: RequestContext, runtime: str) -> None:
    if runtime not in PYTHON_RUNTIMES:
        raise invalid(f"The runtime parameter of {runtime} is not supported by jobforge: it runs Python functions "
                      f"({', '.join(PYTHON_RUNTIMES)}).")
    offered = host(ctx).runtimes
    if runtime not in offered:
        raise invalid(f"The runtime {runtime} is not available on this host; it offers "
                      f"{', '.join(sorted(offered)) or 'none'}.")


def _check_settings(req: dict) -> None:
    if "Timeout" in req and not 1 <= req["Timeout"] <= MAX_TIMEOUT:
        raise invalid(f"Timeout must be between 1 and {MAX_TIMEOUT} seconds; it is {req['Timeout']}.")
    if "MemorySize" in req and not 128 <= req["MemorySize"] <= MAX_MEMORY:
        raise invalid(f"MemorySize must be between 128 and {MAX_MEMORY} MB; it is {req['MemorySize']}.")
    storage = (req.get("EphemeralStorage") or {}).get("Size")
    if storage is not None and not 512 <= storage <= 10240:
        raise invalid(f"EphemeralStorage Size must be between 512 and 10240 MB; it is {storage}.")
    variables = (req.get("Environment") or {}).get("Variables") or {}
    reserved = [name for name in variables if name in RESERVED_VARIABLES]
    if reserved:
        raise invalid("Lambda was unable to configure your environment variables because the environment "
                      "variables you have provided contains reserved keys that are currently not supported for "
                      f"modification. Reserved keys used in this request: {', '.join(reserved)}")
    measured = sum(len(k.encode()) + len(v.encode()) for k, v in variables.items())
    if measured > MAX_ENVIRONMENT_BYTES:
        raise invalid("Lambda was unable to configure your environment variables because the environment "
                      f"variables you have provided exceeded the 4KB limit. String measured: {measured} bytes")


def _check_role(ctx: RequestContext, role: str) -> None:
    try:
        require_role(ctx, role, "InvalidParameterValueException")
    except ServiceError:
        raise invalid("The role defined for the function cannot be assumed by Lambda.") from None


def _code_bytes(ctx: RequestContext, req: dict) -> bytes:
    """The archive the request gives, directly or in S3 (read with the caller's account)."""
    if req.get("ZipFile") is not None:
        if req.get("S3Bucket") or req.get("S3Key"):
            raise invalid("Please do not provide other FunctionCode parameters when providing a ZipFile.")
        data = req["ZipFile"]
        if len(data) > function_code.MAX_DIRECT_UPLOAD:
            raise lambda_error("RequestEntityTooLargeException", "Zipped size must be smaller than "
                               f"{function_code.MAX_DIRECT_UPLOAD} bytes for a ZipFile sent with the request; "
                               "upload larger archives to S3", 413)
        return data
    bucket, key = req.get("S3Bucket"), req.get("S3Key")
    if not (bucket and key):
        raise invalid("Please provide a source for function code.")
    if req.get("S3ObjectVersion"):
        raise invalid("S3ObjectVersion is not supported by jobforge.")
    store = ctx.runtime.object_store
    try:
        info = store.head(ctx.account_id, bucket, key)
        if info.size > function_code.MAX_UNZIPPED:
            raise invalid(f"Unzipped size must be smaller than {function_code.MAX_UNZIPPED} bytes")
        return b"".join(store.read(info, 0, info.size))
    except ServiceError as err:
        if err.code == "InvalidParameterValueException":
            raise
        raise invalid(f"Error occurred while GetObject. S3 Error Code: {err.code}. S3 Error Message: "
                      f"{err.message}") from None


def _checked_code(ctx: RequestContext, req: dict) -> tuple[bytes, str]:
    data = _code_bytes(ctx, req)
    try:
        function_code.check(data)
    except function_code.CodeError as err:
        raise invalid(str(err)) from None
    return data, function_code.sha256(data)


@handler("lambda", "CreateFunction", blocking=True)
def create_function(ctx: RequestContext, req: dict) -> dict:
    image_wanted = images.wanted(req)
    if image_wanted and host(ctx).containers is None:
        raise images.refusal()
    _refuse_unsupported(req)
    if image_wanted:
        images.check_create(req)
    else:
        if req.get("ImageConfig"):
            raise invalid("Please don't provide ImageConfig when creating a function with PackageType Zip.")
        if not req.get("Runtime") or not req.get("Handler"):
            raise invalid("Runtime and Handler are mandatory parameters for functions created with deployment "
                          "packages.")
        _check_runtime(ctx, req["Runtime"])
    _check_settings(req)
    architectures = req.get("Architectures") or ["x86_64"]
    if architectures != [HOST_ARCHITECTURE]:
        raise invalid(f"This host runs {HOST_ARCHITECTURE} functions only; Architectures is {architectures}.")
    _check_role(ctx, req["Role"])
    name = req["FunctionName"]
    try:
        region, account, name, qualifier = records.parse_identifier(name)
    except ValueError:
        raise invalid(f"Invalid function name: {req['FunctionName']}") from None
    if qualifier or region not in (None, ctx.region) or account not in (None, ctx.account_id) or len(name) > 64:
        raise invalid(f"Invalid function name: {req['FunctionName']}")
    if image_wanted:
        code = dict(images.code_values(images.image_of(ctx, req["Code"]["ImageUri"], architectures)),
                    package_type=records.IMAGE, image_config=images.image_config(req.get("ImageConfig")))
        data = None
    else:
        data, digest = _checked_code(ctx, req["Code"])
        code = dict(code_sha256=digest, code_size=len(data))
    function = records.new(
        ctx.account_id, ctx.region, name, runtime=req.get("Runtime") or "", role=req["Role"],
        handler=req.get("Handler") or "",
        description=req.get("Description", ""), timeout=req.get("Timeout", 3), memory_size=req.get("MemorySize", 128),
        ephemeral_storage=(req.get("EphemeralStorage") or {}).get("Size", 512),
        environment=(req.get("Environment") or {}).get("Variables") or {}, architectures=architectures,
        code_file="", reserved_concurrency=None, state=records.PENDING,
        state_reason="The function is being created.", state_reason_code="Creating", last_update_status=None,
        last_update_reason=None, last_update_reason_code=None, **code)
    if data is not None:
        function.code_file = str(host(ctx).store_code(function.id, data))
    records.insert(ctx.engine, function)
    if req.get("Tags"):
        tags.put(ctx.engine, ctx.account_id, function.arn, req["Tags"])
    host(ctx).prepare(function)
    return configuration(function)


@handler("lambda", "GetFunction")
def get_function(ctx: RequestContext, req: dict) -> dict:
    function = function_of(ctx, req["FunctionName"], req.get("Qualifier"))
    out = {"Configuration": configuration(function), "Tags": tags.of(ctx.engine, function.arn)}
    if function.package_type == records.IMAGE:
        out["Code"] = {"RepositoryType": "ECR", "ImageUri": function.image_uri,
                       "ResolvedImageUri": function.resolved_image_uri}
    if function.reserved_concurrency is not None:
        out["Concurrency"] = {"ReservedConcurrentExecutions": function.reserved_concurrency}
    return out


@handler("lambda", "GetFunctionConfiguration")
def get_function_configuration(ctx: RequestContext, req: dict) -> dict:
    return configuration(function_of(ctx, req["FunctionName"], req.get("Qualifier")))


@handler("lambda", "ListFunctions")
def list_functions(ctx: RequestContext, req: dict) -> dict:
    if req.get("MasterRegion"):
        raise invalid("MasterRegion (Lambda@Edge replicas) is not supported by jobforge.")
    found = records.in_region(ctx.engine, ctx.account_id, ctx.region)
    page, marker = paging.marker_page(found, lambda f: f.name, req.get("Marker"), req.get("MaxItems", 50),
                                      lambda: invalid("Invalid Marker"))
    out = {"Functions": [configuration(function) for function in page]}
    if marker:
        out["NextMarker"] = marker
    return out


def _check_revision(function: records.Function, req: dict) -> None:
    if req.get("RevisionId") and req["RevisionId"] != function.revision_id:
        raise lambda_error("PreconditionFailedException", "The Revision Id provided does not match the latest "
                           "Revision Id. Call the GetFunction/GetAlias API to retrieve the latest Revision Id")


def _check_not_updating(function: records.Function) -> None:
    if function.state == records.PENDING or function.last_update_status == records.IN_PROGRESS:
        raise lambda_error("ResourceConflictException", "The operation cannot be performed at this time. An update "
                           f"is in progress for resource: {function.arn}")


def _updated(ctx: RequestContext, function: records.Function, **values) -> dict:
    function = records.update(ctx.engine, function, last_update_status=records.IN_PROGRESS,
                              last_update_reason="The function is being created.",
                              last_update_reason_code="Creating", **values)
    host(ctx).prepare(function)
    return configuration(function)


@handler("lambda", "UpdateFunctionCode", blocking=True)
def update_function_code(ctx: RequestContext, req: dict) -> dict:
    function = function_of(ctx, req["FunctionName"])
    if function.package_type == records.ZIP and req.get("ImageUri"):
        raise invalid("Please don't provide ImageUri when updating a function with packageType Zip.")
    if function.package_type == records.IMAGE and (not req.get("ImageUri") or any(
            req.get(member) is not None for member in images.ZIP_MEMBERS)):
        raise invalid("Please provide ImageUri when updating a function with packageType Image.")
    _refuse_unsupported({"Publish": req.get("Publish"), "PublishTo": req.get("PublishTo")})
    if req.get("Architectures") and req["Architectures"] != [HOST_ARCHITECTURE]:
        raise invalid(f"This host runs {HOST_ARCHITECTURE} functions only; Architectures is "
                      f"{req['Architectures']}.")
    _check_revision(function, req)
    _check_not_updating(function)
    if function.package_type == records.IMAGE:
        code = images.code_values(images.image_of(ctx, req["ImageUri"], req.get("Architectures")
                                                  or function.architectures))
        if req.get("DryRun"):
            return dict(configuration(function), CodeSha256=code["code_sha256"])
        return _updated(ctx, function, **code)
    data, digest = _checked_code(ctx, req)
    if req.get("DryRun"):
        return dict(configuration(function), CodeSha256=digest, CodeSize=len(data))
    path = host(ctx).store_code(function.id, data)
    return _updated(ctx, function, code_file=str(path), code_sha256=digest, code_size=len(data))


@handler("lambda", "UpdateFunctionConfiguration")
def update_function_configuration(ctx: RequestContext, req: dict) -> dict:
    function = function_of(ctx, req["FunctionName"])
    _refuse_unsupported(req)
    _check_settings(req)
    _check_revision(function, req)
    _check_not_updating(function)
    values = {}
    if function.package_type == records.IMAGE and (req.get("Runtime") or req.get("Handler")):
        raise invalid("Runtime and Handler are not supported for functions of PackageType Image.")
    if "ImageConfig" in req:
        if function.package_type != records.IMAGE:
            raise invalid("ImageConfig is only supported for functions of PackageType Image.")
        values["image_config"] = images.image_config(req["ImageConfig"])
    if "Runtime" in req:
        _check_runtime(ctx, req["Runtime"])
        values["runtime"] = req["Runtime"]
    if "Role" in req:
        _check_role(ctx, req["Role"])
        values["role"] = req["Role"]
    for member, column in (("Handler", "handler"), ("Description", "description"), ("Timeout", "timeout"),
                           ("MemorySize", "memory_size")):
        if member in req:
            values[column] = req[member]
    if "Environment" in req:
        values["environment"] = (req["Environment"] or {}).get("Variables") or {}
    if "EphemeralStorage" in req:
        values["ephemeral_storage"] = req["EphemeralStorage"]["Size"]
    return _updated(ctx, function, **values)


@handler("lambda", "DeleteFunction")
def delete_function(ctx: RequestContext, req: dict) -> dict:
    function = function_of(ctx, req["FunctionName"], req.get("Qualifier"))
    if req.get("Qualifier"):
        raise invalid("Deletion of $LATEST version is not allowed.")
    records.delete(ctx.engine, function)
    tags.remove(ctx.engine, function.arn)
    host(ctx).forget(function)
    return {"StatusCode": 204}
