"""log queries (CloudWatch Logs Insights)

Revision ID: 0003_log_queries
Revises: 0001
"""
from alembic import op
import sqlalchemy as sa

revision = '0003_log_queries'
down_revision = '0001'
branch_labels = ('logs',)
depends_on = None


def upgrade():
    op.create_table('log_queries',
    sa.Column('query_id', sa.String(length=64), nullable=False),
    sa.Column('account_id', sa.String(length=12), nullable=False),
    sa.Column('spec', sa.JSON(), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('created_at', sa.Float(), nullable=False),
    sa.PrimaryKeyConstraint('query_id')
    )


def downgrade():
    op.drop_table('log_queries')
