"""logs: stored log groups, streams and events (sources other than jobs)

Revision ID: logs_0002
Revises: 0003_log_queries
"""
from alembic import op
import sqlalchemy as sa

revision = 'logs_0002'
down_revision = '0003_log_queries'
branch_labels = None
depends_on = None


def upgrade():
    op.create_table('log_groups',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('account_id', sa.String(length=12), nullable=False),
    sa.Column('region', sa.String(length=32), nullable=False),
    sa.Column('name', sa.String(length=512), nullable=False),
    sa.Column('created_at', sa.Float(), nullable=False),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('account_id', 'region', 'name', name='uq_log_groups_account_region_name')
    )
    op.create_table('log_streams',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('group_id', sa.Integer(), nullable=False),
    sa.Column('name', sa.String(length=512), nullable=False),
    sa.Column('created_at', sa.Float(), nullable=False),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('group_id', 'name', name='uq_log_streams_group_name')
    )
    op.create_table('log_events',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('stream_id', sa.Integer(), nullable=False),
    sa.Column('timestamp', sa.Float(), nullable=False),
    sa.Column('message', sa.Text(), nullable=False),
    sa.PrimaryKeyConstraint('id')
    )
    op.create_index('ix_log_events_stream_id', 'log_events', ['stream_id', 'id'])


def downgrade():
    op.drop_index('ix_log_events_stream_id', table_name='log_events')
    op.drop_table('log_events')
    op.drop_table('log_streams')
    op.drop_table('log_groups')
