"""logs: a Logs Insights query belongs to the region of the request that started it

Revision ID: logs_0003
Revises: logs_0002
"""
from alembic import op
import sqlalchemy as sa

revision = 'logs_0003'
down_revision = 'logs_0002'
branch_labels = None
depends_on = None
DEFAULT_REGION = 'us-east-1'  # a query has no ARN: those started before regions count as the default region's


def upgrade():
    with op.batch_alter_table('log_queries') as batch:
        batch.add_column(sa.Column('region', sa.String(32), nullable=False, server_default=DEFAULT_REGION))
    with op.batch_alter_table('log_queries') as batch:
        batch.alter_column('region', existing_type=sa.String(32), server_default=None)


def downgrade():
    with op.batch_alter_table('log_queries') as batch:
        batch.drop_column('region')
