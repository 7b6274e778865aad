"""bucket settings: CORS, policy and lifecycle documents of S3 buckets

Revision ID: bucket_settings_0001
Revises: 0001
"""
from alembic import op
import sqlalchemy as sa

revision = 'bucket_settings_0001'
down_revision = '0001'
branch_labels = ('bucket_settings',)
depends_on = None


def upgrade():
    op.create_table('s3_bucket_settings',
    sa.Column('bucket', sa.String(length=63), nullable=False),
    sa.Column('kind', sa.String(length=16), nullable=False),
    sa.Column('bucket_created_at', sa.Float(), nullable=False),
    sa.Column('document', sa.JSON(), nullable=False),
    sa.Column('updated_at', sa.Float(), nullable=False),
    sa.PrimaryKeyConstraint('bucket', 'kind')
    )


def downgrade():
    op.drop_table('s3_bucket_settings')
