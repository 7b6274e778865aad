"""lambda: functions of PackageType Image (their image URI, the image it resolved to, their ImageConfig)

Revision ID: lambda_0002
Revises: lambda_0001
"""
from alembic import op
import sqlalchemy as sa

revision = 'lambda_0002'
down_revision = 'lambda_0001'
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('lambda_functions') as batch:
        batch.add_column(sa.Column('package_type', sa.String(length=8), nullable=False, server_default='Zip'))
        batch.add_column(sa.Column('image_uri', sa.String(length=1024), nullable=True))
        batch.add_column(sa.Column('resolved_image_uri', sa.String(length=1024), nullable=True))
        batch.add_column(sa.Column('image_id', sa.String(length=128), nullable=True))
        batch.add_column(sa.Column('image_config', sa.JSON(), nullable=True))


def downgrade():
    with op.batch_alter_table('lambda_functions') as batch:
        for column in ('image_config', 'image_id', 'resolved_image_uri', 'image_uri', 'package_type'):
            batch.drop_column(column)
