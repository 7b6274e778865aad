"""SageMaker Pipelines' records, per account and region: pipelines, their definition versions, their executions
and the steps each execution has started.

A pipeline's ARN keeps its name's case, as AWS's does. Every CreatePipeline and UpdatePipeline stores the
definition as a new version (numbered from 1); an execution runs the version it was started with, whatever
updates come later. An execution is named by a 12-character id of lower-case letters and digits, and its ARN
is the pipeline's followed by ``/execution/<id>``. Its steps appear once they start, each with the state its
step type keeps (``state``), what AWS lists for it (``metadata``) and, once succeeded, what later steps may
read of it (``outputs``).
"""

from __future__ import annotations

import secrets
import string
import time
import uuid
from dataclasses import dataclass

import sqlalchemy as sa

from jobforge.core import idempotency, sagemaker_tags, tags
from jobforge.core.errors import ServiceError, validation_error
from jobforge.core.idempotency import ClientToken
from jobforge.core.regional_records import RegionalTable
from jobforge.core.store import metadata, reading

ACTIVE = "Active"  # a pipeline's status: nothing is provisioned for it
RUNNING = ("Executing", "Stopping")  # an execution's statuses before it ends
STEP_RUNNING = ("Starting", "Executing", "Stopping")

pipelines = sa.Table(
    "pipelines", metadata,
    sa.Column("id", sa.String(32), primary_key=True),
    sa.Column("account_id", sa.String(12), nullable=False),
    sa.Column("region", sa.String(32), nullable=False),
    sa.Column("name", sa.String(256), nullable=False),
    sa.Column("arn", sa.String(2048), nullable=False, unique=True),
    sa.Column("display_name", sa.String(256)),
    sa.Column("description", sa.Text),
    sa.Column("role_arn", sa.String(2048), nullable=False),
    sa.Column("parallelism", sa.JSON),  # ParallelismConfiguration, or None
    sa.Column("latest_version", sa.Integer, nullable=False),
    sa.Column("created_by", sa.JSON, nullable=False),
    sa.Column("last_modified_by", sa.JSON, nullable=False),
    sa.Column("created_at", sa.Float, nullable=False),
    sa.Column("updated_at", sa.Float, nullable=False),
    sa.Column("last_run_at", sa.Float),
    sa.UniqueConstraint("account_id", "region", "name", name="uq_pipelines_account_region_name"),
)

pipeline_versions = sa.Table(
    "pipeline_versions", metadata,
    sa.Column("pipeline_id", sa.String(32), primary_key=True),
    sa.Column("version", sa.Integer, primary_key=True),
    sa.Column("definition", sa.Text, nullable=False),  # the PipelineDefinition JSON as given
    sa.Column("created_at", sa.Float, nullable=False),
)

pipeline_executions = sa.Table(
    "pipeline_executions", metadata,
    sa.Column("id", sa.String(32), primary_key=True),
    sa.Column("account_id", sa.String(12), nullable=False),
    sa.Column("region", sa.String(32), nullable=False),
    sa.Column("pipeline_id", sa.String(32), nullable=False),
    sa.Column("execution_id", sa.String(16), nullable=False),  # the ARN's last part
    sa.Column("arn", sa.String(2048), nullable=False, unique=True),
    sa.Column("display_name", sa.String(82)),
    sa.Column("description", sa.Text),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("failure_reason", sa.Text),
    sa.Column("version", sa.Integer, nullable=False),
    sa.Column("parameters", sa.JSON, nullable=False),  # name → value, overrides and defaults resolved
    sa.Column("role_arn", sa.String(2048), nullable=False),
    sa.Column("parallelism", sa.JSON),
    sa.Column("created_by", sa.JSON, nullable=False),
    sa.Column("created_at", sa.Float, nullable=False),
    sa.Column("updated_at", sa.Float, nullable=False),
    sa.Index("ix_pipeline_executions_pipeline_created", "pipeline_id", "created_at"),
    sa.Index("ix_pipeline_executions_status", "status"),
)
# An execution's ARN is its pipeline's followed by /execution/<id>: both name the resource type "pipeline".
sagemaker_tags.register("pipeline", pipelines)
sagemaker_tags.register("pipeline", pipeline_executions)

