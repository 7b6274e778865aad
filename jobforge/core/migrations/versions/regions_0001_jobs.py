"""jobs belong to the region of the request that created them; a name is unique per account, region and kind

Revision ID: regions_0001
Revises: 0001
"""
from alembic import op
import sqlalchemy as sa

revision = 'regions_0001'
down_revision = '0001'
branch_labels = ('regions',)
depends_on = 'execution_0001'  # both rebuild the jobs table on SQLite; one order for every database
DEFAULT_REGION = 'us-east-1'  # a job whose ARN names none was made where the server's default region is


def upgrade():
    with op.batch_alter_table('jobs') as batch:
        batch.add_column(sa.Column('region', sa.String(32), nullable=True))
    jobs = sa.table('jobs', sa.column('id', sa.String), sa.column('arn', sa.String), sa.column('region', sa.String))
    conn = op.get_bind()
    # Every kind's ARN names the region it was made in: arn:aws:<service>:<region>:<account>:...
    for job_id, arn in conn.execute(sa.select(jobs.c.id, jobs.c.arn)).all():
        fields = arn.split(":")
        region = fields[3] if len(fields) > 4 and fields[3] else DEFAULT_REGION
        conn.execute(jobs.update().where(jobs.c.id == job_id).values(region=region))
    with op.batch_alter_table('jobs') as batch:
        batch.alter_column('region', existing_type=sa.String(32), nullable=False)
        batch.drop_constraint('uq_jobs_account_family_name', type_='unique')
        batch.create_unique_constraint('uq_jobs_account_region_family_name',
                                       ['account_id', 'region', 'family', 'name'])
        batch.drop_index('ix_jobs_account_family_created')
        batch.create_index('ix_jobs_account_region_family_created',
                           ['account_id', 'region', 'family', 'created_at'])


def downgrade():
    with op.batch_alter_table('jobs') as batch:
        batch.drop_index('ix_jobs_account_region_family_created')
        batch.create_index('ix_jobs_account_family_created', ['account_id', 'family', 'created_at'])
        batch.drop_constraint('uq_jobs_account_region_family_name', type_='unique')
        batch.create_unique_constraint('uq_jobs_account_family_name', ['account_id', 'family', 'name'])
        batch.drop_column('region')
