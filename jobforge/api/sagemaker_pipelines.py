"""SageMaker Pipelines: CreatePipeline, UpdatePipeline, DescribePipeline, ListPipelines, DeletePipeline,
StartPipelineExecution, DescribePipelineExecution, ListPipelineExecutions, ListPipelineExecutionSteps and
StopPipelineExecution, per account and region.

A definition is checked whole when it is stored (``core.pipeline_definitions``): jobforge runs ``Job`` steps
(CreateJob) and ``Lineage`` steps, and refuses any other step type then. The server's pipeline runner
(``execution.pipeline_runner``) carries each execution through its steps. What needs services jobforge does
not have is refused: version aliases, selective execution (it keeps no step results to reuse) and
pipeline-level MLflow tracking.
"""

from __future__ import annotations

import sqlalchemy as sa

from jobforge.api.base import RequestContext, client_token, handler
from jobforge.api.roles import require_role
from jobforge.core import idempotency, paging, pipeline_definitions, pipelines
from jobforge.core.errors import ServiceError, validation_error
from jobforge.core.pipelines import pipeline_execution_steps, pipeline_executions
from jobforge.core.timestamps import from_epoch

DEFAULT_PAGE = 10
REFUSED = {
    "PipelineVersionAliases": "pipeline version aliases are not supported by jobforge; name a version by its "
                              "PipelineVersionId",
    "PipelineVersionAlias": "pipeline version aliases are not supported by jobforge; name a version by its "
                            "PipelineVersionId",
    "SelectiveExecutionConfig": "selective execution is not supported by jobforge: it keeps no step results of "
                                "earlier executions to reuse",
    "MlflowExperimentName": "pipeline-level MLflow tracking is not supported by jobforge; steps that support it "
                            "take an MlflowConfig of their own",
}


def _refuse_unsupported(req: dict) -> None:
    for member, reason in REFUSED.items():
        if req.get(member):
            raise validation_error(f"{member}: {reason}.")


def _user(ctx: RequestContext) -> dict:
    return {"IamIdentity": {"Arn": ctx.principal_arn}}


def _definition_text(ctx: RequestContext, req: dict) -> str | None:
    """The definition a request gives inline or in an S3 object of the caller's; None when it gives none."""
    if "PipelineDefinition" in req and "PipelineDefinitionS3Location" in req:
        raise validation_error("Give PipelineDefinition or PipelineDefinitionS3Location, not both.")
    if "PipelineDefinition" in req:
        return req["PipelineDefinition"]
    location = req.get("PipelineDefinitionS3Location")
    if location is None:
        return None
    uri = f"s3://{location['Bucket']}/{location['ObjectKey']}"
    try:
        with ctx.runtime.object_store.open(ctx.account_id, location["Bucket"], location["ObjectKey"],
                                           location.get("VersionId")) as held:
            body = b"".join(held.read(0, held.info.size))
    except ServiceError as err:
        raise validation_error(f"PipelineDefinitionS3Location {uri} cannot be read: {err.code}: {err.message}") \
            from None
    try:
        return body.decode()
    except UnicodeDecodeError:
        raise validation_error(f"PipelineDefinitionS3Location {uri} does not hold UTF-8 text.") from None


def _checked_definition(text: str) -> str:
    if len(text) > 1048576:
        raise validation_error("The pipeline definition is longer than 1048576 characters.")
    pipeline_definitions.parse(text)
    return text


def _pipeline(ctx: RequestContext, identifier: str) -> pipelines.Pipeline:
    return pipelines.get(ctx.engine, ctx.account_id, ctx.region, identifier)


def _paged(key: str, page: paging.Page, summary) -> dict:
    out = {key: [summary(row) for row in page.rows]}
    if page.next_token:
        out["NextToken"] = page.next_token
    return out


# -- pipelines ----------------------------------------------------------------------------------

