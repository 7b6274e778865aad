"""SageMaker's AddTags, ListTags and DeleteTags through boto3 and the AWS CLI on every kind of SageMaker resource
the server keeps: tags given at create listed, added, overwritten and deleted, DescribeJob showing the same
tags, tags gone with their resource, AWS's limits and reserved keys refused, and another account's resources
out of reach."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from botocore.exceptions import ClientError

from jobforge.testing_server import ServerProcess
from selftest_kind import CATEGORY, SELFTEST_ENV

AWS = str(Path(sys.executable).with_name("aws"))
BUCKET = "tagged-resources"
CREATED = [{"Key": "team", "Value": "ml"}, {"Key": "cost-center", "Value": "4711"}]
PACKAGE_SPEC = {"Containers": [{"Image": "763104351884.dkr.ecr.us-east-1.amazonaws.com/pytorch-inference:2.1-cpu",
                                "ModelDataUrl": f"s3://{BUCKET}/model.tar.gz"}],
                "SupportedContentTypes": ["application/json"], "SupportedResponseMIMETypes": ["application/json"]}


def _sorted(tag_list: list[dict]) -> list[dict]:
    return sorted(tag_list, key=lambda tag: tag["Key"])


def _listed(sm, arn: str) -> list[dict]:
    return _sorted(sm.list_tags(ResourceArn=arn)["Tags"])


def _refused(call, *needles, **kwargs) -> str:
    with pytest.raises(ClientError) as caught:
        call(**kwargs)
    error = caught.value.response["Error"]
    assert error["Code"] == "ValidationException", error
    for needle in needles:
        assert needle in error["Message"], error["Message"]
    return error["Message"]


def _job(sm, role_arn: str, name: str, tags=CREATED) -> str:
    return sm.create_job(JobName=name, JobCategory=CATEGORY, RoleArn=role_arn, JobConfigSchemaVersion="1.0.0",
                         JobConfigDocument=json.dumps({"Steps": 1, "SleepSeconds": 0.01}), Tags=tags)["JobArn"]


def _until(describe, field: str, done: tuple[str, ...], timeout: float = 120) -> None:
    deadline = time.time() + timeout
    while (status := describe()[field]) not in done:
        assert time.time() < deadline, status
        time.sleep(0.2)


def _pipeline_definition() -> str:
    """One Lineage step: an execution that ends in a moment without running a job."""
    return json.dumps({"Version": "2020-12-01", "Parameters": [], "Steps": [{
        "Name": "Record", "Type": "Lineage", "Arguments": {"Contexts": [{
            "ContextName": {"Get": "Execution.PipelineExecutionId"}, "ContextType": "PipelineExecution",
            "Source": {"SourceUri": {"Get": "Execution.PipelineExecutionArn"}}}]}}]})


@pytest.fixture(scope="module")
def sm(server):
    server.client("s3").create_bucket(Bucket=BUCKET)
    return server.client("sagemaker")


@pytest.fixture(scope="module")
def unchecked(server):
    """A client that leaves the model's minimums to the server, as SDKs of other languages do."""
    return server.client("sagemaker", parameter_validation=False)


