"""SageMaker Pipelines and lineage through boto3 against the real server: definitions checked at create, Job
steps run by CreateJob in DependsOn and property-reference order, Lineage steps, parameters, failures with
their reasons, Stop, MaxParallelExecutionSteps, and an execution that survives a kill -9 of the server."""

from __future__ import annotations

import json
import time
import uuid

import pytest
from botocore.exceptions import ClientError

from jobforge.testing_server import ServerProcess
from selftest_kind import CATEGORY, SELFTEST_ENV


def _job(role: str, steps=2, sleep=0.05, **document) -> dict:
    return {"JobCategory": CATEGORY, "RoleArn": role, "JobConfigSchemaVersion": "1.0.0",
            "JobConfigDocument": json.dumps({"Steps": steps, "SleepSeconds": sleep, **document})}


def _definition(steps: list[dict], parameters: list[dict] | None = None) -> str:
    return json.dumps({"Version": "2020-12-01", "Metadata": {}, "Parameters": parameters or [], "Steps": steps})


def _pipeline(sm, role: str, steps: list[dict], parameters=None, **extra) -> str:
    name = f"p-{uuid.uuid4().hex[:8]}"
    sm.create_pipeline(PipelineName=name, PipelineDefinition=_definition(steps, parameters), RoleArn=role, **extra)
    return name


def _wait(sm, arn: str, statuses=("Succeeded", "Failed", "Stopped"), timeout=180) -> dict:
    deadline = time.time() + timeout
    while True:
        described = sm.describe_pipeline_execution(PipelineExecutionArn=arn)
        if described["PipelineExecutionStatus"] in statuses:
            return described
        assert time.time() < deadline, described
        time.sleep(0.2)


def _steps(sm, arn: str) -> dict[str, dict]:
    return {step["StepName"]: step for step in sm.list_pipeline_execution_steps(
        PipelineExecutionArn=arn)["PipelineExecutionSteps"]}


def _job_name(step: dict) -> str:
    return step["Metadata"]["Job"]["Arn"].rsplit("/", 1)[1]


def _refused(call, *needles, code="ValidationException") -> str:
    with pytest.raises(ClientError) as err:
        call()
    assert err.value.response["Error"]["Code"] == code, err.value.response
    message = err.value.response["Error"]["Message"]
    for needle in needles:
        assert needle in message, message
    return message


def test_definitions_are_checked_when_stored(server, role_arn):
    sm = server.client("sagemaker")
    create = lambda definition: lambda: sm.create_pipeline(  # noqa: E731
        PipelineName=f"bad-{uuid.uuid4().hex[:6]}", PipelineDefinition=definition, RoleArn=role_arn)
    job = {"Name": "Train", "Type": "Job", "Arguments": _job(role_arn)}
    _refused(create(_definition([{"Name": "Train", "Type": "Training", "Arguments": {}}])),
             "Type Training", "Job and Lineage")
    _refused(create("{not json"), "not valid JSON")
    _refused(create(_definition([])), "at least one step")
    _refused(create(_definition([job, dict(job)])), "two steps are named Train")
    _refused(create(_definition([dict(job, DependsOn=["Nowhere"])])), "Nowhere")
    _refused(create(_definition([dict(job, Name="A", DependsOn=["B"]), dict(job, Name="B", DependsOn=["A"])])),
             "circle")
    _refused(create(_definition([{"Name": "A", "Type": "Job", "Arguments": dict(
        _job(role_arn), JobConfigDocument={"Get": "Parameters.Missing"})}])), "no parameter Missing")
    _refused(create(_definition([{"Name": "A", "Type": "Job", "Arguments": dict(
        _job(role_arn), JobConfigDocument={"Std:JsonGet": {}})}])), "Std:JsonGet")
    _refused(create(_definition([{"Name": "A", "Type": "Job", "Arguments": dict(_job(role_arn), JobName="x")}])),
             "JobName")
    _refused(create(_definition([job], [{"Name": "N", "Type": "Integer", "DefaultValue": "many"}])), "Integer")
    _refused(create(_definition([job, {"Name": "L", "Type": "Lineage", "Arguments": {
        "Associations": [{"Source": {"Name": "x", "Type": "Model"}, "Destination": {"Arn": "y"}}]}}])), "Type is one of")
    _refused(lambda: sm.create_pipeline(PipelineName="no-role", PipelineDefinition=_definition([job]),
                                        RoleArn=role_arn.replace("JobforgeExecutionRole", "Nobody")), "Nobody")