@handler("sagemaker", "CreatePipeline")
def create_pipeline(ctx: RequestContext, req: dict) -> dict:
    _refuse_unsupported(req)
    token = client_token(ctx, "pipeline:create", req, "ClientRequestToken")
    earlier = idempotency.earlier(ctx.engine, token, idempotency.reused("ValidationException", "ClientRequestToken"))
    if earlier:
        return {"PipelineArn": earlier}
    text = _definition_text(ctx, req)
    if text is None:
        raise validation_error("Give the pipeline's definition: PipelineDefinition or PipelineDefinitionS3Location.")
    require_role(ctx, req["RoleArn"], "ValidationException")
    pipeline = pipelines.create(
        ctx.engine, ctx.account_id, ctx.region, name=req["PipelineName"],
        display_name=req.get("PipelineDisplayName"), description=req.get("PipelineDescription"),
        role_arn=req["RoleArn"], parallelism=req.get("ParallelismConfiguration"),
        definition=_checked_definition(text), created_by=_user(ctx), tag_list=req.get("Tags") or [], token=token)
    return {"PipelineArn": pipeline.arn}


@handler("sagemaker", "UpdatePipeline")
def update_pipeline(ctx: RequestContext, req: dict) -> dict:
    _refuse_unsupported(req)
    pipeline = _pipeline(ctx, req["PipelineName"])
    text = _definition_text(ctx, req)
    if "RoleArn" in req:
        require_role(ctx, req["RoleArn"], "ValidationException")
    changes = {column: req[member] for member, column in (
        ("PipelineDisplayName", "display_name"), ("PipelineDescription", "description"), ("RoleArn", "role_arn"),
        ("ParallelismConfiguration", "parallelism")) if member in req}
    version = pipelines.update(ctx.engine, pipeline, changes, _checked_definition(text) if text else None,
                               _user(ctx))
    return {"PipelineArn": pipeline.arn, "PipelineVersionId": version}


@handler("sagemaker", "DescribePipeline")
def describe_pipeline(ctx: RequestContext, req: dict) -> dict:
    _refuse_unsupported(req)
    pipeline = _pipeline(ctx, req["PipelineName"])
    out = {**_pipeline_summary(pipeline), "PipelineStatus": pipelines.ACTIVE,
           "PipelineDefinition": pipelines.definition(ctx.engine, pipeline, req.get("PipelineVersionId")),
           "CreatedBy": pipeline.created_by, "LastModifiedBy": pipeline.last_modified_by}
    out["LastRunTime"] = out.pop("LastExecutionTime", None)
    if pipeline.parallelism:
        out["ParallelismConfiguration"] = pipeline.parallelism
    return out


def _pipeline_summary(pipeline: pipelines.Pipeline) -> dict:
    out = {"PipelineArn": pipeline.arn, "PipelineName": pipeline.name,
           "PipelineDisplayName": pipeline.display_name or pipeline.name, "RoleArn": pipeline.role_arn,
           "CreationTime": from_epoch(pipeline.created_at), "LastModifiedTime": from_epoch(pipeline.updated_at),
           "LastExecutionTime": from_epoch(pipeline.last_run_at)}
    if pipeline.description is not None:
        out["PipelineDescription"] = pipeline.description
    return out


@handler("sagemaker", "ListPipelines")
def list_pipelines(ctx: RequestContext, req: dict) -> dict:
    if req.get("ManagedBy") == "AWS":
        return {"PipelineSummaries": []}  # jobforge runs no pipelines of its own in an account
    table = pipelines.pipelines
    conditions, bind = [], {}
    prefix = req.get("PipelineNamePrefix")
    if prefix:
        conditions.append(sa.func.substr(table.c.name, 1, len(prefix)) == prefix)
    if "CreatedAfter" in req:
        conditions.append(table.c.created_at > req["CreatedAfter"].timestamp())
    if "CreatedBefore" in req:
        conditions.append(table.c.created_at < req["CreatedBefore"].timestamp())
    for key in ("PipelineNamePrefix", "CreatedAfter", "CreatedBefore"):
        if key in req:
            bind[key] = str(req[key])
    page = pipelines.PIPELINES.page(
        ctx.engine, ctx.account_id, ctx.region, conditions=conditions, bind=bind,
        sort="name" if req.get("SortBy") == "Name" else "created_at", ascending=req.get("SortOrder") == "Ascending",
        limit=req.get("MaxResults", DEFAULT_PAGE), token=req.get("NextToken"), bad_token=validation_error)
    return _paged("PipelineSummaries", page, _pipeline_summary)


