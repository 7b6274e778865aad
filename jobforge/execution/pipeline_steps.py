"""How the pipeline runner runs each step type, through the SageMaker API of the server itself, called as the
execution's role (the same requests, validation and errors a user's client gets).

A ``Job`` step names its job ``pipelines-<execution id>-<step name>-<random>`` (as AWS names the jobs of its
steps), records the name before CreateJob so that a server restarted in between finds the job rather than
making a second one, then follows the job with DescribeJob. Its outputs, which later steps read with
``{"Get": "Steps.<name>...."}``, are the DescribeJob response of the completed job, its JobConfigDocument
parsed. A ``Lineage`` step creates its actions, contexts and artifacts, then the associations between them
(an end named by ``Name`` and ``Type`` is one the step created, else the newest of the account's with that
name); run again after a restart, it takes up what it had already created.
"""

from __future__ import annotations

import datetime as dt
import json
import re
import secrets
import string
from typing import Any

from botocore.exceptions import ClientError, HTTPClientError
from botocore.exceptions import ConnectionError as UnreachableError

from jobforge.core import pipelines
from jobforge.core.pipeline_definitions import Scope, StepDefinition, Unresolved, evaluate

# A Lineage step's metadata lists at most this many ARNs of each kind and associations (the model's limits).
METADATA_ARNS = 5
METADATA_ASSOCIATIONS = 10
# The server not answering: the runner's next pass tries again. Any other error of the client is the step's.
RETRIED = (UnreachableError, HTTPClientError)


def _error(err: Exception) -> str:
    if isinstance(err, ClientError):
        error = err.response.get("Error", {})
        return f"{error.get('Code', 'Error')}: {error.get('Message', str(err))}"
    return f"The step's arguments cannot be sent as a request ({type(err).__name__}: {err})."


