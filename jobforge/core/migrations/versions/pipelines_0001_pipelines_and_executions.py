"""pipelines: SageMaker pipelines, their definition versions, executions and execution steps

Revision ID: pipelines_0001
Revises: 0001
"""
from alembic import op
import sqlalchemy as sa

revision = 'pipelines_0001'
down_revision = '0001'
branch_labels = ('pipelines',)
depends_on = None


def upgrade():
    op.create_table('pipelines',
    sa.Column('id', sa.String(length=32), nullable=False),
    sa.Column('account_id', sa.String(length=12), nullable=False),
    sa.Column('region', sa.String(length=32), nullable=False),
    sa.Column('name', sa.String(length=256), nullable=False),
    sa.Column('arn', sa.String(length=2048), nullable=False),
    sa.Column('display_name', sa.String(length=256), nullable=True),
    sa.Column('description', sa.Text(), nullable=True),
    sa.Column('role_arn', sa.String(length=2048), nullable=False),
    sa.Column('parallelism', sa.JSON(), nullable=True),
    sa.Column('latest_version', sa.Integer(), nullable=False),
    sa.Column('created_by', sa.JSON(), nullable=False),
    sa.Column('last_modified_by', sa.JSON(), nullable=False),
    sa.Column('created_at', sa.Float(), nullable=False),
    sa.Column('updated_at', sa.Float(), nullable=False),
    sa.Column('last_run_at', sa.Float(), nullable=True),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('account_id', 'region', 'name', name='uq_pipelines_account_region_name'),
    sa.UniqueConstraint('arn')
    )
    op.create_table('pipeline_versions',
    sa.Column('pipeline_id', sa.String(length=32), nullable=False),
    sa.Column('version', sa.Integer(), nullable=False),
    sa.Column('definition', sa.Text(), nullable=False),
    sa.Column('created_at', sa.Float(), nullable=False),
    sa.PrimaryKeyConstraint('pipeline_id', 'version')
    )
    op.create_table('pipeline_executions',
    sa.Column('id', sa.String(length=32), nullable=False),
    sa.Column('account_id', sa.String(length=12), nullable=False),
    sa.Column('region', sa.String(length=32), nullable=False),
    sa.Column('pipeline_id', sa.String(length=32), nullable=False),
    sa.Column('execution_id', sa.String(length=16), nullable=False),
    sa.Column('arn', sa.String(length=2048), nullable=False),
    sa.Column('display_name', sa.String(length=82), nullable=True),
    sa.Column('description', sa.Text(), nullable=True),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('failure_reason', sa.Text(), nullable=True),
    sa.Column('version', sa.Integer(), nullable=False),
    sa.Column('parameters', sa.JSON(), nullable=False),
    sa.Column('role_arn', sa.String(length=2048), nullable=False),
    sa.Column('parallelism', sa.JSON(), nullable=True),
    sa.Column('created_by', sa.JSON(), nullable=False),
    sa.Column('created_at', sa.Float(), nullable=False),
    sa.Column('updated_at', sa.Float(), nullable=False),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('arn')
    )
    op.create_index('ix_pipeline_executions_pipeline_created', 'pipeline_executions', ['pipeline_id', 'created_at'])
    op.create_index('ix_pipeline_executions_status', 'pipeline_executions', ['status'])
    op.create_table('pipeline_execution_steps',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('execution_id', sa.String(length=32), nullable=False),
    sa.Column('name', sa.String(length=64), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('failure_reason', sa.Text(), nullable=True),
    sa.Column('state', sa.JSON(), nullable=False),
    sa.Column('metadata', sa.JSON(), nullable=False),
    sa.Column('outputs', sa.JSON(), nullable=True),
    sa.Column('started_at', sa.Float(), nullable=False),
    sa.Column('ended_at', sa.Float(), nullable=True),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('execution_id', 'name', name='uq_pipeline_execution_steps_execution_name')
    )


def downgrade():
    op.drop_table('pipeline_execution_steps')
    op.drop_index('ix_pipeline_executions_status', table_name='pipeline_executions')
    op.drop_index('ix_pipeline_executions_pipeline_created', table_name='pipeline_executions')
    op.drop_table('pipeline_executions')
    op.drop_table('pipeline_versions')
    op.drop_table('pipelines')