pipeline_execution_steps = sa.Table(
    "pipeline_execution_steps", metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("execution_id", sa.String(32), nullable=False),  # pipeline_executions.id
    sa.Column("name", sa.String(64), nullable=False),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("failure_reason", sa.Text),
    sa.Column("state", sa.JSON, nullable=False),  # what the step's type keeps while it runs
    sa.Column("metadata", sa.JSON, nullable=False),  # PipelineExecutionStepMetadata
    sa.Column("outputs", sa.JSON),  # what property references of later steps read
    sa.Column("started_at", sa.Float, nullable=False),
    sa.Column("ended_at", sa.Float),
    sa.UniqueConstraint("execution_id", "name", name="uq_pipeline_execution_steps_execution_name"),
)


@dataclass(frozen=True)
class Pipeline:
    id: str
    account_id: str
    region: str
    name: str
    arn: str
    display_name: str | None
    description: str | None
    role_arn: str
    parallelism: dict | None
    latest_version: int
    created_by: dict
    last_modified_by: dict
    created_at: float
    updated_at: float
    last_run_at: float | None


@dataclass(frozen=True)
class Execution:
    id: str
    account_id: str
    region: str
    pipeline_id: str
    execution_id: str
    arn: str
    display_name: str | None
    description: str | None
    status: str
    failure_reason: str | None
    version: int
    parameters: dict
    role_arn: str
    parallelism: dict | None
    created_by: dict
    created_at: float
    updated_at: float

    @property
    def pipeline_arn(self) -> str:
        return self.arn.rsplit("/execution/", 1)[0]


@dataclass(frozen=True)
class Step:
    id: int
    execution_id: str
    name: str
    status: str
    failure_reason: str | None
    state: dict
    metadata: dict
    outputs: dict | None
    started_at: float
    ended_at: float | None


PIPELINES = RegionalTable(pipelines, Pipeline, "Pipeline")


def pipeline_arn(region: str, account_id: str, name: str) -> str:
    return f"arn:aws:sagemaker:{region}:{account_id}:pipeline/{name}"


def _execution_id() -> str:
    alphabet = string.ascii_lowercase + string.digits
    return "".join(secrets.choice(alphabet) for _ in range(12))


def not_found(identifier: str) -> ServiceError:
    return ServiceError("ResourceNotFound", f"Pipeline '{identifier}' does not exist.")


def execution_not_found(arn: str) -> ServiceError:
    return ServiceError("ResourceNotFound", f"Pipeline execution '{arn}' does not exist.")


# -- pipelines ----------------------------------------------------------------------------------

def create(engine: sa.Engine, account_id: str, region: str, *, name: str, display_name: str | None,
           description: str | None, role_arn: str, parallelism: dict | None, definition: str, created_by: dict,
           tag_list: list[dict], token: ClientToken | None) -> Pipeline:
    now = time.time()
    pipeline = Pipeline(uuid.uuid4().hex, account_id, region, name, pipeline_arn(region, account_id, name),
                        display_name, description, role_arn, parallelism, 1, created_by, created_by, now, now, None)
    try:
        with engine.begin() as conn:
            conn.execute(pipelines.insert().values(vars(pipeline)))
            conn.execute(pipeline_versions.insert().values(pipeline_id=pipeline.id, version=1,
                                                           definition=definition, created_at=now))
            if tag_list:
                tags.put(conn, account_id, pipeline.arn, sagemaker_tags.requested(tag_list))
            idempotency.remember(conn, token, pipeline.arn)
    except sa.exc.IntegrityError:
        raise validation_error(f"Pipeline names must be unique within an AWS account and region. "
                           f"Pipeline with name ({name}) already exists.") from None
    return pipeline


