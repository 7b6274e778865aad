"""object store tables

Revision ID: 0002_s3
Revises: 0001
"""
from alembic import op
import sqlalchemy as sa

revision = "0002_s3"
down_revision = "0001"
branch_labels = ('s3',)
depends_on = None

KEY = sa.String(1024).with_variant(sa.String(1024, collation="C"), "postgresql")


def upgrade():
    op.create_table(
        "s3_buckets",
        sa.Column("name", sa.String(63), primary_key=True),
        sa.Column("account_id", sa.String(12), nullable=False),
        sa.Column("region", sa.String(32), nullable=False),
        sa.Column("tags", sa.JSON, nullable=False),
        sa.Column("created_at", sa.Float, nullable=False),
    )
    op.create_index("ix_s3_buckets_account_id", "s3_buckets", ["account_id"])
    op.create_table(
        "s3_objects",
        sa.Column("bucket", sa.String(63), primary_key=True),
        sa.Column("key", KEY, primary_key=True),
        sa.Column("size", sa.BigInteger, nullable=False),
        sa.Column("etag", sa.String(64), nullable=False),
        sa.Column("segments", sa.JSON, nullable=False),
        sa.Column("headers", sa.JSON, nullable=False),
        sa.Column("user_metadata", sa.JSON, nullable=False),
        sa.Column("checksum", sa.JSON),
        sa.Column("tags", sa.JSON, nullable=False),
        sa.Column("last_modified", sa.Float, nullable=False),
    )
    op.create_table(
        "s3_uploads",
        sa.Column("upload_id", sa.String(64), primary_key=True),
        sa.Column("bucket", sa.String(63), nullable=False),
        sa.Column("key", KEY, nullable=False),
        sa.Column("headers", sa.JSON, nullable=False),
        sa.Column("user_metadata", sa.JSON, nullable=False),
        sa.Column("tags", sa.JSON, nullable=False),
        sa.Column("checksum_algorithm", sa.String(16)),
        sa.Column("checksum_type", sa.String(16)),
        sa.Column("initiator", sa.String(2048), nullable=False),
        sa.Column("initiated", sa.Float, nullable=False),
    )
    op.create_index("ix_s3_uploads_bucket_key", "s3_uploads", ["bucket", "key"])
    op.create_table(
        "s3_parts",
        sa.Column("upload_id", sa.String(64), primary_key=True),
        sa.Column("part_number", sa.Integer, primary_key=True),
        sa.Column("blob", sa.String(64), nullable=False),
        sa.Column("size", sa.BigInteger, nullable=False),
        sa.Column("etag", sa.String(64), nullable=False),
        sa.Column("checksums", sa.JSON, nullable=False),
        sa.Column("last_modified", sa.Float, nullable=False),
    )


def downgrade():
    op.drop_table("s3_parts")
    op.drop_index("ix_s3_uploads_bucket_key", "s3_uploads")
    op.drop_table("s3_uploads")
    op.drop_table("s3_objects")
    op.drop_index("ix_s3_buckets_account_id", "s3_buckets")
    op.drop_table("s3_buckets")
