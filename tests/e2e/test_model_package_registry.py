"""SageMaker model package groups and model packages through boto3 against the real server: versions numbered
per group and never reused, unversioned packages, every List filter, sort and paging, describe by ARN, name
and group/version, refusals, and another account's and region's reach."""

from __future__ import annotations

import subprocess
import sys

import pytest
from botocore.exceptions import ClientError

CONTAINER = {"Image": "763104351884.dkr.ecr.us-east-1.amazonaws.com/huggingface-pytorch-inference:2.1-cpu",
             "ModelDataUrl": "s3://models/tiny/model.tar.gz", "Environment": {"HF_TASK": "text-generation"},
             "BaseModel": {"HubContentName": "tiny-digits", "HubContentVersion": "1.0.0"}}
SPEC = {"Containers": [CONTAINER], "SupportedContentTypes": ["application/json"],
        "SupportedResponseMIMETypes": ["application/json"]}


@pytest.fixture(scope="module")
def sm(server):
    return server.client("sagemaker")


def error(call, **kwargs) -> tuple[str, str]:
    with pytest.raises(ClientError) as caught:
        call(**kwargs)
    return caught.value.response["Error"]["Code"], caught.value.response["Error"]["Message"]


def test_groups_and_versions(sm, account_id):
    arn = sm.create_model_package_group(ModelPackageGroupName="Digits-Policy", ModelPackageGroupDescription="RL",
                                        Tags=[{"Key": "team", "Value": "rl"}])["ModelPackageGroupArn"]
    assert arn == f"arn:aws:sagemaker:us-east-1:{account_id}:model-package-group/digits-policy"
    group = sm.describe_model_package_group(ModelPackageGroupName=arn)
    assert group["ModelPackageGroupName"] == "Digits-Policy" and group["ModelPackageGroupStatus"] == "Completed"
    assert group["ModelPackageGroupDescription"] == "RL" and group["CreatedBy"]["IamIdentity"]["Arn"]
    code, message = error(sm.create_model_package_group, ModelPackageGroupName="Digits-Policy")
    assert code == "ValidationException" and "already exists" in message

    first = sm.create_model_package(ModelPackageGroupName="Digits-Policy", InferenceSpecification=SPEC,
                                    ModelPackageDescription="step 60")["ModelPackageArn"]
    second = sm.create_model_package(ModelPackageGroupName=arn, InferenceSpecification=SPEC,
                                     ModelApprovalStatus="Approved")["ModelPackageArn"]
    assert first.endswith(":model-package/digits-policy/1") and second.endswith(":model-package/digits-policy/2")
    described = sm.describe_model_package(ModelPackageName=first)
    assert described["ModelPackageGroupName"] == "Digits-Policy" and described["ModelPackageVersion"] == 1
    assert described["ModelApprovalStatus"] == "PendingManualApproval"
    assert described["ModelPackageStatus"] == "Completed" and described["ModelPackageDescription"] == "step 60"
    assert described["InferenceSpecification"]["Containers"][0] == CONTAINER
    assert sm.describe_model_package(ModelPackageName="Digits-Policy/2")["ModelApprovalStatus"] == "Approved"

    # A deleted version's number is not given again.
    sm.delete_model_package(ModelPackageName=second)
    assert error(sm.describe_model_package, ModelPackageName=second)[0] == "ValidationException"
    third = sm.create_model_package(ModelPackageGroupName="Digits-Policy", InferenceSpecification=SPEC)
    assert third["ModelPackageArn"].endswith("/3")
    code, message = error(sm.delete_model_package_group, ModelPackageGroupName="Digits-Policy")
    assert code == "ConflictException" and "delete them" in message
    for version in (first, third["ModelPackageArn"]):
        sm.delete_model_package(ModelPackageName=version)
    sm.delete_model_package_group(ModelPackageGroupName="Digits-Policy")
    code, message = error(sm.describe_model_package_group, ModelPackageGroupName="Digits-Policy")
    assert code == "ValidationException" and "does not exist" in message


def test_unversioned_packages_and_refusals(sm):
    arn = sm.create_model_package(ModelPackageName="standalone", InferenceSpecification=SPEC,
                                  Tags=[{"Key": "k", "Value": "v"}])["ModelPackageArn"]
    described = sm.describe_model_package(ModelPackageName="standalone")
    assert described["ModelPackageArn"] == arn and "ModelPackageVersion" not in described
    assert "ModelApprovalStatus" not in described
    assert error(sm.create_model_package, ModelPackageName="standalone",
                 InferenceSpecification=SPEC)[0] == "ValidationException"
    sm.create_model_package_group(ModelPackageGroupName="refusals")
    refused = [
        dict(ModelPackageName="both", ModelPackageGroupName="refusals", InferenceSpecification=SPEC),
        dict(InferenceSpecification=SPEC),
        dict(ModelPackageName="approved", ModelApprovalStatus="Approved", InferenceSpecification=SPEC),
        dict(ModelPackageName="nothing"),
        dict(ModelPackageGroupName="refusals", InferenceSpecification=SPEC, Tags=[{"Key": "k", "Value": "v"}]),
        dict(ModelPackageGroupName="no-such-group", InferenceSpecification=SPEC),
        dict(ModelPackageGroupName="refusals", InferenceSpecification=SPEC, CertifyForMarketplace=True),
        dict(ModelPackageGroupName="refusals", InferenceSpecification={
            "Containers": [dict(CONTAINER, ModelDataUrl="https://example.com/model.tar.gz")]}),
        dict(ModelPackageGroupName="refusals", SourceAlgorithmSpecification={
            "SourceAlgorithms": [{"AlgorithmName": "xgboost"}]}),
    ]
    for request in refused:
        assert error(sm.create_model_package, **request)[0] == "ValidationException", request
    assert sm.list_model_packages(ModelPackageGroupName="refusals")["ModelPackageSummaryList"] == []
    sm.delete_model_package(ModelPackageName=arn)
    sm.delete_model_package_group(ModelPackageGroupName="refusals")


