"""bedrock: model-invocation logging configuration per account

Revision ID: bedrock_0002
Revises: bedrock_0001
"""
from alembic import op
import sqlalchemy as sa

revision = 'bedrock_0002'
down_revision = 'bedrock_0001'
branch_labels = None
depends_on = None


def upgrade():
    op.create_table('invocation_logging',
    sa.Column('account_id', sa.String(length=12), nullable=False),
    sa.Column('config', sa.JSON(), nullable=False),
    sa.Column('updated_at', sa.Float(), nullable=False),
    sa.PrimaryKeyConstraint('account_id')
    )


def downgrade():
    op.drop_table('invocation_logging')
