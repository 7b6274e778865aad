"""Bedrock model-invocation logging: each bedrock-runtime call of an account
that turned logging on in the call's region is written to its S3 bucket as a
``ModelInvocationLog`` record, with the request metadata that distillation
jobs filter on (``invocationLogsConfig.requestMetadataFilters``)."""

from __future__ import annotations

import datetime as dt
import gzip
import json
import time
import uuid

import sqlalchemy as sa

from jobforge.api import bedrock_objects
from jobforge.api.base import RequestContext, handler
from jobforge.core.errors import ServiceError, validation_error
from jobforge.core.store import invocation_logging, reading


def _configured(ctx: RequestContext):
    """The condition that picks the logging configuration of the caller's account in the request's region."""
    return sa.and_(invocation_logging.c.account_id == ctx.account_id, invocation_logging.c.region == ctx.region)


def _config(ctx: RequestContext) -> dict | None:
    with reading(ctx.engine) as conn:
        row = conn.execute(sa.select(invocation_logging.c.config).where(_configured(ctx))).first()
    return row.config if row else None


@handler("bedrock", "PutModelInvocationLoggingConfiguration")
def put_model_invocation_logging_configuration(ctx: RequestContext, req: dict) -> dict:
    config = req["loggingConfig"]
    if "cloudWatchConfig" in config:
        raise validation_error("Only s3Config delivery of invocation logs is supported here; "
                               "remove cloudWatchConfig.")
    if "s3Config" not in config:
        raise validation_error("loggingConfig needs s3Config.")
    bucket = config["s3Config"]["bucketName"]
    try:
        bedrock_objects.store(ctx).bucket(ctx.account_id, bucket)
    except ServiceError as err:
        raise validation_error(f"Failed to validate the S3 bucket {bucket}: {err.message}") from None
    with ctx.engine.begin() as conn:
        conn.execute(invocation_logging.delete().where(_configured(ctx)))
        conn.execute(invocation_logging.insert().values(account_id=ctx.account_id, region=ctx.region, config=config,
                                                        updated_at=time.time()))
    return {}


@handler("bedrock", "GetModelInvocationLoggingConfiguration")
def get_model_invocation_logging_configuration(ctx: RequestContext, req: dict) -> dict:
    config = _config(ctx)
    return {"loggingConfig": config} if config else {}


@handler("bedrock", "DeleteModelInvocationLoggingConfiguration")
def delete_model_invocation_logging_configuration(ctx: RequestContext, req: dict) -> dict:
    with ctx.engine.begin() as conn:
        conn.execute(invocation_logging.delete().where(_configured(ctx)))
    return {}


def log_invocation(ctx: RequestContext, *, operation: str, model_id: str, input_body: dict, output_body: dict,
                   input_tokens: int, output_tokens: int, request_metadata: dict | None) -> None:
    """Write one log record when the caller's account logs text invocations."""
    config = _config(ctx)
    if not config or config.get("textDataDeliveryEnabled") is False:
        return
    now = dt.datetime.now(dt.timezone.utc)
    record = {
        "schemaType": "ModelInvocationLog", "schemaVersion": "1.0",
        "timestamp": now.strftime("%Y-%m-%dT%H:%M:%S.") + f"{now.microsecond // 1000:03d}Z",
        "accountId": ctx.account_id, "identity": {"arn": ctx.principal_arn}, "region": ctx.region,
        "requestId": ctx.request_id, "operation": operation, "modelId": model_id,
        "input": {"inputContentType": "application/json", "inputBodyJson": input_body,
                  "inputTokenCount": input_tokens},
        "output": {"outputContentType": "application/json", "outputBodyJson": output_body,
                   "outputTokenCount": output_tokens},
    }
    if request_metadata:
        record["requestMetadata"] = request_metadata
    s3 = config["s3Config"]
    prefix = s3.get("keyPrefix", "").strip("/")
    key = (f"{prefix + '/' if prefix else ''}AWSLogs/{ctx.account_id}/BedrockModelInvocationLogs/{ctx.region}/"
           f"{now:%Y/%m/%d/%H}/{now:%Y%m%dT%H%M%S}{now.microsecond // 1000:03d}Z_{uuid.uuid4().hex[:16]}.json.gz")
    data = gzip.compress((json.dumps(record) + "\n").encode())
    bedrock_objects.store(ctx).put_bytes(ctx.account_id, s3["bucketName"], key, data, "application/json")
