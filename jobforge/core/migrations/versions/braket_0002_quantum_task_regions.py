"""braket: a quantum task belongs to the region of the request that created it

Revision ID: braket_0002
Revises: 0003_braket
"""
from alembic import op
import sqlalchemy as sa

revision = 'braket_0002'
down_revision = '0003_braket'
branch_labels = None
depends_on = None
DEFAULT_REGION = 'us-east-1'  # where a task whose ARN names no region was made: the server's default region


def _region(arn: str) -> str:
    """The fourth field of arn:aws:braket:<region>:<account>:quantum-task/<id>"""
    fields = arn.split(":")
    return fields[3] if len(fields) > 4 and fields[3] else DEFAULT_REGION


def upgrade():
    with op.batch_alter_table('braket_quantum_tasks') as batch:
        batch.add_column(sa.Column('region', sa.String(32), nullable=True))
    tasks = sa.table('braket_quantum_tasks', sa.column('id', sa.String), sa.column('arn', sa.String),
                     sa.column('region', sa.String))
    conn = op.get_bind()
    rows = [{'task_id': task_id, 'task_region': _region(arn)}
            for task_id, arn in conn.execute(sa.select(tasks.c.id, tasks.c.arn)).all()]
    if rows:
        conn.execute(tasks.update().where(tasks.c.id == sa.bindparam('task_id'))
                     .values(region=sa.bindparam('task_region')), rows)
    with op.batch_alter_table('braket_quantum_tasks') as batch:
        batch.alter_column('region', existing_type=sa.String(32), nullable=False)
        batch.drop_index('ix_braket_quantum_tasks_account_created')
        batch.create_index('ix_braket_quantum_tasks_account_region_created', ['account_id', 'region', 'created_at'])


def downgrade():
    with op.batch_alter_table('braket_quantum_tasks') as batch:
        batch.drop_index('ix_braket_quantum_tasks_account_region_created')
        batch.create_index('ix_braket_quantum_tasks_account_created', ['account_id', 'created_at'])
        batch.drop_column('region')