def test_pipeline_records_versions_listing_and_deletion(server, role_arn, account_id):
    sm = server.client("sagemaker")
    prefix = f"Records{uuid.uuid4().hex[:6]}"
    token = uuid.uuid4().hex
    first = _definition([{"Name": "A", "Type": "Job", "Arguments": _job(role_arn)}])
    arn = sm.create_pipeline(PipelineName=f"{prefix}-one", PipelineDefinition=first, RoleArn=role_arn,
                             ClientRequestToken=token, PipelineDescription="first",
                             Tags=[{"Key": "team", "Value": "eval"}])["PipelineArn"]
    assert arn == f"arn:aws:sagemaker:us-east-1:{account_id}:pipeline/{prefix}-one"  # the name's case kept
    again = sm.create_pipeline(PipelineName=f"{prefix}-one", PipelineDefinition=first, RoleArn=role_arn,
                               ClientRequestToken=token, PipelineDescription="first", Tags=[{"Key": "team",
                                                                                             "Value": "eval"}])
    assert again["PipelineArn"] == arn
    _refused(lambda: sm.create_pipeline(PipelineName=f"{prefix}-one", PipelineDefinition=first, RoleArn=role_arn),
             "must be unique")
    sm.create_pipeline(PipelineName=f"{prefix}-two", PipelineDefinition=first, RoleArn=role_arn)
    described = sm.describe_pipeline(PipelineName=f"{prefix}-one")
    assert (described["PipelineStatus"], described["PipelineDefinition"], described["PipelineDescription"],
            described["RoleArn"]) == ("Active", first, "first", role_arn)
    second = _definition([{"Name": "B", "Type": "Job", "Arguments": _job(role_arn, steps=3)}])
    updated = sm.update_pipeline(PipelineName=f"{prefix}-one", PipelineDefinition=second, PipelineDescription="second")
    assert updated["PipelineVersionId"] == 2
    assert sm.describe_pipeline(PipelineName=arn)["PipelineDefinition"] == second
    assert sm.describe_pipeline(PipelineName=arn, PipelineVersionId=1)["PipelineDefinition"] == first
    _refused(lambda: sm.describe_pipeline(PipelineName=arn, PipelineVersionId=7), "no version 7",
             code="ResourceNotFound")
    listed = sm.list_pipelines(PipelineNamePrefix=prefix, SortBy="Name", SortOrder="Ascending")["PipelineSummaries"]
    assert [p["PipelineName"] for p in listed] == [f"{prefix}-one", f"{prefix}-two"]
    assert sm.list_pipelines(PipelineNamePrefix=prefix.lower())["PipelineSummaries"] == []
    page = sm.list_pipelines(PipelineNamePrefix=prefix, MaxResults=1)
    assert len(page["PipelineSummaries"]) == 1
    rest = sm.list_pipelines(PipelineNamePrefix=prefix, MaxResults=1, NextToken=page["NextToken"])
    assert {page["PipelineSummaries"][0]["PipelineName"], rest["PipelineSummaries"][0]["PipelineName"]} == {
        f"{prefix}-one", f"{prefix}-two"}
    assert sm.delete_pipeline(PipelineName=f"{prefix}-two", ClientRequestToken=uuid.uuid4().hex)["PipelineArn"] \
        .endswith(f"{prefix}-two")
    _refused(lambda: sm.describe_pipeline(PipelineName=f"{prefix}-two"), code="ResourceNotFound")
    _refused(lambda: sm.start_pipeline_execution(PipelineName=f"{prefix}-two"), code="ResourceNotFound")


