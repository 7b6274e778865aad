"""agentcore: agent runtimes, their versions and endpoints

Revision ID: agentcore_0001
Revises: 0001
"""
from alembic import op
import sqlalchemy as sa

revision = 'agentcore_0001'
down_revision = '0001'
branch_labels = ('agentcore',)
depends_on = None


def upgrade():
    op.create_table('agent_runtimes',
    sa.Column('id', sa.String(length=32), nullable=False),
    sa.Column('account_id', sa.String(length=12), nullable=False),
    sa.Column('region', sa.String(length=32), nullable=False),
    sa.Column('name', sa.String(length=48), nullable=False),
    sa.Column('runtime_id', sa.String(length=64), nullable=False),
    sa.Column('arn', sa.String(length=2048), nullable=False),
    sa.Column('latest_version', sa.Integer(), nullable=False),
    sa.Column('created_at', sa.Float(), nullable=False),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('arn'),
    sa.UniqueConstraint('account_id', 'region', 'name', name='uq_agent_runtimes_account_region_name'),
    sa.UniqueConstraint('account_id', 'region', 'runtime_id', name='uq_agent_runtimes_account_region_id')
    )
    op.create_table('agent_runtime_versions',
    sa.Column('runtime', sa.String(length=32), nullable=False),
    sa.Column('version', sa.Integer(), nullable=False),
    sa.Column('config', sa.JSON(), nullable=False),
    sa.Column('code_file', sa.String(length=1024), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('failure_reason', sa.Text(), nullable=True),
    sa.Column('created_at', sa.Float(), nullable=False),
    sa.Column('updated_at', sa.Float(), nullable=False),
    sa.PrimaryKeyConstraint('runtime', 'version')
    )
    op.create_table('agent_runtime_endpoints',
    sa.Column('runtime', sa.String(length=32), nullable=False),
    sa.Column('name', sa.String(length=48), nullable=False),
    sa.Column('endpoint_id', sa.String(length=64), nullable=False),
    sa.Column('live_version', sa.Integer(), nullable=True),
    sa.Column('target_version', sa.Integer(), nullable=False),
    sa.Column('follows_latest', sa.Boolean(), nullable=False),
    sa.Column('description', sa.String(length=256), nullable=True),
    sa.Column('created_at', sa.Float(), nullable=False),
    sa.Column('updated_at', sa.Float(), nullable=False),
    sa.PrimaryKeyConstraint('runtime', 'name')
    )


def downgrade():
    op.drop_table('agent_runtime_endpoints')
    op.drop_table('agent_runtime_versions')
    op.drop_table('agent_runtimes')
