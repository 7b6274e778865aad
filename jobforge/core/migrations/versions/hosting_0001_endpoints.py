"""hosting: SageMaker models, endpoint configs and endpoints

Revision ID: hosting_0001
Revises: 0001
"""
from alembic import op
import sqlalchemy as sa

revision = 'hosting_0001'
down_revision = '0001'
branch_labels = ('hosting',)
depends_on = None


def _named(name, *columns):
    op.create_table(name,
    sa.Column('id', sa.String(length=32), nullable=False),
    sa.Column('account_id', sa.String(length=12), nullable=False),
    sa.Column('region', sa.String(length=32), nullable=False),
    sa.Column('name', sa.String(length=63), nullable=False),
    sa.Column('arn', sa.String(length=2048), nullable=False),
    *columns,
    sa.Column('created_at', sa.Float(), nullable=False),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('arn'),
    sa.UniqueConstraint('account_id', 'region', 'name', name=f'uq_{name}_account_region_name')
    )


def upgrade():
    _named('hosting_models', sa.Column('spec', sa.JSON(), nullable=False))
    _named('endpoint_configs', sa.Column('spec', sa.JSON(), nullable=False))
    _named('endpoints',
           sa.Column('config_name', sa.String(length=63), nullable=False),
           sa.Column('status', sa.String(length=32), nullable=False),
           sa.Column('failure_reason', sa.Text(), nullable=True),
           sa.Column('deployment', sa.JSON(), nullable=False),
           sa.Column('pending', sa.JSON(), nullable=True),
           sa.Column('last_modified', sa.Float(), nullable=False))


def downgrade():
    op.drop_table('endpoints')
    op.drop_table('endpoint_configs')
    op.drop_table('hosting_models')
