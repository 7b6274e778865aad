"""model_packages: SageMaker model package groups and model packages

Revision ID: model_packages_0001
Revises: 0001
"""
from alembic import op
import sqlalchemy as sa

revision = 'model_packages_0001'
down_revision = '0001'
branch_labels = ('model_packages',)
depends_on = None


def upgrade():
    op.create_table('model_package_groups',
    sa.Column('id', sa.String(length=32), nullable=False),
    sa.Column('account_id', sa.String(length=12), nullable=False),
    sa.Column('region', sa.String(length=32), nullable=False),
    sa.Column('name', sa.String(length=63), nullable=False),
    sa.Column('arn', sa.String(length=2048), nullable=False),
    sa.Column('description', sa.Text(), nullable=True),
    sa.Column('created_by', sa.JSON(), nullable=False),
    sa.Column('latest_version', sa.Integer(), nullable=False),
    sa.Column('created_at', sa.Float(), nullable=False),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('arn'),
    sa.UniqueConstraint('account_id', 'region', 'name', name='uq_model_package_groups_account_region_name')
    )
    op.create_table('model_packages',
    sa.Column('id', sa.String(length=32), nullable=False),
    sa.Column('account_id', sa.String(length=12), nullable=False),
    sa.Column('region', sa.String(length=32), nullable=False),
    sa.Column('name', sa.String(length=63), nullable=False),
    sa.Column('arn', sa.String(length=2048), nullable=False),
    sa.Column('group_name', sa.String(length=63), nullable=True),
    sa.Column('version', sa.Integer(), nullable=True),
    sa.Column('approval_status', sa.String(length=32), nullable=True),
    sa.Column('spec', sa.JSON(), nullable=False),
    sa.Column('created_by', sa.JSON(), nullable=False),
    sa.Column('created_at', sa.Float(), nullable=False),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('arn')
    )
    op.create_index('ix_model_packages_account_region_name', 'model_packages', ['account_id', 'region', 'name'])


def downgrade():
    op.drop_index('ix_model_packages_account_region_name', table_name='model_packages')
    op.drop_table('model_packages')
    op.drop_table('model_package_groups')
