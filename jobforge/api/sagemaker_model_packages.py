"""SageMaker model registry: CreateModelPackageGroup, DescribeModelPackageGroup, ListModelPackageGroups,
DeleteModelPackageGroup, CreateModelPackage, DescribeModelPackage, ListModelPackages, DeleteModelPackage.

A package created with ``ModelPackageGroupName`` is the group's next version; one created with
``ModelPackageName`` is unversioned. Nothing is validated after creation, so a package is ``Completed`` at
once. What the registry keeps is the request's description of the model (``InferenceSpecification`` and
the metadata around it); what needs services jobforge does not have is refused: validation by transform
jobs (``ValidationSpecification``), algorithms (``SourceAlgorithmSpecification``), the Marketplace, KMS keys
and managed storage.
"""

from __future__ import annotations

from jobforge.api.base import RequestContext, client_token, handler
from jobforge.core import idempotency, model_packages
from jobforge.core.errors import validation_error
from jobforge.core.model_packages import model_package_groups, model_packages as packages_table
from jobforge.core.timestamps import from_epoch

DESCRIBED = ("ModelPackageDescription", "ModelPackageRegistrationType", "InferenceSpecification",
             "CertifyForMarketplace", "MetadataProperties", "ModelMetrics", "Domain", "Task", "SamplePayloadUrl",
             "CustomerMetadataProperties", "DriftCheckBaselines", "AdditionalInferenceSpecifications",
             "SkipModelValidation", "SourceUri", "ModelCard", "ModelLifeCycle")
REFUSED = {
    "ValidationSpecification": "jobforge runs no validation transform jobs for a model package",
    "SourceAlgorithmSpecification": "jobforge keeps no algorithms; describe the model with InferenceSpecification",
    "SecurityConfig": "jobforge has no KMS keys to encrypt the package with",
    "ManagedStorageType": "jobforge has no managed model storage",
}
DEFAULT_PAGE = 10


def _created_by(ctx: RequestContext) -> dict:
    return {"IamIdentity": {"Arn": ctx.principal_arn}}


def _page_args(req: dict) -> dict:
    return {"ascending": req.get("SortOrder", "Ascending") == "Ascending", "limit": req.get("MaxResults", DEFAULT_PAGE),
            "token": req.get("NextToken"), "bad_token": validation_error,
            "sort": "name" if req.get("SortBy") == "Name" else "created_at"}


def _common_filters(table, req: dict) -> tuple[list, dict]:
    """NameContains and the creation-time bounds, and what a page token binds of them."""
    conditions, bind = [], {}
    if req.get("NameContains"):
        conditions.append(table.c.name.contains(req["NameContains"], autoescape=True))
    if "CreationTimeAfter" in req:
        conditions.append(table.c.created_at > req["CreationTimeAfter"].timestamp())
    if "CreationTimeBefore" in req:
        conditions.append(table.c.created_at < req["CreationTimeBefore"].timestamp())
    for key in ("NameContains", "CreationTimeAfter", "CreationTimeBefore"):
        if key in req:
            bind[key] = str(req[key])
    return conditions, bind


# -- groups -------------------------------------------------------------------------------------

def _group_summary(group: model_packages.Group) -> dict:
    out = {"ModelPackageGroupName": group.name, "ModelPackageGroupArn": group.arn,
           "CreationTime": from_epoch(group.created_at), "ModelPackageGroupStatus": model_packages.COMPLETED}
    if group.description is not None:
        out["ModelPackageGroupDescription"] = group.description
    return out


@handler("sagemaker", "CreateModelPackageGroup")
def create_model_package_group(ctx: RequestContext, req: dict) -> dict:
    if req.get("ManagedConfiguration"):
        raise validation_error("ManagedConfiguration is not supported by jobforge: it has no managed model "
                               "storage.")
    group = model_packages.create_group(ctx.engine, ctx.account_id, ctx.region, req["ModelPackageGroupName"],
                                        req.get("ModelPackageGroupDescription"), _created_by(ctx),
                                        req.get("Tags") or [])
    return {"ModelPackageGroupArn": group.arn}


@handler("sagemaker", "DescribeModelPackageGroup")
def describe_model_package_group(ctx: RequestContext, req: dict) -> dict:
    group = model_packages.get_group(ctx.engine, ctx.account_id, ctx.region, req["ModelPackageGroupName"])
    return {**_group_summary(group), "CreatedBy": group.created_by}


@handler("sagemaker", "ListModelPackageGroups")
def list_model_package_groups(ctx: RequestContext, req: dict) -> dict:
    if req.get("CrossAccountFilterOption") == "CrossAccount":
        return {"ModelPackageGroupSummaryList": []}  # jobforge shares no groups between accounts
    conditions, bind = _common_filters(model_package_groups, req)
    page = model_packages.GROUPS.page(ctx.engine, ctx.account_id, ctx.region, conditions=conditions, bind=bind,
                                      **_page_args(req))
    out = {"ModelPackageGroupSummaryList": [_group_summary(group) for group in page.rows]}
    if page.next_token:
        out["NextToken"] = page.next_token
    return out


@handler("sagemaker", "DeleteModelPackageGroup")
def delete_model_package_group(ctx: RequestContext, req: dict) -> dict:
    model_packages.delete_group(ctx.engine, model_packages.get_group(ctx.engine, ctx.account_id, ctx.region,
                                                                     req["ModelPackageGroupName"]))
    return {}


# -- packages -----------------------------------------------------------------------------------

