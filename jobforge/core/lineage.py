"""SageMaker ML lineage, per account and region: artifacts, actions and contexts (the entities) and the
associations between them.

Actions and contexts are named, one per name in an account and region, and their ARNs end in the name in
lower case; artifacts may share a name or have none, and their ARNs end in a random 32-digit hex id, as on
AWS. An association joins two entities of the account and region, once.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass

import sqlalchemy as sa

from jobforge.core import idempotency, paging, sagemaker_tags, tags
from jobforge.core.errors import ServiceError, validation_error
from jobforge.core.idempotency import ClientToken
from jobforge.core.store import metadata, reading

KINDS = ("artifact", "action", "context")
LABELS = {"artifact": "Artifact", "action": "Action", "context": "Context"}

lineage_entities = sa.Table(
    "lineage_entities", metadata,
    sa.Column("id", sa.String(32), primary_key=True),
    sa.Column("account_id", sa.String(12), nullable=False),
    sa.Column("region", sa.String(32), nullable=False),
    sa.Column("kind", sa.String(16), nullable=False),  # artifact | action | context
    sa.Column("name", sa.String(120)),  # an artifact may have none
    sa.Column("arn", sa.String(256), nullable=False, unique=True),
    sa.Column("entity_type", sa.String(256), nullable=False),  # ArtifactType, ActionType or ContextType
    sa.Column("source_uri", sa.String(2048), nullable=False),
    sa.Column("source", sa.JSON, nullable=False),  # the Source member as given
    sa.Column("description", sa.Text),
    sa.Column("status", sa.String(16)),  # an action's
    sa.Column("properties", sa.JSON, nullable=False),
    sa.Column("metadata_properties", sa.JSON),
    sa.Column("created_by", sa.JSON, nullable=False),
    sa.Column("created_at", sa.Float, nullable=False),
    sa.Column("updated_at", sa.Float, nullable=False),
    sa.Index("ix_lineage_entities_account_region_kind_created", "account_id", "region", "kind", "created_at"),
)
sagemaker_tags.register("artifact", lineage_entities, lineage_entities.c.kind == "artifact")
sagemaker_tags.register("action", lineage_entities, lineage_entities.c.kind == "action")
sagemaker_tags.register("context", lineage_entities, lineage_entities.c.kind == "context")

lineage_associations = sa.Table(
    "lineage_associations", metadata,
    sa.Column("id", sa.String(32), primary_key=True),
    sa.Column("account_id", sa.String(12), nullable=False),
    sa.Column("region", sa.String(32), nullable=False),
    sa.Column("source_arn", sa.String(256), nullable=False),
    sa.Column("destination_arn", sa.String(256), nullable=False),
    sa.Column("association_type", sa.String(32)),
    sa.Column("created_by", sa.JSON, nullable=False),
    sa.Column("created_at", sa.Float, nullable=False),
    sa.UniqueConstraint("source_arn", "destination_arn", name="uq_lineage_associations_source_destination"),
    sa.Index("ix_lineage_associations_account_region_created", "account_id", "region", "created_at"),
)


@dataclass(frozen=True)
class Entity:
    id: str
    account_id: str
    region: str
    kind: str
    name: str | None
    arn: str
    entity_type: str
    source_uri: str
    source: dict
    description: str | None
    status: str | None
    properties: dict
    metadata_properties: dict | None
    created_by: dict
    created_at: float
    updated_at: float


@dataclass(frozen=True)
class Association:
    id: str
    account_id: str
    region: str
    source_arn: str
    destination_arn: str
    association_type: str | None
    created_by: dict
    created_at: float


def entity_arn(region: str, account_id: str, kind: str, name: str | None) -> str:
    suffix = uuid.uuid4().hex if kind == "artifact" else name.lower()
    return f"arn:aws:sagemaker:{region}:{account_id}:{kind}/{suffix}"


def not_found(kind: str, identifier: str) -> ServiceError:
    return ServiceError("ResourceNotFound", f"{LABELS[kind]} '{identifier}' does not exist.")


def create(engine: sa.Engine, account_id: str, region: str, kind: str, *, name: str | None, entity_type: str,
           source: dict, description: str | None = None, status: str | None = None,
           properties: dict | None = None, metadata_properties: dict | None = None, created_by: dict,
           tag_list: list[dict] | None = None, token: ClientToken | None = None) -> Entity:
    now = time.time()
    entity = Entity(uuid.uuid4().hex, account_id, region, kind, name, entity_arn(region, account_id, kind, name),
                    entity_type, source["SourceUri"], source, description, status, properties or {},
                    metadata_properties, created_by, now, now)
    try:
        with engine.begin() as conn:
            conn.execute(lineage_entities.insert().values(vars(entity)))
            if tag_list:
                tags.put(conn, account_id, entity.arn, sagemaker_tags.requested(tag_list))
            idempotency.remember(conn, token, entity.arn)
    except sa.exc.IntegrityError:
        raise validation_error(f"{LABELS[kind]} {name} already exists: {entity.arn}") from None
    return entity


def _entities(engine: sa.Engine, *conditions) -> list[Entity]:
    with reading(engine) as conn:
        rows = conn.execute(sa.select(lineage_entities).where(*conditions)
                            .order_by(lineage_entities.c.created_at.desc(), lineage_entities.c.id)).all()
    return [Entity(**row._mapping) for row in rows]


def find(engine: sa.Engine, account_id: str, region: str, kind: str, identifier: str) -> Entity | None:
    """The entity of ``kind`` an ARN or a name names (of several artifacts of one name, the newest)."""
    owned = (lineage_entities.c.account_id == account_id, lineage_entities.c.region == region,
             lineage_entities.c.kind == kind)
    if identifier.startswith("arn:"):
        found = _entities(engine, *owned, lineage_entities.c.arn == identifier)
    elif kind == "artifact":
        found = _entities(engine, *owned, lineage_entities.c.name == identifier)
    else:
        found = _entities(engine, *owned, lineage_entities.c.arn == entity_arn(region, account_id, kind, identifier))
    return found[0] if found else None


def get(engine: sa.Engine, account_id: str, region: str, kind: str, identifier: str) -> Entity:
    found = find(engine, account_id, region, kind, identifier)
    if found is None:
        raise not_found(kind, identifier)
    return found


def by_arn(engine: sa.Engine, account_id: str, region: str, arn: str) -> Entity | None:
    found = _entities(engine, lineage_entities.c.account_id == account_id, lineage_entities.c.region == region,
                      lineage_entities.c.arn == arn)
    return found[0] if found else None


def delete(engine: sa.Engine, entity: Entity) -> None:
    """Delete the entity, its tags and the associations it is an end of."""
    with engine.begin() as conn:
        conn.execute(lineage_entities.delete().where(lineage_entities.c.id == entity.id))
        conn.execute(lineage_associations.delete().where(sa.or_(
            lineage_associations.c.source_arn == entity.arn, lineage_associations.c.destination_arn == entity.arn)))
        tags.remove(conn, entity.arn)


def page(engine: sa.Engine, account_id: str, region: str, kind: str, *, conditions: list, bind: dict,
         sort: str, ascending: bool, limit: int, token: str | None) -> paging.Page:
    query = sa.select(lineage_entities).where(
        lineage_entities.c.account_id == account_id, lineage_entities.c.region == region,
        lineage_entities.c.kind == kind, *conditions)
    found = paging.keyset_page(engine, query, lineage_entities.c[sort], lineage_entities.c.id, ascending, limit,
                               token, dict(bind, kind=kind, region=region, sort=sort), validation_error)
    found.rows = [Entity(**row._mapping) for row in found.rows]
    return found


# -- associations -------------------------------------------------------------------------------

def associate(engine: sa.Engine, account_id: str, region: str, source_arn: str, destination_arn: str,
              association_type: str | None, created_by: dict) -> Association:
    """Join two entities of the account and region; joining them again changes nothing."""
    for arn in (source_arn, destination_arn):
        if by_arn(engine, account_id, region, arn) is None:
            kind = arn.split(":", 5)[-1].split("/", 1)[0]
            if kind not in KINDS:
                raise ServiceError("ResourceNotFound", f"{arn} does not exist: jobforge keeps artifacts, actions and "
                                   "contexts, no experiments or trial components.")
            raise ServiceError("ResourceNotFound", f"{LABELS[kind]} '{arn}' does not exist.")
    association = Association(uuid.uuid4().hex, account_id, region, source_arn, destination_arn, association_type,
                              created_by, time.time())
    try:
        with engine.begin() as conn:
            conn.execute(lineage_associations.insert().values(vars(association)))
    except sa.exc.IntegrityError:
        pass  # joined already
    return association


def disassociate(engine: sa.Engine, account_id: str, region: str, source_arn: str, destination_arn: str) -> None:
    with engine.begin() as conn:
        removed = conn.execute(lineage_associations.delete().where(
            lineage_associations.c.account_id == account_id, lineage_associations.c.region == region,
            lineage_associations.c.source_arn == source_arn,
            lineage_associations.c.destination_arn == destination_arn)).rowcount
    if not removed:
        raise ServiceError("ResourceNotFound", f"No association from {source_arn} to {destination_arn} exists.")


def association_page(engine: sa.Engine, account_id: str, region: str, *, equal: dict, created_after: float | None,
                     created_before: float | None, bind: dict, sort: str, ascending: bool, limit: int,
                     token: str | None) -> paging.Page:
    """One page of the account's associations, each row with its ends' names and types (``source_name``,
    ``source_type``, ``destination_name``, ``destination_type``); ``equal`` maps those columns (and
    ``source_arn``, ``destination_arn``, ``association_type``) to the value they must have."""
    source, destination = lineage_entities.alias("source"), lineage_entities.alias("destination")
    table = lineage_associations
    joined = (sa.select(table, source.c.name.label("source_name"), source.c.entity_type.label("source_type"),
                        destination.c.name.label("destination_name"),
                        destination.c.entity_type.label("destination_type"))
              .join(source, source.c.arn == table.c.source_arn)
              .join(destination, destination.c.arn == table.c.destination_arn)
              .where(table.c.account_id == account_id, table.c.region == region)).subquery()
    conditions = [joined.c[column] == value for column, value in equal.items()]
    if created_after is not None:
        conditions.append(joined.c.created_at > created_after)
    if created_before is not None:
        conditions.append(joined.c.created_at < created_before)
    query = sa.select(joined).where(*conditions)
    return paging.keyset_page(engine, query, joined.c[sort], joined.c.id, ascending, limit, token,
                              dict(bind, region=region, sort=sort), validation_error)