@handler("sagemaker", "DeletePipeline")
def delete_pipeline(ctx: RequestContext, req: dict) -> dict:
    token = client_token(ctx, "pipeline:delete", req, "ClientRequestToken")
    earlier = idempotency.earlier(ctx.engine, token, idempotency.reused("ValidationException", "ClientRequestToken"))
    if earlier:
        return {"PipelineArn": earlier}
    pipeline = _pipeline(ctx, req["PipelineName"])
    pipelines.delete(ctx.engine, pipeline, token)
    return {"PipelineArn": pipeline.arn}


# -- executions ---------------------------------------------------------------------------------

def _parameters(definition: pipeline_definitions.Definition, given: list[dict]) -> dict:
    """Each parameter's value: the start's override, else the definition's default."""
    values = {}
    for entry in given:
        name = entry["Name"]
        if name not in definition.parameters:
            raise validation_error(f"Pipeline parameter {name} is not defined in the pipeline definition; it "
                                   f"defines {sorted(definition.parameters) or 'none'}.")
        if name in values:
            raise validation_error(f"Pipeline parameter {name} is given twice.")
        values[name] = pipeline_definitions.typed(definition.parameters[name], entry["Value"])
    for name, parameter in definition.parameters.items():
        if name not in values:
            if "DefaultValue" not in parameter:
                raise validation_error(f"Pipeline parameter {name} has no default value: give it in "
                                       "PipelineParameters.")
            values[name] = pipeline_definitions.typed(parameter, parameter["DefaultValue"])
    return values


@handler("sagemaker", "StartPipelineExecution")
def start_pipeline_execution(ctx: RequestContext, req: dict) -> dict:
    _refuse_unsupported(req)
    token = client_token(ctx, "pipeline:start", req, "ClientRequestToken")
    earlier = idempotency.earlier(ctx.engine, token, idempotency.reused("ValidationException", "ClientRequestToken"))
    if earlier:
        return {"PipelineExecutionArn": earlier}
    pipeline = _pipeline(ctx, req["PipelineName"])
    version = req.get("PipelineVersionId", pipeline.latest_version)
    definition = pipeline_definitions.parse(pipelines.definition(ctx.engine, pipeline, version))
    parameters = _parameters(definition, req.get("PipelineParameters") or [])
    role_arn = req.get("RoleArn", pipeline.role_arn)
    require_role(ctx, role_arn, "ValidationException")
    execution = pipelines.start(
        ctx.engine, pipeline, version=version, display_name=req.get("PipelineExecutionDisplayName"),
        description=req.get("PipelineExecutionDescription"), parameters=parameters, role_arn=role_arn,
        parallelism=req.get("ParallelismConfiguration") or pipeline.parallelism, created_by=_user(ctx), token=token)
    ctx.runtime.pipeline_runner.wake()
    return {"PipelineExecutionArn": execution.arn}


def _execution(ctx: RequestContext, arn: str) -> pipelines.Execution:
    return pipelines.get_execution(ctx.engine, ctx.account_id, ctx.region, arn)


@handler("sagemaker", "DescribePipelineExecution")
def describe_pipeline_execution(ctx: RequestContext, req: dict) -> dict:
    execution = _execution(ctx, req["PipelineExecutionArn"])
    out = {"PipelineArn": execution.pipeline_arn, "PipelineExecutionArn": execution.arn,
           "PipelineExecutionDisplayName": execution.display_name, "PipelineExecutionStatus": execution.status,
           "CreationTime": from_epoch(execution.created_at), "LastModifiedTime": from_epoch(execution.updated_at),
           "CreatedBy": execution.created_by, "LastModifiedBy": execution.created_by,
           "PipelineVersionId": execution.version, "RoleArn": execution.role_arn}
    if execution.description is not None:
        out["PipelineExecutionDescription"] = execution.description
    if execution.failure_reason:
        out["FailureReason"] = execution.failure_reason[:1300]
    if execution.parallelism:
        out["ParallelismConfiguration"] = execution.parallelism
    return out


