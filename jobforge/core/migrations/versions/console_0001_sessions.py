"""console: one-time sign-in tokens and sessions

Revision ID: console_0001
Revises: 0001
"""
from alembic import op
import sqlalchemy as sa

revision = 'console_0001'
down_revision = '0001'
branch_labels = ('console',)
depends_on = None


def upgrade():
    op.create_table('console_signin_tokens',
    sa.Column('token_hash', sa.String(length=64), nullable=False),
    sa.Column('access_key_id', sa.String(length=32), nullable=False),
    sa.Column('expires_at', sa.Float(), nullable=False),
    sa.PrimaryKeyConstraint('token_hash')
    )
    op.create_table('console_sessions',
    sa.Column('session_hash', sa.String(length=64), nullable=False),
    sa.Column('access_key_id', sa.String(length=32), nullable=False),
    sa.Column('account_id', sa.String(length=12), nullable=False),
    sa.Column('principal_arn', sa.String(length=2048), nullable=False),
    sa.Column('csrf_token', sa.String(length=64), nullable=False),
    sa.Column('expires_at', sa.Float(), nullable=False),
    sa.Column('created_at', sa.Float(), nullable=False),
    sa.PrimaryKeyConstraint('session_hash')
    )


def downgrade():
    op.drop_table('console_sessions')
    op.drop_table('console_signin_tokens')
