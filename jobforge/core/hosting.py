"""SageMaker hosting records, per account and region: models, endpoint configs and endpoints.

A model and an endpoint config are what their Create request said (``spec``). An endpoint keeps the
deployment it serves (``deployment``: its config's production variants, each with its model's spec, as they
were when it was deployed), so that it keeps serving after its config or models are deleted, as on AWS, and
comes back the same after a restart; an update in progress keeps the one it moves to in ``pending``.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass, fields

import sqlalchemy as sa

from jobforge.core import sagemaker_tags, tags
from jobforge.core.errors import ServiceError, validation_error
from jobforge.core.store import metadata, reading

CREATING, IN_SERVICE, UPDATING, DELETING, FAILED = "Creating", "InService", "Updating", "Deleting", "Failed"
SYSTEM_UPDATING = "SystemUpdating"  # deployed again by a server that restarted
SETTLED = (IN_SERVICE, FAILED)


def _named_table(name: str, *columns: sa.Column) -> sa.Table:
    return sa.Table(
        name, metadata,
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("account_id", sa.String(12), nullable=False),
        sa.Column("region", sa.String(32), nullable=False),
        sa.Column("name", sa.String(63), nullable=False),
        sa.Column("arn", sa.String(2048), nullable=False, unique=True),
        *columns,
        sa.Column("created_at", sa.Float, nullable=False),
        sa.UniqueConstraint("account_id", "region", "name", name=f"uq_{name}_account_region_name"),
    )


hosting_models = _named_table("hosting_models", sa.Column("spec", sa.JSON, nullable=False))
endpoint_configs = _named_table("endpoint_configs", sa.Column("spec", sa.JSON, nullable=False))
endpoints = _named_table(
    "endpoints",
    sa.Column("config_name", sa.String(63), nullable=False),
    sa.Column("status", sa.String(32), nullable=False),
    sa.Column("failure_reason", sa.Text),
    sa.Column("deployment", sa.JSON, nullable=False),  # what it serves (or is being created with)
    sa.Column("pending", sa.JSON),  # the deployment an update moves it to
    sa.Column("last_modified", sa.Float, nullable=False),
    sa.Column("server_id", sa.String(32), index=True),  # the server whose instances serve it (server_leases)
)
sagemaker_tags.register("model", hosting_models)
sagemaker_tags.register("endpoint-config", endpoint_configs)
sagemaker_tags.register("endpoint", endpoints)


@dataclass
class Record:
    id: str
    account_id: str
    region: str
    name: str
    arn: str
    spec: dict
    created_at: float


@dataclass
class Endpoint:
    id: str
    account_id: str
    region: str
    name: str
    arn: str
    config_name: str
    status: str
    failure_reason: str | None
    deployment: dict
    pending: dict | None
    last_modified: float
    created_at: float
    server_id: str | None = None

    @property
    def log_group(self) -> str:
        return f"/aws/sagemaker/Endpoints/{self.name}"


def arn(region: str, account_id: str, kind: str, name: str) -> str:
    """SageMaker lower-cases the names in its hosting ARNs."""
    return f"arn:aws:sagemaker:{region}:{account_id}:{kind}/{name.lower()}"


def _from_row(cls, row):
    return cls(**{f.name: row._mapping[f.name] for f in fields(cls)})


def _insert(engine: sa.Engine, table: sa.Table, values: dict, tag_list: list[dict], exists: str) -> None:
    try:
        with engine.begin() as conn:
            conn.execute(table.insert().values(values))
            if tag_list:
                tags.put(conn, values["account_id"], values["arn"], sagemaker_tags.requested(tag_list))
    except sa.exc.IntegrityError:
        raise validation_error(exists) from None


def _get(engine: sa.Engine, table: sa.Table, account_id: str, region: str, name: str):
    with reading(engine) as conn:
        return conn.execute(sa.select(table).where(table.c.account_id == account_id, table.c.region == region,
                                                   table.c.name == name)).first()


def _delete(engine: sa.Engine, table: sa.Table, record) -> None:
    with engine.begin() as conn:
        conn.execute(table.delete().where(table.c.id == record.id))
        tags.remove(conn, record.arn)


# -- models and endpoint configs ------------------------------------------------------

def create_model(engine: sa.Engine, account_id: str, region: str, name: str, spec: dict, tag_list: list[dict]
                 ) -> Record:
    record = Record(uuid.uuid4().hex, account_id, region, name, arn(region, account_id, "model", name), spec,
                    time.time())
    _insert(engine, hosting_models, vars(record), tag_list,
            f'Cannot create already existing model "{record.arn}".')
    return record


def create_endpoint_config(engine: sa.Engine, account_id: str, region: str, name: str, spec: dict,
                           tag_list: list[dict]) -> Record:
    record = Record(uuid.uuid4().hex, account_id, region, name, arn(region, account_id, "endpoint-config", name),
                    spec, time.time())
    _insert(engine, endpoint_configs, vars(record), tag_list,
            f'Cannot create already existing endpoint configuration "{record.arn}".')
    return record


def model(engine: sa.Engine, account_id: str, region: str, name: str) -> Record | None:
    row = _get(engine, hosting_models, account_id, region, name)
    return _from_row(Record, row) if row is not None else None


def endpoint_config(engine: sa.Engine, account_id: str, region: str, name: str) -> Record | None:
    row = _get(engine, endpoint_configs, account_id, region, name)
    return _from_row(Record, row) if row is not None else None


def delete_model(engine: sa.Engine, record: Record) -> None:
    _delete(engine, hosting_models, record)


def delete_endpoint_config(engine: sa.Engine, record: Record) -> None:
    _delete(engine, endpoint_configs, record)


def listing(table_name: str) -> sa.Table:
    return {"models": hosting_models, "endpoint_configs": endpoint_configs, "endpoints": endpoints}[table_name]


# -- endpoints ----------------------------------------------------------------------------

def create_endpoint(engine: sa.Engine, account_id: str, region: str, name: str, config_name: str,
                    deployment: dict, tag_list: list[dict]) -> Endpoint:
    now = time.time()
    endpoint = Endpoint(uuid.uuid4().hex, account_id, region, name, arn(region, account_id, "endpoint", name),
                        config_name, CREATING, None, deployment, None, now, now)
    _insert(engine, endpoints, vars(endpoint), tag_list, f'Cannot create already existing endpoint "{endpoint.arn}".')
    return endpoint


def endpoint(engine: sa.Engine, account_id: str, region: str, name: str) -> Endpoint | None:
    row = _get(engine, endpoints, account_id, region, name)
    return _from_row(Endpoint, row) if row is not None else None


def endpoint_by_id(engine: sa.Engine, endpoint_id: str) -> Endpoint | None:
    with reading(engine) as conn:
        row = conn.execute(sa.select(endpoints).where(endpoints.c.id == endpoint_id)).first()
    return _from_row(Endpoint, row) if row is not None else None


def take_endpoints(engine: sa.Engine, server_id: str, from_server: str | None) -> list[Endpoint]:
    """The endpoints of a server that is gone (None: those no server serves), now this server's to serve."""
    owner = endpoints.c.server_id.is_(None) if from_server is None else endpoints.c.server_id == from_server
    with engine.begin() as conn:
        ids = conn.execute(endpoints.update().where(owner).values(server_id=server_id)
                           .returning(endpoints.c.id)).scalars().all()
        rows = conn.execute(sa.select(endpoints).where(endpoints.c.id.in_(ids))).all() if ids else []
    return [_from_row(Endpoint, row) for row in rows]


