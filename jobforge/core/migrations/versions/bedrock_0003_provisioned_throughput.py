"""bedrock: provisioned throughputs

Revision ID: bedrock_0003
Revises: bedrock_0002
"""
from alembic import op
import sqlalchemy as sa

revision = 'bedrock_0003'
down_revision = 'bedrock_0002'
branch_labels = None
depends_on = None


def upgrade():
    op.create_table('provisioned_models',
    sa.Column('id', sa.String(length=12), nullable=False),
    sa.Column('account_id', sa.String(length=12), nullable=False),
    sa.Column('name', sa.String(length=63), nullable=False),
    sa.Column('arn', sa.String(length=1011), nullable=False),
    sa.Column('model_arn', sa.String(length=1011), nullable=False),
    sa.Column('desired_model_arn', sa.String(length=1011), nullable=False),
    sa.Column('foundation_model_arn', sa.String(length=1011), nullable=False),
    sa.Column('model_units', sa.Integer(), nullable=False),
    sa.Column('desired_model_units', sa.Integer(), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('failure_message', sa.Text(), nullable=True),
    sa.Column('commitment_duration', sa.String(length=16), nullable=True),
    sa.Column('commitment_expires_at', sa.Float(), nullable=True),
    sa.Column('created_at', sa.Float(), nullable=False),
    sa.Column('updated_at', sa.Float(), nullable=False),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('arn'),
    sa.UniqueConstraint('account_id', 'name', name='uq_provisioned_models_account_name')
    )


def downgrade():
    op.drop_table('provisioned_models')
