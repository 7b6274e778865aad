"""What the Lambda handlers share: errors in Lambda's shapes, finding a function, its configuration."""

from __future__ import annotations

import datetime as dt

from jobforge.api.base import RequestContext
from jobforge.core import functions
from jobforge.core.errors import ServiceError
from jobforge.core.functions import Function
from jobforge.execution.function_host import FunctionHost


def lambda_error(code: str, message: str, status: int | None = None, **fields) -> ServiceError:
    """An error as Lambda answers it: its code, message and ``"Type": "User"``."""
    return ServiceError(code, message, status, Type="User", **fields)


def invalid(message: str) -> ServiceError:
    return lambda_error("InvalidParameterValueException", message)


def host(ctx: RequestContext) -> FunctionHost:
    return ctx.runtime.functions


def function_of(ctx: RequestContext, identifier: str, qualifier: str | None = None) -> Function:
    """The caller's function a name, ARN or partial ARN names in the request's region (only ``$LATEST``)."""
    try:
        region, account, name, named_qualifier = functions.parse_identifier(identifier)
    except ValueError:
        raise invalid(f"Invalid function name or ARN: {identifier}") from None
    arn = functions.function_arn(ctx.region, ctx.account_id, name)
    if qualifier and named_qualifier and qualifier != named_qualifier:
        raise invalid("The derived qualifier from the function name does not match the specified qualifier.")
    qualifier = qualifier or named_qualifier
    if qualifier and qualifier != functions.LATEST:
        raise lambda_error("ResourceNotFoundException", f"Function not found: {arn}:{qualifier}")
    found = None
    if region in (None, ctx.region) and account in (None, ctx.account_id):
        found = functions.find(ctx.engine, ctx.account_id, ctx.region, name)
    if found is None:
        raise lambda_error("ResourceNotFoundException", f"Function not found: {arn}")
    return found


def last_modified(epoch: float) -> str:
    """LastModified as Lambda writes it: ``2024-05-01T12:00:00.000+0000``."""
    moment = dt.datetime.fromtimestamp(epoch, dt.timezone.utc)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}+0000"


def configuration(function: Function) -> dict:
    """The function's FunctionConfiguration."""
    config = {
        "FunctionName": function.name, "FunctionArn": function.arn, "Role": function.role,
        "CodeSize": function.code_size, "Description": function.description, "Timeout": function.timeout,
        "MemorySize": function.memory_size,
        "LastModified": last_modified(function.last_modified), "CodeSha256": function.code_sha256,
        "Version": functions.LATEST, "TracingConfig": {"Mode": "PassThrough"}, "RevisionId": function.revision_id,
        "State": function.state, "PackageType": function.package_type, "Architectures": function.architectures,
        "EphemeralStorage": {"Size": function.ephemeral_storage},
        "SnapStart": {"ApplyOn": "None", "OptimizationStatus": "Off"},
        "LoggingConfig": {"LogFormat": "Text", "LogGroup": function.log_group},
    }
    if function.package_type == functions.ZIP:
        config.update(Runtime=function.runtime, Handler=function.handler)
    elif function.image_config:
        config["ImageConfigResponse"] = {"ImageConfig": dict(function.image_config)}
    if function.environment:
        config["Environment"] = {"Variables": dict(function.environment)}
    for member, value in (("StateReason", function.state_reason), ("StateReasonCode", function.state_reason_code),
                          ("LastUpdateStatus", function.last_update_status),
                          ("LastUpdateStatusReason", function.last_update_reason),
                          ("LastUpdateStatusReasonCode", function.last_update_reason_code)):
        if value is not None:
            config[member] = value
    return config