@pytest.fixture(scope="module")
def resources(sm, role_arn) -> dict[str, tuple[str, list[dict]]]:
    """One resource of every kind: kind → (ARN, the tags its create request gave)."""
    found = {"job": (_job(sm, role_arn, "tagged-job"), CREATED)}
    found["compilation-job"] = (sm.create_compilation_job(
        CompilationJobName="tagged-compilation", RoleArn=role_arn,
        InputConfig={"S3Uri": f"s3://{BUCKET}/model.tar.gz", "Framework": "ONNX"},
        OutputConfig={"S3OutputLocation": f"s3://{BUCKET}/compiled", "TargetDevice": "ml_c5"},
        StoppingCondition={"MaxRuntimeInSeconds": 60}, Tags=CREATED)["CompilationJobArn"], CREATED)
    sm.stop_compilation_job(CompilationJobName="tagged-compilation")
    found["model"] = (sm.create_model(ModelName="tagged-model", ExecutionRoleArn=role_arn, PrimaryContainer={
        "ModelDataUrl": f"s3://{BUCKET}/absent.tar.gz"}, Tags=CREATED)["ModelArn"], CREATED)
    found["endpoint-config"] = (sm.create_endpoint_config(EndpointConfigName="tagged-config", ProductionVariants=[{
        "VariantName": "AllTraffic", "ModelName": "tagged-model", "InstanceType": "ml.t2.medium",
        "InitialInstanceCount": 1}], Tags=CREATED)["EndpointConfigArn"], CREATED)
    # Its model data is missing: the endpoint fails at once and holds no model server.
    found["endpoint"] = (sm.create_endpoint(EndpointName="tagged-endpoint", EndpointConfigName="tagged-config",
                                            Tags=CREATED)["EndpointArn"], CREATED)
    found["inference-recommendations-job"] = (sm.create_inference_recommendations_job(
        JobName="tagged-recommendation", JobType="Default", RoleArn=role_arn, InputConfig={
            "ModelName": "tagged-model", "ContainerConfig": {"PayloadConfig": {
                "SamplePayloadUrl": f"s3://{BUCKET}/payload.tar.gz", "SupportedContentTypes": ["text/csv"]}}},
        Tags=CREATED)["JobArn"], CREATED)
    sm.stop_inference_recommendations_job(JobName="tagged-recommendation")
    found["model-package-group"] = (sm.create_model_package_group(
        ModelPackageGroupName="tagged-group", Tags=CREATED)["ModelPackageGroupArn"], CREATED)
    # A version takes no Tags at create (it is a group's); AddTags still tags it.
    found["model-package-version"] = (sm.create_model_package(
        ModelPackageGroupName="tagged-group", InferenceSpecification=PACKAGE_SPEC)["ModelPackageArn"], [])
    found["model-package"] = (sm.create_model_package(
        ModelPackageName="tagged-package", InferenceSpecification=PACKAGE_SPEC, Tags=CREATED)["ModelPackageArn"],
        CREATED)
    found["pipeline"] = (sm.create_pipeline(PipelineName="tagged-pipeline", PipelineDefinition=_pipeline_definition(),
                                            RoleArn=role_arn, Tags=CREATED)["PipelineArn"], CREATED)
    # StartPipelineExecution takes no Tags.
    found["pipeline-execution"] = (sm.start_pipeline_execution(PipelineName="tagged-pipeline")
                                   ["PipelineExecutionArn"], [])
    found["artifact"] = (sm.create_artifact(ArtifactType="DataSet", Source={"SourceUri": f"s3://{BUCKET}/data"},
                                            Tags=CREATED)["ArtifactArn"], CREATED)
    found["action"] = (sm.create_action(ActionName="tagged-action", ActionType="Training", Source={
        "SourceUri": f"s3://{BUCKET}/train"}, Tags=CREATED)["ActionArn"], CREATED)
    found["context"] = (sm.create_context(ContextName="tagged-context", ContextType="Project", Source={
        "SourceUri": f"s3://{BUCKET}/project"}, Tags=CREATED)["ContextArn"], CREATED)
    found["mlflow-app"] = (sm.create_mlflow_app(Name="tagged-app", ArtifactStoreUri=f"s3://{BUCKET}/mlflow",
                                                RoleArn=role_arn, Tags=CREATED)["Arn"], CREATED)
    return found


def test_tags_given_at_create_are_listed_for_every_kind(sm, resources):
    for kind, (arn, created) in resources.items():
        assert _listed(sm, arn) == _sorted(created), kind


def test_add_overwrite_and_delete_on_every_kind(sm, resources):
    for kind, (arn, created) in resources.items():
        added = [{"Key": "stage", "Value": kind}, {"Key": "team", "Value": "research"},
                 {"Key": "unicode é/=+-@:.", "Value": ""}]
        assert sm.add_tags(ResourceArn=arn, Tags=added)["Tags"] == added, kind
        expected = {tag["Key"]: tag["Value"] for tag in created} | {tag["Key"]: tag["Value"] for tag in added}
        assert _listed(sm, arn) == _sorted([{"Key": k, "Value": v} for k, v in expected.items()]), kind
        sm.delete_tags(ResourceArn=arn, TagKeys=["stage", "never-set"])  # an absent key is no error
        del expected["stage"]
        assert _listed(sm, arn) == _sorted([{"Key": k, "Value": v} for k, v in expected.items()]), kind
    # DescribeJob returns the job's tags: the same as ListTags after the changes.
    described = sm.describe_job(JobName="tagged-job", JobCategory=CATEGORY)
    assert _sorted(described["Tags"]) == _listed(sm, resources["job"][0])
    assert {"Key": "team", "Value": "research"} in described["Tags"]