def test_steps_run_in_order_reading_parameters_and_each_others_properties(server, role_arn, account_id):
    sm = server.client("sagemaker")
    steps = [
        {"Name": "First", "Type": "Job", "Arguments": dict(_job(role_arn), JobConfigDocument={"Std:Join": {
            "On": "", "Values": ['{"Steps": ', {"Get": "Parameters.Count"}, ', "SleepSeconds": 0.05}']}})},
        # reads First's job: so it waits for First without a DependsOn
        {"Name": "Second", "Type": "Job", "Arguments": dict(
            _job(role_arn), JobConfigDocument={"Std:Join": {"On": "", "Values": [
                '{"Steps": ', {"Get": "Steps.First.JobConfigDocument.Steps"}, "}"]}},
            Tags=[{"Key": "after", "Value": {"Get": "Steps.First.JobName"}}])},
        {"Name": "Record", "Type": "Lineage", "DependsOn": ["Second"], "Arguments": {
            "Actions": [{"ActionName": {"Get": "Execution.PipelineExecutionId"}, "ActionType": "Evaluation",
                         "Source": {"SourceUri": {"Get": "Steps.Second.JobArn"}, "SourceType": "Job"},
                         "Properties": {"Pipeline": {"Get": "Execution.PipelineName"}}}],
            "Contexts": [{"ContextName": {"Get": "Execution.PipelineExecutionId"}, "ContextType": "PipelineExecution",
                          "Source": {"SourceUri": {"Get": "Execution.PipelineExecutionArn"}}}],
            "Artifacts": [{"ArtifactName": {"Std:Join": {"On": "-", "Values": [
                {"Get": "Execution.PipelineExecutionId"}, "report"]}}, "ArtifactType": "EvaluationReport",
                "Source": {"SourceUri": {"Get": "Steps.First.JobName"}},
                "Properties": {"Steps": {"Std:Join": {"On": "", "Values": [
                    {"Get": "Steps.First.JobConfigDocument.Steps"}]}}}}],
            "Associations": [
                {"Source": {"Name": {"Get": "Execution.PipelineExecutionId"}, "Type": "Action"},
                 "Destination": {"Name": {"Get": "Execution.PipelineExecutionId"}, "Type": "Context"},
                 "AssociationType": "ContributedTo"},
                {"Source": {"Name": {"Std:Join": {"On": "-", "Values": [
                    {"Get": "Execution.PipelineExecutionId"}, "report"]}}, "Type": "Artifact"},
                 "Destination": {"Arn": {"Std:Join": {"On": "/", "Values": [
                     f"arn:aws:sagemaker:us-east-1:{account_id}:action", {"Get": "Execution.PipelineExecutionId"}]}}},
                 "AssociationType": "ContributedTo"}]}},
    ]
    name = _pipeline(sm, role_arn, steps, [{"Name": "Count", "Type": "Integer", "DefaultValue": 2}])
    arn = sm.start_pipeline_execution(PipelineName=name, PipelineParameters=[{"Name": "Count", "Value": "3"}],
                                      PipelineExecutionDisplayName="ordered")["PipelineExecutionArn"]
    execution_id = arn.rsplit("/", 1)[1]
    assert len(execution_id) == 12 and execution_id.isalnum() and execution_id == execution_id.lower()
    described = _wait(sm, arn)
    assert described["PipelineExecutionStatus"] == "Succeeded", described.get("FailureReason")
    assert described["PipelineExecutionDisplayName"] == "ordered"
    found = _steps(sm, arn)
    assert {n: s["StepStatus"] for n, s in found.items()} == {"First": "Succeeded", "Second": "Succeeded",
                                                              "Record": "Succeeded"}
    assert found["First"]["EndTime"] <= found["Second"]["StartTime"] <= found["Record"]["StartTime"]
    assert list(found) == ["Record", "Second", "First"]  # newest first, as AWS lists them
    first, second = _job_name(found["First"]), _job_name(found["Second"])
    assert first.startswith(f"pipelines-{execution_id}-First-")
    first_job = sm.describe_job(JobName=first, JobCategory=CATEGORY)
    assert first_job["JobStatus"] == "Completed"
    assert json.loads(first_job["JobConfigDocument"])["Steps"] == 3  # the start's override
    second_job = sm.describe_job(JobName=second, JobCategory=CATEGORY)
    assert json.loads(second_job["JobConfigDocument"]) == {"Steps": 3}
    assert {"Key": "after", "Value": first} in second_job["Tags"]

    lineage = found["Record"]["Metadata"]["Lineage"]
    action_arn = f"arn:aws:sagemaker:us-east-1:{account_id}:action/{execution_id}"
    assert lineage["ActionArns"] == {execution_id: action_arn}
    action = sm.describe_action(ActionName=execution_id)
    assert (action["ActionArn"], action["Source"]["SourceUri"], action["Properties"]) == (
        action_arn, second_job["JobArn"], {"Pipeline": name})
    report_arn = lineage["ArtifactArns"][f"{execution_id}-report"]
    report = sm.describe_artifact(ArtifactArn=report_arn)
    assert (report["Source"]["SourceUri"], report["Properties"]) == (first, {"Steps": "3"})
    into_action = sm.list_associations(DestinationArn=action_arn)["AssociationSummaries"]
    assert [(a["SourceArn"], a["SourceType"], a["DestinationType"]) for a in into_action] == [
        (report_arn, "EvaluationReport", "Evaluation")]
    assert sm.list_associations(SourceArn=action_arn)["AssociationSummaries"][0]["DestinationArn"] == \
        lineage["ContextArns"][execution_id]
    executions = sm.list_pipeline_executions(PipelineName=name)["PipelineExecutionSummaries"]
    assert [(e["PipelineExecutionArn"], e["PipelineExecutionStatus"]) for e in executions] == [(arn, "Succeeded")]


