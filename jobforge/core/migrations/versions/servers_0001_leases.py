"""servers: each server's lease, and the server that owns each process credential, Event invocation,
quantum task, endpoint and agent session

Revision ID: servers_0001
Revises: lambda_0001, braket_0002, hosting_0001, agentcore_0001
"""
from alembic import op
import sqlalchemy as sa

revision = 'servers_0001'
# A merge of the branches whose tables gain a server_id (not depends_on: with several branches from 0001,
# Alembic's bookkeeping of depends_on loses track of the base revision and fails the upgrade on a fresh database).
down_revision = ('lambda_0001', 'braket_0002', 'hosting_0001', 'agentcore_0001')
branch_labels = ('servers',)
depends_on = None

OWNED = ('access_keys', 'lambda_events', 'braket_quantum_tasks', 'endpoints')  # each gains a server_id


def upgrade():
    op.create_table('server_leases',
    sa.Column('server_id', sa.String(length=32), nullable=False),
    sa.Column('url', sa.String(length=2048), nullable=False),
    sa.Column('expires_at', sa.Float(), nullable=False),
    sa.PrimaryKeyConstraint('server_id')
    )
    op.create_table('agent_sessions',
    sa.Column('runtime', sa.String(length=32), nullable=False),
    sa.Column('session_id', sa.String(length=256), nullable=False),
    sa.Column('server_id', sa.String(length=32), nullable=False),
    sa.Column('created_at', sa.Float(), nullable=False),
    sa.PrimaryKeyConstraint('runtime', 'session_id')
    )
    op.create_index('ix_agent_sessions_server_id', 'agent_sessions', ['server_id'])
    for table in OWNED:
        with op.batch_alter_table(table) as batch:
            batch.add_column(sa.Column('server_id', sa.String(length=32), nullable=True))
            batch.create_index(f'ix_{table}_server_id', ['server_id'])


def downgrade():
    for table in OWNED:
        with op.batch_alter_table(table) as batch:
            batch.drop_index(f'ix_{table}_server_id')
            batch.drop_column('server_id')
    op.drop_index('ix_agent_sessions_server_id', table_name='agent_sessions')
    op.drop_table('agent_sessions')
    op.drop_table('server_leases')
