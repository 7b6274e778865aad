"""bedrock: foundation-model catalog, custom models, custom-model deployments

Revision ID: bedrock_0001
Revises: 0001
"""
from alembic import op
import sqlalchemy as sa

revision = 'bedrock_0001'
down_revision = '0001'
branch_labels = ('bedrock',)
depends_on = None


def upgrade():
    op.create_table('foundation_models',
    sa.Column('model_id', sa.String(length=140), nullable=False),
    sa.Column('location', sa.Text(), nullable=False),
    sa.Column('model_name', sa.String(length=20), nullable=False),
    sa.Column('provider_name', sa.String(length=20), nullable=False),
    sa.Column('created_at', sa.Float(), nullable=False),
    sa.Column('updated_at', sa.Float(), nullable=False),
    sa.PrimaryKeyConstraint('model_id')
    )
    op.create_table('custom_models',
    sa.Column('id', sa.String(length=12), nullable=False),
    sa.Column('account_id', sa.String(length=12), nullable=False),
    sa.Column('name', sa.String(length=63), nullable=False),
    sa.Column('arn', sa.String(length=1011), nullable=False),
    sa.Column('base_model_id', sa.String(length=140), nullable=True),
    sa.Column('job_id', sa.String(length=64), nullable=True),
    sa.Column('customization_type', sa.String(length=32), nullable=False),
    sa.Column('location', sa.Text(), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('failure_message', sa.Text(), nullable=True),
    sa.Column('details', sa.JSON(), nullable=False),
    sa.Column('created_at', sa.Float(), nullable=False),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('arn'),
    sa.UniqueConstraint('job_id'),
    sa.UniqueConstraint('account_id', 'name', name='uq_custom_models_account_name')
    )
    op.create_table('model_deployments',
    sa.Column('id', sa.String(length=12), nullable=False),
    sa.Column('account_id', sa.String(length=12), nullable=False),
    sa.Column('name', sa.String(length=63), nullable=False),
    sa.Column('arn', sa.String(length=1011), nullable=False),
    sa.Column('model_arn', sa.String(length=1011), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('description', sa.Text(), nullable=True),
    sa.Column('failure_message', sa.Text(), nullable=True),
    sa.Column('created_at', sa.Float(), nullable=False),
    sa.Column('updated_at', sa.Float(), nullable=False),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('arn'),
    sa.UniqueConstraint('account_id', 'name', name='uq_model_deployments_account_name')
    )


def downgrade():
    op.drop_table('model_deployments')
    op.drop_table('custom_models')
    op.drop_table('foundation_models')
