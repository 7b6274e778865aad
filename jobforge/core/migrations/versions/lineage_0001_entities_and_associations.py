"""lineage: SageMaker lineage artifacts, actions and contexts, and the associations between them

Revision ID: lineage_0001
Revises: 0001
"""
from alembic import op
import sqlalchemy as sa

revision = 'lineage_0001'
down_revision = '0001'
branch_labels = ('lineage',)
depends_on = None


def upgrade():
    op.create_table('lineage_entities',
    sa.Column('id', sa.String(length=32), nullable=False),
    sa.Column('account_id', sa.String(length=12), nullable=False),
    sa.Column('region', sa.String(length=32), nullable=False),
    sa.Column('kind', sa.String(length=16), nullable=False),
    sa.Column('name', sa.String(length=120), nullable=True),
    sa.Column('arn', sa.String(length=256), nullable=False),
    sa.Column('entity_type', sa.String(length=256), nullable=False),
    sa.Column('source_uri', sa.String(length=2048), nullable=False),
    sa.Column('source', sa.JSON(), nullable=False),
    sa.Column('description', sa.Text(), nullable=True),
    sa.Column('status', sa.String(length=16), nullable=True),
    sa.Column('properties', sa.JSON(), nullable=False),
    sa.Column('metadata_properties', sa.JSON(), nullable=True),
    sa.Column('created_by', sa.JSON(), nullable=False),
    sa.Column('created_at', sa.Float(), nullable=False),
    sa.Column('updated_at', sa.Float(), nullable=False),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('arn')
    )
    op.create_index('ix_lineage_entities_account_region_kind_created', 'lineage_entities',
                    ['account_id', 'region', 'kind', 'created_at'])
    op.create_table('lineage_associations',
    sa.Column('id', sa.String(length=32), nullable=False),
    sa.Column('account_id', sa.String(length=12), nullable=False),
    sa.Column('region', sa.String(length=32), nullable=False),
    sa.Column('source_arn', sa.String(length=256), nullable=False),
    sa.Column('destination_arn', sa.String(length=256), nullable=False),
    sa.Column('association_type', sa.String(length=32), nullable=True),
    sa.Column('created_by', sa.JSON(), nullable=False),
    sa.Column('created_at', sa.Float(), nullable=False),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('source_arn', 'destination_arn', name='uq_lineage_associations_source_destination')
    )
    op.create_index('ix_lineage_associations_account_region_created', 'lineage_associations',
                    ['account_id', 'region', 'created_at'])


def downgrade():
    op.drop_index('ix_lineage_associations_account_region_created', table_name='lineage_associations')
    op.drop_table('lineage_associations')
    op.drop_index('ix_lineage_entities_account_region_kind_created', table_name='lineage_entities')
    op.drop_table('lineage_entities')