def test_a_failed_step_fails_the_execution_and_later_steps_never_start(server, role_arn):
    sm = server.client("sagemaker")
    name = _pipeline(sm, role_arn, [
        {"Name": "Breaks", "Type": "Job", "Arguments": _job(role_arn, steps=3, FailAtStep=1)},
        {"Name": "After", "Type": "Job", "DependsOn": ["Breaks"], "Arguments": _job(role_arn)}])
    arn = sm.start_pipeline_execution(PipelineName=name)["PipelineExecutionArn"]
    described = _wait(sm, arn)
    assert described["PipelineExecutionStatus"] == "Failed"
    assert described["FailureReason"].startswith("Step failure: One or multiple steps failed")
    found = _steps(sm, arn)
    assert list(found) == ["Breaks"]
    assert found["Breaks"]["StepStatus"] == "Failed"
    assert "Failed at step 1 as requested" in found["Breaks"]["FailureReason"]
    assert sm.list_pipeline_executions(PipelineName=name)["PipelineExecutionSummaries"][0][
        "PipelineExecutionFailureReason"] == described["FailureReason"]


def test_a_property_the_job_does_not_have_fails_the_step_that_reads_it(server, role_arn):
    sm = server.client("sagemaker")
    name = _pipeline(sm, role_arn, [
        {"Name": "Evaluate", "Type": "Job", "Arguments": _job(role_arn)},
        {"Name": "Associate", "Type": "Lineage", "Arguments": {"Artifacts": [{
            "ArtifactType": "EvaluationReport", "Source": {"SourceUri": {
                "Get": "Steps.Evaluate.JobConfigDocument.ServiceOutput.MlflowDetails.RunId"}}}]}}])
    arn = sm.start_pipeline_execution(PipelineName=name)["PipelineExecutionArn"]
    assert _wait(sm, arn)["PipelineExecutionStatus"] == "Failed"
    reason = _steps(sm, arn)["Associate"]["FailureReason"]
    assert "Steps.Evaluate.JobConfigDocument.ServiceOutput.MlflowDetails.RunId" in reason
    assert "has no JobConfigDocument.ServiceOutput" in reason


def test_a_bad_job_argument_fails_its_step_with_the_create_jobs_error(server, role_arn):
    sm = server.client("sagemaker")
    name = _pipeline(sm, role_arn, [{"Name": "Odd", "Type": "Job", "Arguments": dict(
        _job(role_arn), JobConfigSchemaVersion="9.9.9")}])
    arn = sm.start_pipeline_execution(PipelineName=name)["PipelineExecutionArn"]
    assert _wait(sm, arn)["PipelineExecutionStatus"] == "Failed"
    assert _steps(sm, arn)["Odd"]["FailureReason"].startswith("ValidationException: JobConfigSchemaVersion 9.9.9")


def test_arguments_no_request_can_carry_fail_their_step(server, role_arn):
    sm = server.client("sagemaker")
    name = _pipeline(sm, role_arn, [
        {"Name": "Record", "Type": "Lineage", "Arguments": {"Artifacts": [
            {"ArtifactType": "Report", "Source": {"SourceUri": "s3://b/k"}, "Colour": "blue"}]}}])
    arn = sm.start_pipeline_execution(PipelineName=name)["PipelineExecutionArn"]
    assert _wait(sm, arn)["PipelineExecutionStatus"] == "Failed"
    assert "cannot be sent as a request" in _steps(sm, arn)["Record"]["FailureReason"]


