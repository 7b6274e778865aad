"""IAM managed policies with their versions, inline role policies and attachments

Revision ID: iam_0002_policies
Revises: 0004_roles_ci
"""
from alembic import op
import sqlalchemy as sa

revision = 'iam_0002_policies'
down_revision = '0004_roles_ci'
branch_labels = None
depends_on = None


def upgrade():
    op.create_table('managed_policies',
    sa.Column('arn', sa.String(length=2048), nullable=False),
    sa.Column('account_id', sa.String(length=12), nullable=False),
    sa.Column('policy_name', sa.String(length=128), nullable=False),
    sa.Column('policy_id', sa.String(length=32), nullable=False),
    sa.Column('path', sa.String(length=512), nullable=False),
    sa.Column('description', sa.String(length=1000), nullable=True),
    sa.Column('default_version', sa.String(length=16), nullable=False),
    sa.Column('next_version', sa.Integer(), nullable=False),
    sa.Column('created_at', sa.Float(), nullable=False),
    sa.Column('updated_at', sa.Float(), nullable=False),
    sa.PrimaryKeyConstraint('arn')
    )
    op.create_index('uq_managed_policies_account_lower_name', 'managed_policies',
                    ['account_id', sa.text('lower(policy_name)')], unique=True)
    op.create_table('policy_versions',
    sa.Column('policy_arn', sa.String(length=2048), nullable=False),
    sa.Column('version_id', sa.String(length=16), nullable=False),
    sa.Column('document', sa.Text(), nullable=False),
    sa.Column('created_at', sa.Float(), nullable=False),
    sa.PrimaryKeyConstraint('policy_arn', 'version_id')
    )
    op.create_table('role_policies',
    sa.Column('role_id', sa.String(length=32), nullable=False),
    sa.Column('policy_name', sa.String(length=128), nullable=False),
    sa.Column('document', sa.Text(), nullable=False),
    sa.PrimaryKeyConstraint('role_id', 'policy_name')
    )
    op.create_table('role_policy_attachments',
    sa.Column('role_id', sa.String(length=32), nullable=False),
    sa.Column('policy_arn', sa.String(length=2048), nullable=False),
    sa.Column('account_id', sa.String(length=12), nullable=False),
    sa.Column('attached_at', sa.Float(), nullable=False),
    sa.PrimaryKeyConstraint('role_id', 'policy_arn')
    )
    op.create_index('ix_role_policy_attachments_account_id', 'role_policy_attachments', ['account_id'])
    # The default roles of accounts made before policies existed get the policy new ones are made with.
    for path, name in (('/', 'JobforgeExecutionRole'), ('/service-role/', 'AmazonBraketJobsExecutionRole')):
        op.get_bind().execute(sa.text(
            'INSERT INTO role_policy_attachments (role_id, policy_arn, account_id, attached_at) '
            'SELECT role_id, :arn, account_id, created_at FROM roles WHERE role_name = :name AND path = :path'),
            {'arn': 'arn:aws:iam::aws:policy/AdministratorAccess', 'name': name, 'path': path})


def downgrade():
    op.drop_index('ix_role_policy_attachments_account_id', table_name='role_policy_attachments')
    op.drop_table('role_policy_attachments')
    op.drop_table('role_policies')
    op.drop_table('policy_versions')
    op.drop_index('uq_managed_policies_account_lower_name', table_name='managed_policies')
    op.drop_table('managed_policies')