@handler("sagemaker", "ListPipelineExecutions")
def list_pipeline_executions(ctx: RequestContext, req: dict) -> dict:
    _refuse_unsupported(req)
    pipeline = _pipeline(ctx, req["PipelineName"])
    table = pipeline_executions
    query = sa.select(table).where(table.c.pipeline_id == pipeline.id)
    if "CreatedAfter" in req:
        query = query.where(table.c.created_at > req["CreatedAfter"].timestamp())
    if "CreatedBefore" in req:
        query = query.where(table.c.created_at < req["CreatedBefore"].timestamp())
    sort = table.c.arn if req.get("SortBy") == "PipelineExecutionArn" else table.c.created_at
    bind = {key: str(req[key]) for key in ("CreatedAfter", "CreatedBefore") if key in req}
    page = paging.keyset_page(ctx.engine, query, sort, table.c.id, req.get("SortOrder") == "Ascending",
                              req.get("MaxResults", DEFAULT_PAGE), req.get("NextToken"),
                              dict(bind, pipeline=pipeline.id, sort=sort.name), validation_error)

    def summary(row) -> dict:
        out = {"PipelineExecutionArn": row.arn, "StartTime": from_epoch(row.created_at),
               "PipelineExecutionStatus": row.status, "PipelineExecutionDisplayName": row.display_name}
        if row.description is not None:
            out["PipelineExecutionDescription"] = row.description
        if row.failure_reason:
            out["PipelineExecutionFailureReason"] = row.failure_reason[:3072]
        return out

    return _paged("PipelineExecutionSummaries", page, summary)


@handler("sagemaker", "ListPipelineExecutionSteps")
def list_pipeline_execution_steps(ctx: RequestContext, req: dict) -> dict:
    if "PipelineExecutionArn" not in req:
        raise validation_error("PipelineExecutionArn is required: name the execution whose steps to list.")
    execution = _execution(ctx, req["PipelineExecutionArn"])
    pipeline = pipelines.PIPELINES.find(ctx.engine, ctx.account_id, ctx.region, execution.pipeline_arn)
    defined = pipeline_definitions.parse(pipelines.definition(ctx.engine, pipeline, execution.version)).steps
    table = pipeline_execution_steps
    page = paging.keyset_page(
        ctx.engine, sa.select(table).where(table.c.execution_id == execution.id), table.c.started_at, table.c.id,
        req.get("SortOrder") == "Ascending", req.get("MaxResults", DEFAULT_PAGE), req.get("NextToken"),
        {"execution": execution.id}, validation_error)

    def summary(row) -> dict:
        out = {"StepName": row.name, "StartTime": from_epoch(row.started_at), "EndTime": from_epoch(row.ended_at),
               "StepStatus": row.status, "Metadata": row.metadata, "AttemptCount": 1}
        step = defined.get(row.name)
        if step is not None and step.display_name:
            out["StepDisplayName"] = step.display_name
        if step is not None and step.description:
            out["StepDescription"] = step.description
        if row.failure_reason:
            out["FailureReason"] = row.failure_reason[:1024]
        return out

    return _paged("PipelineExecutionSteps", page, summary)


@handler("sagemaker", "StopPipelineExecution")
def stop_pipeline_execution(ctx: RequestContext, req: dict) -> dict:
    execution = _execution(ctx, req["PipelineExecutionArn"])
    if execution.status not in pipelines.RUNNING:
        raise ServiceError("ConflictException", f"Pipeline execution '{execution.arn}' has ended "
                           f"({execution.status}); only an execution that is Executing can be stopped.")
    pipelines.set_execution_status(ctx.engine, execution, "Stopping", only_from=("Executing",))
    ctx.runtime.pipeline_runner.wake()
    return {"PipelineExecutionArn": execution.arn}
