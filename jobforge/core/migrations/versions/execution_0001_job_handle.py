"""jobs record the executor's opaque handle of their running attempt, not a local pid

Revision ID: execution_0001
Revises: 0001
"""
from alembic import op
import sqlalchemy as sa

revision = 'execution_0001'
down_revision = '0001'
branch_labels = ('execution',)
depends_on = None


def upgrade():
    with op.batch_alter_table('jobs') as batch:
        batch.add_column(sa.Column('handle', sa.String(256), nullable=True))
    # A pid recorded by an older server is a handle of the local executor without a start time.
    op.execute("UPDATE jobs SET handle = 'local:' || CAST(pid AS VARCHAR) WHERE pid IS NOT NULL")
    with op.batch_alter_table('jobs') as batch:
        batch.drop_column('pid')


def downgrade():
    with op.batch_alter_table('jobs') as batch:
        batch.add_column(sa.Column('pid', sa.Integer(), nullable=True))
    with op.batch_alter_table('jobs') as batch:
        batch.drop_column('handle')