def get(engine: sa.Engine, account_id: str, region: str, identifier: str) -> Pipeline:
    found = PIPELINES.find(engine, account_id, region, identifier)
    if found is None:
        raise not_found(identifier)
    return found


def update(engine: sa.Engine, pipeline: Pipeline, changes: dict, definition: str | None, modified_by: dict) -> int:
    """Apply the changed members and, with a new definition, store it as the next version; the version that is
    now the latest."""
    now = time.time()
    with engine.begin() as conn:
        version = pipeline.latest_version
        if definition is not None:
            version = conn.execute(sa.select(pipelines.c.latest_version).where(pipelines.c.id == pipeline.id)
                                   ).scalar_one() + 1
            conn.execute(pipeline_versions.insert().values(pipeline_id=pipeline.id, version=version,
                                                           definition=definition, created_at=now))
        changed = conn.execute(pipelines.update().where(pipelines.c.id == pipeline.id).values(
            **changes, latest_version=version, last_modified_by=modified_by, updated_at=now)).rowcount
        if not changed:
            raise not_found(pipeline.name)
    return version


def version_definition(engine: sa.Engine, pipeline_id: str, version: int) -> str | None:
    with reading(engine) as conn:
        return conn.execute(sa.select(pipeline_versions.c.definition).where(
            pipeline_versions.c.pipeline_id == pipeline_id, pipeline_versions.c.version == version)).scalar()


def definition(engine: sa.Engine, pipeline: Pipeline, version: int | None = None) -> str:
    """The definition of a version of the pipeline (its latest by default); ResourceNotFound for one it never
    had."""
    version = pipeline.latest_version if version is None else version
    found = version_definition(engine, pipeline.id, version)
    if found is None:
        raise ServiceError("ResourceNotFound", f"Pipeline '{pipeline.arn}' has no version {version}.")
    return found


def delete(engine: sa.Engine, pipeline: Pipeline, token: ClientToken | None) -> None:
    """Delete the pipeline with its versions and executions; ConflictException while one of them runs."""
    with engine.begin() as conn:
        running = conn.execute(sa.select(sa.func.count()).select_from(pipeline_executions).where(
            pipeline_executions.c.pipeline_id == pipeline.id,
            pipeline_executions.c.status.in_(RUNNING))).scalar_one()
        if running:
            raise ServiceError("ConflictException", f"Pipeline '{pipeline.arn}' has {running} running execution(s); "
                               "stop them (StopPipelineExecution) and wait for them to end before deleting it.")
        ids = sa.select(pipeline_executions.c.id).where(pipeline_executions.c.pipeline_id == pipeline.id)
        conn.execute(pipeline_execution_steps.delete().where(pipeline_execution_steps.c.execution_id.in_(ids)))
        conn.execute(pipeline_executions.delete().where(pipeline_executions.c.pipeline_id == pipeline.id))
        conn.execute(pipeline_versions.delete().where(pipeline_versions.c.pipeline_id == pipeline.id))
        conn.execute(pipelines.delete().where(pipelines.c.id == pipeline.id))
        tags.remove(conn, pipeline.arn)
        tags.remove_under(conn, f"{pipeline.arn}/execution/")
        idempotency.remember(conn, token, pipeline.arn)


# -- executions ---------------------------------------------------------------------------------

def start(engine: sa.Engine, pipeline: Pipeline, *, version: int, display_name: str | None,
          description: str | None, parameters: dict, role_arn: str, parallelism: dict | None, created_by: dict,
          token: ClientToken | None) -> Execution:
    now = time.time()
    execution_id = _execution_id()
    execution = Execution(uuid.uuid4().hex, pipeline.account_id, pipeline.region, pipeline.id, execution_id,
                          f"{pipeline.arn}/execution/{execution_id}", display_name or f"execution-{int(now * 1000)}",
                          description, "Executing", None, version, parameters, role_arn, parallelism, created_by,
                          now, now)
    with engine.begin() as conn:
        conn.execute(pipeline_executions.insert().values(vars(execution)))
        conn.execute(pipelines.update().where(pipelines.c.id == pipeline.id).values(last_run_at=now))
        idempotency.remember(conn, token, execution.arn)
    return execution