def _check_containers(where: str, containers: list[dict]) -> None:
    for index, container in enumerate(containers):
        uris = [("ModelDataUrl", container.get("ModelDataUrl")),
                ("ModelDataSource.S3DataSource.S3Uri",
                 container.get("ModelDataSource", {}).get("S3DataSource", {}).get("S3Uri"))]
        for member, uri in uris:
            if uri and not uri.startswith("s3://"):
                raise validation_error(f"{where}.Containers.{index + 1}.{member} must be an s3:// URI on this server "
                                       f"(https:// object URLs are not supported): {uri}")


def _check_package_request(req: dict) -> None:
    versioned = "ModelPackageGroupName" in req
    if versioned == ("ModelPackageName" in req):
        raise validation_error("Provide exactly one of ModelPackageName (an unversioned package) and "
                               "ModelPackageGroupName (a version in a model package group).")
    for member, reason in REFUSED.items():
        if member in req:
            raise validation_error(f"{member} is not supported by jobforge: {reason}.")
    if req.get("CertifyForMarketplace"):
        raise validation_error("CertifyForMarketplace is not supported by jobforge: it lists nothing on AWS "
                               "Marketplace.")
    if versioned and req.get("Tags"):
        raise validation_error("Tags cannot be given for a versioned model package: it uses the tags of its "
                               "model package group.")
    if not versioned and "ModelApprovalStatus" in req:
        raise validation_error("ModelApprovalStatus applies to versioned model packages only.")
    if not versioned and "InferenceSpecification" not in req:
        raise validation_error("An unversioned model package needs InferenceSpecification.")
    if "InferenceSpecification" in req:
        _check_containers("InferenceSpecification", req["InferenceSpecification"]["Containers"])
    for spec in req.get("AdditionalInferenceSpecifications", []):
        _check_containers(f"AdditionalInferenceSpecifications[{spec['Name']}]", spec["Containers"])


@handler("sagemaker", "CreateModelPackage")
def create_model_package(ctx: RequestContext, req: dict) -> dict:
    _check_package_request(req)
    token = client_token(ctx, "model-package", req, "ClientToken")
    earlier = idempotency.earlier(ctx.engine, token, idempotency.reused("ValidationException", "ClientToken"))
    if earlier:
        return {"ModelPackageArn": earlier}
    group = None
    if "ModelPackageGroupName" in req:
        group = model_packages.get_group(ctx.engine, ctx.account_id, ctx.region, req["ModelPackageGroupName"])
    package = model_packages.create_package(
        ctx.engine, ctx.account_id, ctx.region, name=req.get("ModelPackageName"), group=group,
        approval_status=req.get("ModelApprovalStatus"), spec={key: req[key] for key in DESCRIBED if key in req},
        created_by=_created_by(ctx), tag_list=req.get("Tags") or [], token=token)
    return {"ModelPackageArn": package.arn}


def _package_summary(package: model_packages.Package) -> dict:
    out = {"ModelPackageName": package.name, "ModelPackageArn": package.arn,
           "CreationTime": from_epoch(package.created_at), "ModelPackageStatus": model_packages.COMPLETED}
    if package.version is not None:
        out.update(ModelPackageGroupName=package.group_name, ModelPackageVersion=package.version)
    if package.approval_status:
        out["ModelApprovalStatus"] = package.approval_status
    for key in ("ModelPackageDescription", "ModelLifeCycle", "ModelPackageRegistrationType"):
        if key in package.spec:
            out[key] = package.spec[key]
    return out


@handler("sagemaker", "DescribeModelPackage")
def describe_model_package(ctx: RequestContext, req: dict) -> dict:
    package = model_packages.get_package(ctx.engine, ctx.account_id, ctx.region, req["ModelPackageName"])
    spec = dict(package.spec)
    if req.get("IncludedData") == "MetadataOnly" and "ModelCardContent" in spec.get("ModelCard", {}):
        spec["ModelCard"] = {k: v for k, v in spec["ModelCard"].items() if k != "ModelCardContent"}
    return {**spec, **_package_summary(package), "CreatedBy": package.created_by,
            "ModelPackageStatusDetails": {"ValidationStatuses": [], "ImageScanStatuses": []}}


@handler("sagemaker", "ListModelPackages")
def list_model_packages(ctx: RequestContext, req: dict) -> dict:
    table = packages_table
    conditions, bind = _common_filters(table, req)
    kind = req.get("ModelPackageType")
    if "ModelPackageGroupName" in req:
        group = model_packages.find_group(ctx.engine, ctx.account_id, ctx.region, req["ModelPackageGroupName"])
        conditions.append(table.c.group_name == (group.name if group else req["ModelPackageGroupName"]))
        bind["ModelPackageGroupName"] = req["ModelPackageGroupName"]
        kind = kind or "Versioned"
    kind = kind or "Unversioned"
    if kind != "Both":
        conditions.append(table.c.version.is_(None) if kind == "Unversioned" else table.c.version.is_not(None))
    if "ModelApprovalStatus" in req:
        conditions.append(table.c.approval_status == req["ModelApprovalStatus"])
        bind["ModelApprovalStatus"] = req["ModelApprovalStatus"]
    bind["ModelPackageType"] = kind
    page = model_packages.PACKAGES.page(ctx.engine, ctx.account_id, ctx.region, conditions=conditions, bind=bind,
                                        **_page_args(req))
    out = {"ModelPackageSummaryList": [_package_summary(package) for package in page.rows]}
    if page.next_token:
        out["NextToken"] = page.next_token
    return out


@handler("sagemaker", "DeleteModelPackage")
def delete_model_package(ctx: RequestContext, req: dict) -> dict:
    model_packages.delete_package(ctx.engine, model_packages.get_package(ctx.engine, ctx.account_id, ctx.region,
                                                                         req["ModelPackageName"]))
    return {}
