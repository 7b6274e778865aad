"""braket quantum tasks

Revision ID: 0003_braket
Revises: 0001
"""
from alembic import op
import sqlalchemy as sa

revision = '0003_braket'
down_revision = '0001'
branch_labels = ('braket',)
depends_on = None


def upgrade():
    op.create_table('braket_quantum_tasks',
    sa.Column('id', sa.String(length=64), nullable=False),
    sa.Column('arn', sa.String(length=2048), nullable=False),
    sa.Column('account_id', sa.String(length=12), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('device_arn', sa.String(length=256), nullable=False),
    sa.Column('shots', sa.BigInteger(), nullable=False),
    sa.Column('action', sa.Text(), nullable=False),
    sa.Column('action_type', sa.String(length=256), nullable=False),
    sa.Column('device_parameters', sa.Text(), nullable=True),
    sa.Column('output_bucket', sa.String(length=256), nullable=False),
    sa.Column('output_prefix', sa.String(length=1024), nullable=False),
    sa.Column('output_directory', sa.String(length=1100), nullable=False),
    sa.Column('job_arn', sa.String(length=2048), nullable=True),
    sa.Column('failure_reason', sa.Text(), nullable=True),
    sa.Column('extra', sa.JSON(), nullable=False),
    sa.Column('created_at', sa.Float(), nullable=False),
    sa.Column('started_at', sa.Float(), nullable=True),
    sa.Column('ended_at', sa.Float(), nullable=True),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('arn')
    )
    with op.batch_alter_table('braket_quantum_tasks', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_braket_quantum_tasks_status'), ['status'], unique=False)
        batch_op.create_index(batch_op.f('ix_braket_quantum_tasks_job_arn'), ['job_arn'], unique=False)
        batch_op.create_index('ix_braket_quantum_tasks_account_created', ['account_id', 'created_at'],
                              unique=False)


def downgrade():
    op.drop_table('braket_quantum_tasks')