def take_endpoint(engine: sa.Engine, endpoint_id: str, server_id: str) -> bool:
    """Whether this server now serves a new endpoint (none served it yet)."""
    with engine.begin() as conn:
        return conn.execute(endpoints.update().where(endpoints.c.id == endpoint_id, endpoints.c.server_id.is_(None))
                            .values(server_id=server_id)).rowcount == 1


def changing_endpoints(engine: sa.Engine, server_id: str) -> list[Endpoint]:
    """A server's endpoints being updated or deleted (the request may have reached another server)."""
    with reading(engine) as conn:
        return [_from_row(Endpoint, row) for row in conn.execute(sa.select(endpoints).where(
            endpoints.c.server_id == server_id, endpoints.c.status.in_((UPDATING, DELETING)))).all()]


def update_endpoint(engine: sa.Engine, endpoint_id: str, *, expect: tuple[str, ...] | None = None, **values
                    ) -> Endpoint | None:
    """Change an endpoint (None once it is gone); with ``expect``, only while its status is one of those, else
    a ValidationException naming its status."""
    values.setdefault("last_modified", time.time())
    with engine.begin() as conn:
        row = conn.execute(sa.select(endpoints).where(endpoints.c.id == endpoint_id)).first()
        if row is None:
            return None
        if expect is not None and row.status not in expect:
            raise validation_error(f'Cannot update in-progress endpoint "{row.arn}".' if row.status != FAILED
                                   else f'Cannot update failed endpoint "{row.arn}".')
        conn.execute(endpoints.update().where(endpoints.c.id == endpoint_id).values(**values))
        row = conn.execute(sa.select(endpoints).where(endpoints.c.id == endpoint_id)).first()
    return _from_row(Endpoint, row)


def delete_endpoint(engine: sa.Engine, endpoint: Endpoint) -> None:
    _delete(engine, endpoints, endpoint)


def not_found(kind: str, arn_or_name: str) -> ServiceError:
    return validation_error(f'Could not find {kind} "{arn_or_name}".')