def test_listing_pages(sm, unchecked, role_arn):
    arn = _job(sm, role_arn, "paged-job", tags=[])
    sm.add_tags(ResourceArn=arn, Tags=[{"Key": f"k{i:02}", "Value": str(i)} for i in range(50)])
    page = sm.list_tags(ResourceArn=arn, MaxResults=50)
    assert [tag["Key"] for tag in page["Tags"]] == [f"k{i:02}" for i in range(50)] and "NextToken" not in page
    _refused(sm.list_tags, "Invalid pagination token", ResourceArn=arn, NextToken="not-a-token")
    _refused(unchecked.list_tags, "greater than or equal to 50", ResourceArn=arn, MaxResults=10)


def test_limits_and_reserved_keys(sm, unchecked, role_arn, resources):
    arn = resources["model"][0]
    before = _listed(sm, arn)
    add = lambda tags: lambda: sm.add_tags(ResourceArn=arn, Tags=tags)  # noqa: E731
    _refused(add([{"Key": "aws:owner", "Value": "x"}]), "aws:owner", "reserved")
    _refused(add([{"Key": "AWS:Owner", "Value": "x"}]), "reserved")
    _refused(add([{"Key": "k", "Value": "1"}, {"Key": "k", "Value": "2"}]), "Duplicate tag key")
    _refused(add([{"Key": "k" * 129, "Value": "v"}]), "length less than or equal to 128")
    _refused(add([{"Key": "k", "Value": "v" * 257}]), "length less than or equal to 256")
    _refused(lambda: unchecked.add_tags(ResourceArn=arn, Tags=[{"Key": "", "Value": "v"}]),
             "length greater than or equal to 1")
    _refused(add([{"Key": "semi;colon", "Value": "v"}]), "regular expression pattern")
    _refused(add([{"Key": "k", "Value": "hash#"}]), "regular expression pattern")
    _refused(add([{"Key": f"k{i}", "Value": "v"} for i in range(51)]), "length less than or equal to 50")
    _refused(lambda: sm.delete_tags(ResourceArn=arn, TagKeys=["aws:cloudformation:stack-name"]), "reserved")
    _refused(lambda: unchecked.delete_tags(ResourceArn=arn, TagKeys=[]), "length greater than or equal to 1")
    # 50 tags a resource: its own count, less the keys a request overwrites, plus the new ones.
    room = 50 - len(before)
    _refused(add([{"Key": f"extra-{i}", "Value": "v"} for i in range(room + 1)]), "more than 50 tags")
    assert _listed(sm, arn) == before  # a refused request changes nothing
    sm.add_tags(ResourceArn=arn, Tags=[{"Key": f"extra-{i}", "Value": "v"} for i in range(room)])
    assert len(_listed(sm, arn)) == 50
    sm.add_tags(ResourceArn=arn, Tags=[{"Key": "team", "Value": "overwritten"}])  # no new key: allowed
    _refused(add([{"Key": "one-more", "Value": "v"}]), "more than 50 tags")
    sm.delete_tags(ResourceArn=arn, TagKeys=[f"extra-{i}" for i in range(room)])
    # The same rules hold for the tags of a create request.
    _refused(lambda: _job(sm, role_arn, "reserved-job", tags=[{"Key": "aws:x", "Value": "y"}]), "reserved")
    _refused(lambda: sm.create_model_package_group(ModelPackageGroupName="twice-group", Tags=[
        {"Key": "k", "Value": "1"}, {"Key": "k", "Value": "2"}]), "Duplicate tag key")
    _refused(lambda: sm.describe_model_package_group(ModelPackageGroupName="twice-group"), "does not exist")


