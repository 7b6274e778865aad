"""SageMaker model package groups and model packages, per account and region.

A group holds versioned packages: each is named by its group, numbered from 1 in the order they were created
(a number is never given twice, even after a deletion), and found by its ARN or ``group/version``. An
unversioned package has a name of its own. What a package describes (its ``InferenceSpecification`` and the
rest of its Create request) is kept whole in ``spec``; other APIs reach its model through
``model_data(package)``.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass

import sqlalchemy as sa

from jobforge.core import idempotency, sagemaker_tags, tags
from jobforge.core.errors import ServiceError, validation_error
from jobforge.core.idempotency import ClientToken
from jobforge.core.regional_records import RegionalTable
from jobforge.core.store import metadata

COMPLETED = "Completed"  # a group's and a package's status: nothing is validated after creation
PENDING_APPROVAL = "PendingManualApproval"  # a versioned package's approval status unless its request sets one

model_package_groups = sa.Table(
    "model_package_groups", metadata,
    sa.Column("id", sa.String(32), primary_key=True),
    sa.Column("account_id", sa.String(12), nullable=False),
    sa.Column("region", sa.String(32), nullable=False),
    sa.Column("name", sa.String(63), nullable=False),
    sa.Column("arn", sa.String(2048), nullable=False, unique=True),
    sa.Column("description", sa.Text),
    sa.Column("created_by", sa.JSON, nullable=False),
    sa.Column("latest_version", sa.Integer, nullable=False),  # the last version number given
    sa.Column("created_at", sa.Float, nullable=False),
    sa.UniqueConstraint("account_id", "region", "name", name="uq_model_package_groups_account_region_name"),
)

model_packages = sa.Table(
    "model_packages", metadata,
    sa.Column("id", sa.String(32), primary_key=True),
    sa.Column("account_id", sa.String(12), nullable=False),
    sa.Column("region", sa.String(32), nullable=False),
    sa.Column("name", sa.String(63), nullable=False),  # a versioned package's is its group's
    sa.Column("arn", sa.String(2048), nullable=False, unique=True),
    sa.Column("group_name", sa.String(63)),
    sa.Column("version", sa.Integer),
    sa.Column("approval_status", sa.String(32)),
    sa.Column("spec", sa.JSON, nullable=False),  # the Create request's describable members
    sa.Column("created_by", sa.JSON, nullable=False),
    sa.Column("created_at", sa.Float, nullable=False),
    sa.Index("ix_model_packages_account_region_name", "account_id", "region", "name"),
)
sagemaker_tags.register("model-package-group", model_package_groups)
sagemaker_tags.register("model-package", model_packages)


@dataclass(frozen=True)
class Group:
    id: str
    account_id: str
    region: str
    name: str
    arn: str
    description: str | None
    created_by: dict
    latest_version: int
    created_at: float


@dataclass(frozen=True)
class Package:
    id: str
    account_id: str
    region: str
    name: str
    arn: str
    group_name: str | None
    version: int | None
    approval_status: str | None
    spec: dict
    created_by: dict
    created_at: float

    @property
    def containers(self) -> list[dict]:
        return self.spec.get("InferenceSpecification", {}).get("Containers", [])


GROUPS = RegionalTable(model_package_groups, Group, "Model package group")
PACKAGES = RegionalTable(model_packages, Package, "Model package")


def group_arn(region: str, account_id: str, name: str) -> str:
    """SageMaker lower-cases the names in its ARNs."""
    return f"arn:aws:sagemaker:{region}:{account_id}:model-package-group/{name.lower()}"


def package_arn(region: str, account_id: str, name: str, version: int | None = None) -> str:
    suffix = f"/{version}" if version is not None else ""
    return f"arn:aws:sagemaker:{region}:{account_id}:model-package/{name.lower()}{suffix}"


def group_not_found(region: str, account_id: str, identifier: str) -> ServiceError:
    arn = identifier if identifier.startswith("arn:") else group_arn(region, account_id, identifier)
    return validation_error(f"ModelPackageGroup {arn} does not exist.")


def package_not_found(identifier: str) -> ServiceError:
    return validation_error(f"ModelPackage {identifier} does not exist.")


# -- groups -------------------------------------------------------------------------------------

def create_group(engine: sa.Engine, account_id: str, region: str, name: str, description: str | None,
                 created_by: dict, tag_list: list[dict]) -> Group:
    group = Group(uuid.uuid4().hex, account_id, region, name, group_arn(region, account_id, name), description,
                  created_by, 0, time.time())
    try:
        with engine.begin() as conn:
            conn.execute(model_package_groups.insert().values(vars(group)))
            if tag_list:
                tags.put(conn, account_id, group.arn, sagemaker_tags.requested(tag_list))
    except sa.exc.IntegrityError:
        raise validation_error(f"Model Package Group already exists: {group.arn}") from None
    return group


def find_group(engine: sa.Engine, account_id: str, region: str, identifier: str) -> Group | None:
    """The group a name or ARN names (an ARN of another account or region names none here)."""
    return GROUPS.find(engine, account_id, region, identifier)


def get_group(engine: sa.Engine, account_id: str, region: str, identifier: str) -> Group:
    group = find_group(engine, account_id, region, identifier)
    if group is None:
        raise group_not_found(region, account_id, identifier)
    return group


def delete_group(engine: sa.Engine, group: Group) -> None:
    with engine.begin() as conn:
        versions = conn.execute(sa.select(sa.func.count()).select_from(model_packages).where(
            model_packages.c.account_id == group.account_id, model_packages.c.region == group.region,
            model_packages.c.group_name == group.name)).scalar_one()
        if versions:
            raise ServiceError("ConflictException", f"Model package group {group.name} has {versions} model "
                               "package version(s); delete them before the group.")
        conn.execute(model_package_groups.delete().where(model_package_groups.c.id == group.id))
        tags.remove(conn, group.arn)


# -- packages -----------------------------------------------------------------------------------

def create_package(engine: sa.Engine, account_id: str, region: str, *, name: str | None, group: Group | None,
                   approval_status: str | None, spec: dict, created_by: dict, tag_list: list[dict],
                   token: ClientToken | None = None) -> Package:
    """An unversioned package named ``name``, or the next version of ``group``; the request's client token is
    written in the same transaction."""
    try:
        with engine.begin() as conn:
            version = None
            if group is not None:
                # The group row's update serialises concurrent versions: each gets its own number.
                changed = conn.execute(model_package_groups.update().where(model_package_groups.c.id == group.id)
                                       .values(latest_version=model_package_groups.c.latest_version + 1)).rowcount
                if not changed:
                    raise group_not_found(region, account_id, group.name)
                version = conn.execute(sa.select(model_package_groups.c.latest_version).where(
                    model_package_groups.c.id == group.id)).scalar_one()
                name = group.name
                approval_status = approval_status or PENDING_APPROVAL
            arn = package_arn(region, account_id, name, version)
            package = Package(uuid.uuid4().hex, account_id, region, name, arn, group.name if group else None, version,
                              approval_status, spec, created_by, time.time())
            conn.execute(model_packages.insert().values(vars(package)))
            if tag_list:
                tags.put(conn, account_id, package.arn, sagemaker_tags.requested(tag_list))
            idempotency.remember(conn, token, package.arn)
    except sa.exc.IntegrityError:
        raise validation_error(f"Model Package already exists: {package_arn(region, account_id, name)}") from None
    return package


def _identified(identifier: str) -> list:
    """The conditions that find a package by ARN, ``group/version`` or an unversioned package's name."""
    if identifier.startswith("arn:"):
        return [model_packages.c.arn == identifier]
    name, _, version = identifier.partition("/")
    if version:
        return [model_packages.c.name == name, model_packages.c.version == int(version)]
    return [model_packages.c.name == name, model_packages.c.version.is_(None)]


def find_package(engine: sa.Engine, account_id: str, region: str, identifier: str) -> Package | None:
    """The package an ARN, ``group/version`` or unversioned name names (none of another account or region)."""
    found = PACKAGES.select(engine, account_id, region, *_identified(identifier))
    return found[0] if found else None


def get_package(engine: sa.Engine, account_id: str, region: str, identifier: str) -> Package:
    package = find_package(engine, account_id, region, identifier)
    if package is None:
        raise package_not_found(identifier)
    return package


def delete_package(engine: sa.Engine, package: Package) -> None:
    with engine.begin() as conn:
        conn.execute(model_packages.delete().where(model_packages.c.id == package.id))
        tags.remove(conn, package.arn)


def model_data(package: Package) -> str:
    """The S3 URI of the model a package's first container holds (``ModelDataUrl``, or its ``ModelDataSource``);
    a ValidationException when it holds none."""
    for container in package.containers[:1]:
        source = container.get("ModelDataSource", {}).get("S3DataSource", {}).get("S3Uri")
        uri = container.get("ModelDataUrl") or source
        if uri:
            return uri
    raise validation_error(f"Model package {package.arn} has no model data: its InferenceSpecification's first "
                           "container gives no ModelDataUrl or ModelDataSource.")