def test_start_checks_parameters(server, role_arn):
    sm = server.client("sagemaker")
    name = _pipeline(sm, role_arn, [{"Name": "A", "Type": "Job", "Arguments": _job(role_arn)}],
                     [{"Name": "Count", "Type": "Integer"}, {"Name": "Fast", "Type": "Boolean", "DefaultValue": True}])
    start = lambda *given: lambda: sm.start_pipeline_execution(  # noqa: E731
        PipelineName=name, PipelineParameters=[{"Name": n, "Value": v} for n, v in given])
    _refused(start(), "Count has no default value")
    _refused(start(("Count", "three")), "Integer", "three")
    _refused(start(("Count", "3"), ("Other", "1")), "Other is not defined")
    _refused(start(("Count", "3"), ("Fast", "maybe")), "Boolean")
    _refused(lambda: sm.start_pipeline_execution(PipelineName=name, SelectiveExecutionConfig={
        "SelectedSteps": [{"StepName": "A"}]}), "selective execution")
    arn = sm.start_pipeline_execution(PipelineName=name, PipelineParameters=[{"Name": "Count", "Value": "3"}])[
        "PipelineExecutionArn"]
    assert _wait(sm, arn)["PipelineExecutionStatus"] == "Succeeded"
    _refused(lambda: sm.stop_pipeline_execution(PipelineExecutionArn=arn), "has ended", code="ConflictException")
    _refused(lambda: sm.describe_pipeline_execution(PipelineExecutionArn=arn + "x"), code="ResourceNotFound")


def test_stop_stops_the_running_job_and_deletion_waits_for_the_end(server, role_arn):
    sm = server.client("sagemaker")
    name = _pipeline(sm, role_arn, [
        {"Name": "Long", "Type": "Job", "Arguments": _job(role_arn, steps=600, sleep=0.5)},
        {"Name": "Never", "Type": "Job", "DependsOn": ["Long"], "Arguments": _job(role_arn)}])
    arn = sm.start_pipeline_execution(PipelineName=name)["PipelineExecutionArn"]
    deadline = time.time() + 60
    while "Long" not in _steps(sm, arn):
        assert time.time() < deadline
        time.sleep(0.2)
    job = _job_name(_steps(sm, arn)["Long"])
    _refused(lambda: sm.delete_pipeline(PipelineName=name, ClientRequestToken=uuid.uuid4().hex), "running",
             code="ConflictException")
    sm.stop_pipeline_execution(PipelineExecutionArn=arn)
    assert sm.describe_pipeline_execution(PipelineExecutionArn=arn)["PipelineExecutionStatus"] in (
        "Stopping", "Stopped")
    assert _wait(sm, arn, ("Stopped", "Failed", "Succeeded"))["PipelineExecutionStatus"] == "Stopped"
    assert {n: s["StepStatus"] for n, s in _steps(sm, arn).items()} == {"Long": "Stopped"}
    assert sm.describe_job(JobName=job, JobCategory=CATEGORY)["JobStatus"] == "Stopped"
    sm.delete_pipeline(PipelineName=name, ClientRequestToken=uuid.uuid4().hex)
    _refused(lambda: sm.describe_pipeline_execution(PipelineExecutionArn=arn), code="ResourceNotFound")


def test_max_parallel_execution_steps_runs_independent_steps_one_at_a_time(server, role_arn):
    sm = server.client("sagemaker")
    name = _pipeline(sm, role_arn, [{"Name": n, "Type": "Job", "Arguments": _job(role_arn, steps=4, sleep=0.2)}
                                    for n in ("Left", "Right")])
    arn = sm.start_pipeline_execution(PipelineName=name, ParallelismConfiguration={"MaxParallelExecutionSteps": 1})[
        "PipelineExecutionArn"]
    seen_running = []
    while sm.describe_pipeline_execution(PipelineExecutionArn=arn)["PipelineExecutionStatus"] == "Executing":
        steps = _steps(sm, arn)
        seen_running.append(sum(s["StepStatus"] in ("Starting", "Executing") for s in steps.values()))
        time.sleep(0.1)
    assert max(seen_running) == 1
    left, right = _steps(sm, arn).values()
    first, then = sorted((left, right), key=lambda s: s["StartTime"])
    assert first["EndTime"] <= then["StartTime"]
    parallel = sm.describe_pipeline_execution(PipelineExecutionArn=arn)["ParallelismConfiguration"]
    assert parallel == {"MaxParallelExecutionSteps": 1}