def test_arns_that_name_no_resource(sm, resources, account_id):
    model = resources["model"][0]
    for arn in (model.replace("tagged-model", "no-such-model"),
                model.replace("us-east-1", "eu-west-1"),  # the right account, another region
                f"arn:aws:sagemaker:us-east-1:{account_id}:training-job/never-kept",
                f"arn:aws:sagemaker:us-east-1:{account_id}:job/{CATEGORY}",  # a category, no job
                resources["pipeline-execution"][0] + "x"):
        for call in (lambda: sm.list_tags(ResourceArn=arn),
                     lambda: sm.add_tags(ResourceArn=arn, Tags=[{"Key": "k", "Value": "v"}]),
                     lambda: sm.delete_tags(ResourceArn=arn, TagKeys=["k"])):
            _refused(call, "Could not find resource", arn)
    # The public hub is AWS's: its ARN names no 12-digit account, which ResourceArn's pattern asks for.
    _refused(lambda: sm.list_tags(ResourceArn="arn:aws:sagemaker:us-east-1:aws:hub/SageMakerPublicHub"),
             "regular expression pattern")
    _refused(lambda: sm.list_tags(ResourceArn="not-an-arn"), "regular expression pattern")


def test_deleting_a_resource_deletes_its_tags(sm, role_arn):
    arn = _job(sm, role_arn, "short-lived-job")
    _until(lambda: sm.describe_job(JobName="short-lived-job", JobCategory=CATEGORY), "JobStatus", ("Completed",))
    sm.delete_job(JobName="short-lived-job", JobCategory=CATEGORY)
    _refused(lambda: sm.list_tags(ResourceArn=arn), "Could not find resource")
    assert _job(sm, role_arn, "short-lived-job", tags=[]) == arn
    assert _listed(sm, arn) == []  # the same ARN again, none of the old tags

    group = sm.create_model_package_group(ModelPackageGroupName="short-lived-group", Tags=CREATED)
    sm.delete_model_package_group(ModelPackageGroupName="short-lived-group")
    assert sm.create_model_package_group(ModelPackageGroupName="short-lived-group")["ModelPackageGroupArn"] == \
        group["ModelPackageGroupArn"]
    assert _listed(sm, group["ModelPackageGroupArn"]) == []

    context = sm.create_context(ContextName="short-lived-context", ContextType="Project",
                                Source={"SourceUri": "s3://x/y"}, Tags=CREATED)["ContextArn"]
    sm.delete_context(ContextName="short-lived-context")
    _refused(lambda: sm.list_tags(ResourceArn=context), "Could not find resource")
    assert sm.create_context(ContextName="short-lived-context", ContextType="Project",
                             Source={"SourceUri": "s3://x/y"})["ContextArn"] == context
    assert _listed(sm, context) == []

    # A pipeline's deletion takes its executions and their tags with it.
    pipeline = sm.create_pipeline(PipelineName="short-lived-pipeline", PipelineDefinition=_pipeline_definition(),
                                  RoleArn=role_arn, Tags=CREATED)["PipelineArn"]
    execution = sm.start_pipeline_execution(PipelineName="short-lived-pipeline")["PipelineExecutionArn"]
    sm.add_tags(ResourceArn=execution, Tags=[{"Key": "run", "Value": "first"}])
    _until(lambda: sm.describe_pipeline_execution(PipelineExecutionArn=execution), "PipelineExecutionStatus",
           ("Succeeded", "Failed"))
    sm.delete_pipeline(PipelineName="short-lived-pipeline")
    for arn in (pipeline, execution):
        _refused(lambda: sm.list_tags(ResourceArn=arn), "Could not find resource")
    sm.create_pipeline(PipelineName="short-lived-pipeline", PipelineDefinition=_pipeline_definition(),
                       RoleArn=role_arn)
    assert _listed(sm, pipeline) == []


def test_tags_on_postgresql(postgres_url, tmp_path):
    """The same calls on PostgreSQL, where AddTags and DeleteTags hold the resource's row while they run."""
    server = ServerProcess(tmp_path / "data", extra_args=["--database-url", postgres_url], env=SELFTEST_ENV).start()
    try:
        sm = server.client("sagemaker")
        arn = sm.create_model_package_group(ModelPackageGroupName="pg-group", Tags=CREATED)["ModelPackageGroupArn"]
        sm.add_tags(ResourceArn=arn, Tags=[{"Key": "team", "Value": "pg"}, {"Key": "stage", "Value": "dev"}])
        sm.delete_tags(ResourceArn=arn, TagKeys=["cost-center"])
        assert _listed(sm, arn) == [{"Key": "stage", "Value": "dev"}, {"Key": "team", "Value": "pg"}]
        _refused(lambda: sm.add_tags(ResourceArn=arn, Tags=[{"Key": f"k{i}", "Value": "v"} for i in range(49)]),
                 "more than 50 tags")
        sm.delete_model_package_group(ModelPackageGroupName="pg-group")
        _refused(lambda: sm.list_tags(ResourceArn=arn), "Could not find resource")
        sm.create_model_package_group(ModelPackageGroupName="pg-group")
        assert _listed(sm, arn) == []
    finally:
        server.stop()