def _json_safe(value: Any) -> Any:
    if isinstance(value, dict):
        return {key: _json_safe(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_json_safe(item) for item in value]
    if isinstance(value, dt.datetime):
        return value.isoformat()
    return value


def job_name(execution_id: str, step: str) -> str:
    alphabet = string.ascii_letters + string.digits
    base = re.sub(r"-+", "-", re.sub(r"[^A-Za-z0-9]", "-", step[:20])).strip("-") or "step"
    return f"pipelines-{execution_id}-{base}-{''.join(secrets.choice(alphabet) for _ in range(10))}"


# -- Job ----------------------------------------------------------------------------------------

def start_job(sagemaker, engine, execution: pipelines.Execution, step: StepDefinition, scope: Scope) -> None:
    try:
        arguments = evaluate(step.arguments, scope)
    except Unresolved as err:
        row = pipelines.add_step(engine, execution, step.name, "Starting", {})
        pipelines.update_step(engine, row, status="Failed", failure_reason=str(err))
        return
    state = {"JobName": job_name(execution.execution_id, step.name), "JobCategory": arguments.get("JobCategory"),
             "Arguments": arguments}
    row = pipelines.add_step(engine, execution, step.name, "Starting", state)
    create_job(sagemaker, engine, row)


def create_job(sagemaker, engine, row: pipelines.Step) -> None:
    """Create the job a Starting step names (or find it, made before a restart) and mark the step Executing."""
    state = row.state
    try:
        arn = sagemaker.create_job(JobName=state["JobName"], **state["Arguments"])["JobArn"]
    except RETRIED:
        raise
    except Exception as err:
        code = err.response.get("Error", {}).get("Code") if isinstance(err, ClientError) else None
        existing = _describe(sagemaker, state) if code == "ResourceInUse" else None
        if existing is None:
            pipelines.update_step(engine, row, status="Failed", failure_reason=_error(err))
            return
        arn = existing["JobArn"]
    pipelines.update_step(engine, row, status="Executing", metadata={"Job": {"Arn": arn}})


def _describe(sagemaker, state: dict) -> dict | None:
    try:
        return sagemaker.describe_job(JobName=state["JobName"], JobCategory=state["JobCategory"])
    except ClientError as err:
        if err.response.get("Error", {}).get("Code") == "ResourceNotFound":
            return None
        raise


def check_job(sagemaker, row: pipelines.Step, stopping: bool) -> dict | None:
    """The step's columns to change once its job has ended (its status and what goes with it); None while the
    job runs."""
    state = row.state
    described = _describe(sagemaker, state)
    label = f"{state['JobCategory']} job {state['JobName']}"
    if described is None:
        return {"status": "Failed", "failure_reason": f"{label} no longer exists."}
    status = described["JobStatus"]
    if status == "Completed":
        outputs = _json_safe({key: value for key, value in described.items() if key != "ResponseMetadata"})
        try:
            outputs["JobConfigDocument"] = json.loads(outputs.get("JobConfigDocument") or "{}")
        except ValueError:
            pass
        return {"status": "Succeeded", "outputs": outputs}
    if status == "Failed":
        return {"status": "Failed",
                "failure_reason": f"{label} failed: {described.get('FailureReason', 'no reason given')}"}
    if status == "Stopped":
        if stopping:
            return {"status": "Stopped"}
        reason = described.get("FailureReason") or "it was stopped outside the pipeline"
        return {"status": "Failed", "failure_reason": f"{label} stopped: {reason}"}
    return None


def stop_job(sagemaker, row: pipelines.Step) -> None:
    try:
        sagemaker.stop_job(JobName=row.state["JobName"], JobCategory=row.state["JobCategory"])
    except ClientError:
        pass  # ended meanwhile, or never created: check_job says which


# -- Lineage ------------------------------------------------------------------------------------

ENTITIES = (  # argument, kind, name member, create operation, its ARN member
    ("Actions", "Action", "ActionName", "create_action", "ActionArn"),
    ("Contexts", "Context", "ContextName", "create_context", "ContextArn"),
    ("Artifacts", "Artifact", "ArtifactName", "create_artifact", "ArtifactArn"),
)


def run_lineage(sagemaker, engine, execution: pipelines.Execution, step: StepDefinition, scope: Scope,
                row: pipelines.Step | None) -> None:
    """Create the step's entities and associations and mark it Succeeded (or Failed, saying why); ``row`` is the
    step's record when a restart interrupted an earlier run."""
    resumed = row is not None
    row = row or pipelines.add_step(engine, execution, step.name, "Executing", {})
    try:
        arguments = evaluate(step.arguments, scope)
        created = {kind: {} for _, kind, *_ in ENTITIES}
        for member, kind, name_member, operation, arn_member in ENTITIES:
            for entry in arguments.get(member, []):
                arn = _lineage_entity(sagemaker, kind, entry, name_member, operation, arn_member, resumed, row)
                created[kind][entry.get(name_member) or arn] = arn
        associations = []
        for entry in arguments.get("Associations", []):
            source = _end(sagemaker, entry["Source"], created)
            destination = _end(sagemaker, entry["Destination"], created)
            request = {"SourceArn": source, "DestinationArn": destination}
            if "AssociationType" in entry:
                request["AssociationType"] = entry["AssociationType"]
            sagemaker.add_association(**request)
            associations.append({"SourceArn": source, "DestinationArn": destination})
    except Unresolved as err:
        pipelines.update_step(engine, row, status="Failed", failure_reason=str(err))
        return
    except RETRIED:
        raise
    except Exception as err:
        pipelines.update_step(engine, row, status="Failed", failure_reason=_error(err))
        return
    metadata = {f"{kind}Arns": dict(list(arns.items())[:METADATA_ARNS]) for kind, arns in created.items() if arns}
    if associations:
        metadata["Associations"] = associations[:METADATA_ASSOCIATIONS]
    pipelines.update_step(engine, row, status="Succeeded", metadata={"Lineage": metadata})


def _lineage_entity(sagemaker, kind: str, entry: dict, name_member: str, operation: str, arn_member: str,
                    resumed: bool, row: pipelines.Step) -> str:
    if resumed:
        earlier = _created_before_restart(sagemaker, kind, entry, name_member, row)
        if earlier:
            return earlier
    return getattr(sagemaker, operation)(**entry)[arn_member]


def _created_before_restart(sagemaker, kind: str, entry: dict, name_member: str, row: pipelines.Step) -> str | None:
    """The entity an interrupted run of the step had already created for this entry, if any."""
    name = entry.get(name_member)
    if kind == "Artifact":
        after = dt.datetime.fromtimestamp(row.started_at - 1, dt.timezone.utc)
        for page in sagemaker.get_paginator("list_artifacts").paginate(
                SourceUri=entry["Source"]["SourceUri"], ArtifactType=entry["ArtifactType"], CreatedAfter=after):
            for summary in page["ArtifactSummaries"]:
                if summary.get("ArtifactName") == name:
                    return summary["ArtifactArn"]
        return None
    try:
        return getattr(sagemaker, f"describe_{kind.lower()}")(**{name_member: name})[f"{kind}Arn"]
    except ClientError as err:
        if err.response.get("Error", {}).get("Code") == "ResourceNotFound":
            return None
        raise


def _end(sagemaker, reference: dict, created: dict) -> str:
    """The ARN an association's end names: given, created by the step, or found by name."""
    if "Arn" in reference:
        return reference["Arn"]
    kind, name = reference["Type"], reference["Name"]
    if name in created[kind]:
        return created[kind][name]
    if kind == "Artifact":
        for page in sagemaker.get_paginator("list_artifacts").paginate(SortOrder="Descending"):
            for summary in page["ArtifactSummaries"]:
                if summary.get("ArtifactName") == name:
                    return summary["ArtifactArn"]
        raise Unresolved(f"No artifact named {name} exists for the association to join.")
    try:
        return getattr(sagemaker, f"describe_{kind.lower()}")(**{f"{kind}Name": name})[f"{kind}Arn"]
    except ClientError as err:
        if err.response.get("Error", {}).get("Code") == "ResourceNotFound":
            raise Unresolved(f"No {kind.lower()} named {name} exists for the association to join.") from None
        raise