def test_listing_filters_sorts_and_pages(sm):
    names = ["list-b", "list-a", "list-c"]
    for name in names:
        sm.create_model_package_group(ModelPackageGroupName=name)
    for status in ("Approved", "Rejected", "PendingManualApproval"):
        sm.create_model_package(ModelPackageGroupName="list-a", InferenceSpecification=SPEC,
                                ModelApprovalStatus=status)
    sm.create_model_package(ModelPackageName="list-loose", InferenceSpecification=SPEC)

    def groups(**kwargs):
        return [g["ModelPackageGroupName"] for g in
                sm.list_model_package_groups(NameContains="list-", **kwargs)["ModelPackageGroupSummaryList"]]

    assert groups() == names  # creation time, ascending by default
    assert groups(SortBy="Name") == sorted(names)
    assert groups(SortBy="Name", SortOrder="Descending") == sorted(names, reverse=True)
    assert sm.list_model_package_groups(CrossAccountFilterOption="CrossAccount")["ModelPackageGroupSummaryList"] == []
    pages = sm.get_paginator("list_model_package_groups").paginate(
        NameContains="list-", PaginationConfig={"PageSize": 2})
    assert [len(p["ModelPackageGroupSummaryList"]) for p in pages] == [2, 1]
    first = sm.list_model_package_groups(NameContains="list-", MaxResults=1)
    assert error(sm.list_model_package_groups, NameContains="other", NextToken=first["NextToken"])[0] == \
        "ValidationException"
    created = sm.describe_model_package_group(ModelPackageGroupName="list-a")["CreationTime"]
    # Times travel in milliseconds: list-a itself may fall on either side of its own rounded time.
    assert {"list-c"} <= set(groups(CreationTimeAfter=created)) <= {"list-a", "list-c"}
    assert {"list-b"} <= set(groups(CreationTimeBefore=created)) <= {"list-a", "list-b"}

    def packages(**kwargs):
        return [(p["ModelPackageName"], p.get("ModelPackageVersion")) for p in
                sm.list_model_packages(NameContains="list-", **kwargs)["ModelPackageSummaryList"]]

    assert packages() == [("list-loose", None)]  # unversioned only, by default
    assert packages(ModelPackageGroupName="list-a") == [("list-a", 1), ("list-a", 2), ("list-a", 3)]
    assert packages(ModelPackageGroupName="list-a", SortOrder="Descending")[0] == ("list-a", 3)
    assert packages(ModelPackageType="Both") == [("list-a", 1), ("list-a", 2), ("list-a", 3), ("list-loose", None)]
    assert packages(ModelPackageType="Versioned", ModelApprovalStatus="Rejected") == [("list-a", 2)]
    assert packages(ModelPackageGroupName="list-a", ModelPackageType="Unversioned") == []
    summary = sm.list_model_packages(ModelPackageGroupName="list-a", MaxResults=1)
    assert summary["ModelPackageSummaryList"][0]["ModelApprovalStatus"] == "Approved" and "NextToken" in summary
    pages = sm.get_paginator("list_model_packages").paginate(ModelPackageType="Both", NameContains="list-",
                                                             PaginationConfig={"PageSize": 3})
    assert [len(p["ModelPackageSummaryList"]) for p in pages] == [3, 1]


def test_another_account_and_region_see_nothing(server, sm):
    arn = sm.create_model_package_group(ModelPackageGroupName="private")["ModelPackageGroupArn"]
    version = sm.create_model_package(ModelPackageGroupName="private", InferenceSpecification=SPEC)["ModelPackageArn"]
    other_region = server.client("sagemaker", region="us-west-2")
    assert error(other_region.describe_model_package_group, ModelPackageGroupName="private")[0] == \
        "ValidationException"
    assert error(other_region.describe_model_package, ModelPackageName=version)[0] == "ValidationException"
    subprocess.run([sys.executable, "-m", "jobforge.cli", "--data-dir", str(server.data_dir), "accounts", "create",
                    "registry-outsider"], check=True, capture_output=True, timeout=60)
    outsider = server.client("sagemaker", profile="registry-outsider")
    assert error(outsider.describe_model_package_group, ModelPackageGroupName=arn)[0] == "ValidationException"
    assert error(outsider.create_model_package, ModelPackageGroupName=arn,
                 InferenceSpecification=SPEC)[0] == "ValidationException"
    assert outsider.list_model_packages(ModelPackageType="Both")["ModelPackageSummaryList"] == []