def test_lineage_operations(server, account_id):
    sm = server.client("sagemaker")
    tag = uuid.uuid4().hex[:6]
    first = sm.create_artifact(ArtifactName=f"data-{tag}", ArtifactType="DataSet",
                               Source={"SourceUri": f"s3://b/{tag}/data.jsonl"})["ArtifactArn"]
    assert first.startswith(f"arn:aws:sagemaker:us-east-1:{account_id}:artifact/")
    second = sm.create_artifact(ArtifactType="Model", Source={"SourceUri": f"s3://b/{tag}/model"},
                                Properties={"k": "v"})["ArtifactArn"]
    action = sm.create_action(ActionName=f"Train-{tag}", ActionType="Training", Status="Completed",
                              Source={"SourceUri": f"s3://b/{tag}/job"})["ActionArn"]
    assert action == f"arn:aws:sagemaker:us-east-1:{account_id}:action/train-{tag}"
    _refused(lambda: sm.create_action(ActionName=f"Train-{tag}", ActionType="Training",
                                      Source={"SourceUri": "x"}), "already exists")
    context = sm.create_context(ContextName=f"ctx-{tag}", ContextType="Project",
                                Source={"SourceUri": "urn:project"})["ContextArn"]
    for source, destination in ((first, action), (action, second), (second, context)):
        sm.add_association(SourceArn=source, DestinationArn=destination, AssociationType="ContributedTo")
    sm.add_association(SourceArn=first, DestinationArn=action)  # joined already: nothing changes
    _refused(lambda: sm.add_association(SourceArn=first, DestinationArn=action.replace(tag, "gone")),
             code="ResourceNotFound")
    assert sm.describe_artifact(ArtifactArn=second)["Properties"] == {"k": "v"}
    assert sm.describe_action(ActionName=action)["Status"] == "Completed"
    assert sm.describe_context(ContextName=f"ctx-{tag}")["ContextType"] == "Project"
    models = sm.list_artifacts(ArtifactType="Model", SourceUri=f"s3://b/{tag}/model")["ArtifactSummaries"]
    assert [a["ArtifactArn"] for a in models] == [second]
    assert f"Train-{tag}" in [a["ActionName"] for a in sm.list_actions(ActionType="Training")["ActionSummaries"]]
    into = sm.list_associations(DestinationArn=action)["AssociationSummaries"]
    assert [(a["SourceArn"], a["SourceName"], a["SourceType"], a["DestinationName"]) for a in into] == [
        (first, f"data-{tag}", "DataSet", f"Train-{tag}")]
    page = sm.list_associations(SourceType="Model", MaxResults=1)
    assert [a["SourceArn"] for a in page["AssociationSummaries"]] == [second] and "NextToken" not in page
    sm.delete_action(ActionName=f"Train-{tag}")
    assert sm.list_associations(DestinationArn=action)["AssociationSummaries"] == []
    _refused(lambda: sm.describe_action(ActionName=f"Train-{tag}"), code="ResourceNotFound")


def test_an_execution_survives_a_kill_of_the_server(tmp_path):
    server = ServerProcess(tmp_path / "data", env=SELFTEST_ENV).start()
    try:
        sm = server.client("sagemaker")
        account = server.client("sts").get_caller_identity()["Account"]
        role = f"arn:aws:iam::{account}:role/JobforgeExecutionRole"
        name = _pipeline(sm, role, [
            {"Name": "Slow", "Type": "Job", "Arguments": _job(role, steps=12, sleep=0.5)},
            {"Name": "Next", "Type": "Job", "DependsOn": ["Slow"], "Arguments": _job(role)}])
        arn = sm.start_pipeline_execution(PipelineName=name)["PipelineExecutionArn"]
        deadline = time.time() + 60
        while _steps(sm, arn).get("Slow", {}).get("StepStatus") != "Executing":
            assert time.time() < deadline
            time.sleep(0.2)
        server.kill()
    except BaseException:
        server.kill()
        raise
    restarted = ServerProcess(tmp_path / "data", port=server.port, env=SELFTEST_ENV).start()
    try:
        sm = restarted.client("sagemaker")
        described = _wait(sm, arn)
        assert described["PipelineExecutionStatus"] == "Succeeded", described.get("FailureReason")
        found = _steps(sm, arn)
        assert {n: s["StepStatus"] for n, s in found.items()} == {"Slow": "Succeeded", "Next": "Succeeded"}
        assert sm.list_jobs(JobCategory=CATEGORY, NameContains=arn.rsplit("/", 1)[1])["JobSummaries"].__len__() == 2
    finally:
        restarted.stop()
