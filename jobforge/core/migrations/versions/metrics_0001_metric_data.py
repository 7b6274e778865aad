"""metrics: CloudWatch metric data, one statistic set per metric, unit and minute

Revision ID: metrics_0001
Revises: 0001
"""
from alembic import op
import sqlalchemy as sa

revision = 'metrics_0001'
down_revision = '0001'
branch_labels = ('metrics',)
depends_on = None


def upgrade():
    op.create_table('metric_data',
    sa.Column('account_id', sa.String(length=12), nullable=False),
    sa.Column('region', sa.String(length=32), nullable=False),
    sa.Column('namespace', sa.String(length=255), nullable=False),
    sa.Column('metric_name', sa.String(length=255), nullable=False),
    sa.Column('series', sa.String(length=64), nullable=False),
    sa.Column('unit', sa.String(length=32), nullable=False),
    sa.Column('minute', sa.BigInteger(), nullable=False),
    sa.Column('dimensions', sa.Text(), nullable=False),
    sa.Column('sample_count', sa.Float(), nullable=False),
    sa.Column('total', sa.Float(), nullable=False),
    sa.Column('minimum', sa.Float(), nullable=False),
    sa.Column('maximum', sa.Float(), nullable=False),
    sa.PrimaryKeyConstraint('account_id', 'region', 'namespace', 'metric_name', 'series', 'unit', 'minute')
    )


def downgrade():
    op.drop_table('metric_data')