@pytest.fixture(scope="module")
def stranger(server):
    subprocess.run([sys.executable, "-m", "jobforge.cli", "--data-dir", str(server.data_dir), "accounts", "create",
                    "tag-stranger"], check=True, capture_output=True, timeout=60)
    return server.client("sagemaker", profile="tag-stranger")


def test_another_account_reaches_none_of_the_tags(sm, server, resources, stranger):
    before = {kind: _listed(sm, arn) for kind, (arn, _) in resources.items()}
    for kind, (arn, _) in resources.items():
        _refused(lambda: stranger.list_tags(ResourceArn=arn), "Could not find resource")
        _refused(lambda: stranger.add_tags(ResourceArn=arn, Tags=[{"Key": "mine", "Value": "now"}]),
                 "Could not find resource")
        _refused(lambda: stranger.delete_tags(ResourceArn=arn, TagKeys=["team"]), "Could not find resource")
    assert {kind: _listed(sm, arn) for kind, (arn, _) in resources.items()} == before
    # The stranger's own resource of the same name has its own tags, out of the first account's reach.
    account = server.client("sts", profile="tag-stranger").get_caller_identity()["Account"]
    theirs = stranger.create_model_package_group(ModelPackageGroupName="tagged-group",
                                                 Tags=[{"Key": "owner", "Value": "stranger"}])
    assert f":{account}:" in theirs["ModelPackageGroupArn"]
    assert _listed(stranger, theirs["ModelPackageGroupArn"]) == [{"Key": "owner", "Value": "stranger"}]
    _refused(lambda: sm.list_tags(ResourceArn=theirs["ModelPackageGroupArn"]), "Could not find resource")
    assert _listed(sm, resources["model-package-group"][0]) == before["model-package-group"]


def aws(server, *args):
    env = {key: value for key, value in os.environ.items() if not key.startswith("AWS_")}
    env.update(AWS_CONFIG_FILE=str(server.data_dir / "config"),
               AWS_SHARED_CREDENTIALS_FILE=str(server.data_dir / "credentials"))
    return subprocess.run([AWS, "sagemaker", *args, "--output", "json"], capture_output=True, text=True, env=env,
                          timeout=120)


def test_aws_cli_add_list_delete_tags(server, sm, role_arn):
    arn = sm.create_model_package_group(ModelPackageGroupName="cli-group", Tags=CREATED)["ModelPackageGroupArn"]
    added = aws(server, "add-tags", "--resource-arn", arn, "--tags", "Key=stage,Value=prod", "Key=team,Value=cli")
    assert added.returncode == 0, added.stderr
    assert json.loads(added.stdout)["Tags"] == [{"Key": "stage", "Value": "prod"}, {"Key": "team", "Value": "cli"}]
    listed = aws(server, "list-tags", "--resource-arn", arn)
    assert listed.returncode == 0, listed.stderr
    assert _sorted(json.loads(listed.stdout)["Tags"]) == [
        {"Key": "cost-center", "Value": "4711"}, {"Key": "stage", "Value": "prod"}, {"Key": "team", "Value": "cli"}]
    deleted = aws(server, "delete-tags", "--resource-arn", arn, "--tag-keys", "stage", "cost-center")
    assert deleted.returncode == 0, deleted.stderr
    assert json.loads(aws(server, "list-tags", "--resource-arn", arn).stdout)["Tags"] == [
        {"Key": "team", "Value": "cli"}]
    reserved = aws(server, "add-tags", "--resource-arn", arn, "--tags", "Key=aws:stack,Value=x")
    assert reserved.returncode == 255 and "ValidationException" in reserved.stderr and "reserved" in reserved.stderr
    missing = aws(server, "list-tags", "--resource-arn", arn.replace("cli-group", "no-group"))
    assert missing.returncode == 255 and "Could not find resource" in missing.stderr
