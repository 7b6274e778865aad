"""lambda: functions and their queued Event invocations

Revision ID: lambda_0001
Revises: 0001
"""
from alembic import op
import sqlalchemy as sa

revision = 'lambda_0001'
down_revision = '0001'
branch_labels = ('lambda',)
depends_on = None


def upgrade():
    op.create_table('lambda_functions',
    sa.Column('id', sa.String(length=32), nullable=False),
    sa.Column('account_id', sa.String(length=12), nullable=False),
    sa.Column('region', sa.String(length=32), nullable=False),
    sa.Column('name', sa.String(length=64), nullable=False),
    sa.Column('arn', sa.String(length=2048), nullable=False),
    sa.Column('runtime', sa.String(length=32), nullable=False),
    sa.Column('role', sa.String(length=2048), nullable=False),
    sa.Column('handler', sa.String(length=128), nullable=False),
    sa.Column('description', sa.String(length=256), nullable=False),
    sa.Column('timeout', sa.Integer(), nullable=False),
    sa.Column('memory_size', sa.Integer(), nullable=False),
    sa.Column('ephemeral_storage', sa.Integer(), nullable=False),
    sa.Column('environment', sa.JSON(), nullable=False),
    sa.Column('architectures', sa.JSON(), nullable=False),
    sa.Column('code_file', sa.String(length=1024), nullable=False),
    sa.Column('code_sha256', sa.String(length=64), nullable=False),
    sa.Column('code_size', sa.BigInteger(), nullable=False),
    sa.Column('reserved_concurrency', sa.Integer(), nullable=True),
    sa.Column('state', sa.String(length=16), nullable=False),
    sa.Column('state_reason', sa.Text(), nullable=True),
    sa.Column('state_reason_code', sa.String(length=64), nullable=True),
    sa.Column('last_update_status', sa.String(length=16), nullable=True),
    sa.Column('last_update_reason', sa.Text(), nullable=True),
    sa.Column('last_update_reason_code', sa.String(length=64), nullable=True),
    sa.Column('revision_id', sa.String(length=36), nullable=False),
    sa.Column('last_modified', sa.Float(), nullable=False),
    sa.Column('created_at', sa.Float(), nullable=False),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('arn'),
    sa.UniqueConstraint('account_id', 'region', 'name', name='uq_lambda_functions_account_region_name')
    )
    op.create_table('lambda_events',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('function_id', sa.String(length=32), nullable=False),
    sa.Column('request_id', sa.String(length=36), nullable=False),
    sa.Column('payload', sa.LargeBinary(), nullable=False),
    sa.Column('created_at', sa.Float(), nullable=False),
    sa.PrimaryKeyConstraint('id')
    )
    op.create_index('ix_lambda_events_function_id', 'lambda_events', ['function_id'])


def downgrade():
    op.drop_index('ix_lambda_events_function_id', table_name='lambda_events')
    op.drop_table('lambda_events')
    op.drop_table('lambda_functions')