def _execution(row) -> Execution:
    return Execution(**row._mapping)


def find_execution(engine: sa.Engine, account_id: str, region: str, arn: str) -> Execution | None:
    with reading(engine) as conn:
        row = conn.execute(sa.select(pipeline_executions).where(
            pipeline_executions.c.arn == arn, pipeline_executions.c.account_id == account_id,
            pipeline_executions.c.region == region)).first()
    return _execution(row) if row else None


def get_execution(engine: sa.Engine, account_id: str, region: str, arn: str) -> Execution:
    found = find_execution(engine, account_id, region, arn)
    if found is None:
        raise execution_not_found(arn)
    return found


def load_execution(engine: sa.Engine, execution_id: str) -> Execution | None:
    with reading(engine) as conn:
        row = conn.execute(sa.select(pipeline_executions).where(pipeline_executions.c.id == execution_id)).first()
    return _execution(row) if row else None


def running_executions(engine: sa.Engine) -> list[Execution]:
    """Every account's executions that have not ended, oldest first."""
    with reading(engine) as conn:
        rows = conn.execute(sa.select(pipeline_executions).where(pipeline_executions.c.status.in_(RUNNING))
                            .order_by(pipeline_executions.c.created_at)).all()
    return [_execution(row) for row in rows]


def set_execution_status(engine: sa.Engine, execution: Execution, status: str, *, only_from: tuple[str, ...],
                         failure_reason: str | None = None) -> bool:
    """Move the execution to ``status`` if it is still in one of ``only_from``; whether it moved."""
    values = {"status": status, "updated_at": time.time()}
    if failure_reason is not None:
        values["failure_reason"] = failure_reason
    with engine.begin() as conn:
        return bool(conn.execute(pipeline_executions.update().where(
            pipeline_executions.c.id == execution.id, pipeline_executions.c.status.in_(only_from)).values(**values)
        ).rowcount)


# -- steps --------------------------------------------------------------------------------------

def _step(row) -> Step:
    return Step(**row._mapping)


def steps(engine: sa.Engine, execution: Execution) -> dict[str, Step]:
    """The execution's started steps by name."""
    with reading(engine) as conn:
        rows = conn.execute(sa.select(pipeline_execution_steps).where(
            pipeline_execution_steps.c.execution_id == execution.id)).all()
    return {row.name: _step(row) for row in rows}


def add_step(engine: sa.Engine, execution: Execution, name: str, status: str, state: dict) -> Step:
    """Record that a step has started (or, already failed, could not start)."""
    now = time.time()
    with engine.begin() as conn:
        result = conn.execute(pipeline_execution_steps.insert().values(
            execution_id=execution.id, name=name, status=status, state=state, metadata={}, started_at=now))
        conn.execute(pipeline_executions.update().where(pipeline_executions.c.id == execution.id)
                     .values(updated_at=now))
    return Step(result.inserted_primary_key[0], execution.id, name, status, None, state, {}, None, now, None)


def update_step(engine: sa.Engine, step: Step, **values) -> None:
    """Change a step's columns; a step that ends gets its end time."""
    now = time.time()
    if values.get("status") in ("Succeeded", "Failed", "Stopped"):
        values.setdefault("ended_at", now)
    with engine.begin() as conn:
        conn.execute(pipeline_execution_steps.update().where(pipeline_execution_steps.c.id == step.id)
                     .values(**values))
        conn.execute(pipeline_executions.update().where(pipeline_executions.c.id == step.execution_id)
                     .values(updated_at=now))
