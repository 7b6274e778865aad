"""mlflow: SageMaker MLflow Apps and their presigned URLs and browser sessions

Revision ID: mlflow_0001
Revises: 0001
"""
from alembic import op
import sqlalchemy as sa

revision = 'mlflow_0001'
down_revision = '0001'
branch_labels = ('mlflow',)
depends_on = None


def upgrade():
    op.create_table('mlflow_apps',
    sa.Column('id', sa.String(length=32), nullable=False),
    sa.Column('account_id', sa.String(length=12), nullable=False),
    sa.Column('region', sa.String(length=32), nullable=False),
    sa.Column('name', sa.String(length=256), nullable=False),
    sa.Column('arn', sa.String(length=2048), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('spec', sa.JSON(), nullable=False),
    sa.Column('account_default_status', sa.String(length=8), nullable=False),
    sa.Column('default_domains', sa.Text(), nullable=False),
    sa.Column('created_by', sa.JSON(), nullable=False),
    sa.Column('last_modified_by', sa.JSON(), nullable=False),
    sa.Column('created_at', sa.Float(), nullable=False),
    sa.Column('updated_at', sa.Float(), nullable=False),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('arn')
    )
    op.create_index('ix_mlflow_apps_account_region', 'mlflow_apps', ['account_id', 'region'])
    op.create_table('mlflow_app_tokens',
    sa.Column('token_hash', sa.String(length=64), nullable=False),
    sa.Column('kind', sa.String(length=8), nullable=False),
    sa.Column('app_id', sa.String(length=32), nullable=False),
    sa.Column('session_seconds', sa.Integer(), nullable=True),
    sa.Column('expires_at', sa.Float(), nullable=False),
    sa.PrimaryKeyConstraint('token_hash')
    )
    op.create_index(op.f('ix_mlflow_app_tokens_app_id'), 'mlflow_app_tokens', ['app_id'])


def downgrade():
    op.drop_index(op.f('ix_mlflow_app_tokens_app_id'), table_name='mlflow_app_tokens')
    op.drop_table('mlflow_app_tokens')
    op.drop_index('ix_mlflow_apps_account_region', table_name='mlflow_apps')
    op.drop_table('mlflow_apps')
