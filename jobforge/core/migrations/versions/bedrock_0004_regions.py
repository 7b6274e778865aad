"""bedrock: custom models, deployments, Provisioned Throughputs and the invocation-logging configuration belong
to the region of the request that made them; a name is unique per account and region

Revision ID: bedrock_0004
Revises: bedrock_0003
"""
from alembic import op
import sqlalchemy as sa

revision = 'bedrock_0004'
down_revision = 'bedrock_0003'
branch_labels = None
depends_on = None
DEFAULT_REGION = 'us-east-1'  # where a record whose ARN names no region was made: the server's default region
NAMED = (('custom_models', 'uq_custom_models_account_name', 'uq_custom_models_account_region_name'),
         ('model_deployments', 'uq_model_deployments_account_name', 'uq_model_deployments_account_region_name'),
         ('provisioned_models', 'uq_provisioned_models_account_name', 'uq_provisioned_models_account_region_name'))


def _region(arn: str) -> str:
    """The fourth field of arn:aws:bedrock:<region>:<account>:..."""
    fields = arn.split(":")
    return fields[3] if len(fields) > 4 and fields[3] else DEFAULT_REGION


def _fill_regions(name: str) -> None:
    table = sa.table(name, sa.column('id', sa.String), sa.column('arn', sa.String), sa.column('region', sa.String))
    conn = op.get_bind()
    rows = [{'row_id': row_id, 'row_region': _region(arn)}
            for row_id, arn in conn.execute(sa.select(table.c.id, table.c.arn)).all()]
    if rows:
        conn.execute(table.update().where(table.c.id == sa.bindparam('row_id'))
                     .values(region=sa.bindparam('row_region')), rows)


def _invocation_logging(key: list[str]) -> sa.Table:
    columns = [sa.Column('account_id', sa.String(length=12), nullable=False)]
    if 'region' in key:
        columns.append(sa.Column('region', sa.String(length=32), nullable=False))
    return op.create_table('invocation_logging', *columns,
                           sa.Column('config', sa.JSON(), nullable=False),
                           sa.Column('updated_at', sa.Float(), nullable=False),
                           sa.PrimaryKeyConstraint(*key))


def _saved_logging(*key: str) -> list[dict]:
    table = sa.table('invocation_logging', *(sa.column(column, sa.String) for column in key),
                     sa.column('config', sa.JSON), sa.column('updated_at', sa.Float))
    return [dict(row._mapping) for row in op.get_bind().execute(sa.select(table)).all()]


def upgrade():
    for name, old, new in NAMED:
        with op.batch_alter_table(name) as batch:
            batch.add_column(sa.Column('region', sa.String(32), nullable=True))
        _fill_regions(name)
        with op.batch_alter_table(name) as batch:
            batch.alter_column('region', existing_type=sa.String(32), nullable=False)
            batch.drop_constraint(old, type_='unique')
            batch.create_unique_constraint(new, ['account_id', 'region', 'name'])
    # One configuration per account becomes one per account and region: the table is small (a row per
    # account), so it is made again rather than given a new primary key in each database's own way.
    saved = _saved_logging('account_id')
    op.drop_table('invocation_logging')
    op.bulk_insert(_invocation_logging(['account_id', 'region']),
                   [dict(row, region=DEFAULT_REGION) for row in saved])


def downgrade():
    chosen = {}  # each account keeps its default region's configuration, else another region's
    for row in sorted(_saved_logging('account_id', 'region'), key=lambda row: row['region'] != DEFAULT_REGION):
        chosen.setdefault(row['account_id'], {k: v for k, v in row.items() if k != 'region'})
    op.drop_table('invocation_logging')
    op.bulk_insert(_invocation_logging(['account_id']), list(chosen.values()))
    for name, old, new in NAMED:
        with op.batch_alter_table(name) as batch:
            batch.drop_constraint(new, type_='unique')
            batch.create_unique_constraint(old, ['account_id', 'name'])
            batch.drop_column('region')
