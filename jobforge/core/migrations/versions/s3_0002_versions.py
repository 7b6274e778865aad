"""s3: object versions (every object becomes its key's "null" version), bucket versioning, completed uploads

Revision ID: s3_0002_versions
Revises: 0002_s3
"""
from alembic import op
import sqlalchemy as sa

revision = 's3_0002_versions'
down_revision = '0002_s3'
branch_labels = None
depends_on = None

KEY = sa.String(1024).with_variant(sa.String(1024, collation="C"), "postgresql")
OBJECT_COLUMNS = ("bucket", "key", "size", "etag", "segments", "headers", "user_metadata", "checksum", "tags",
                  "last_modified")


def upgrade():
    op.add_column("s3_buckets", sa.Column("versioning", sa.String(16)))
    # The primary key gains the version id: the table is rebuilt (SQLite cannot alter a primary key).
    op.create_table(
        "s3_object_versions",
        sa.Column("bucket", sa.String(63), nullable=False),
        sa.Column("key", KEY, nullable=False),
        sa.Column("version_id", sa.String(64), nullable=False),
        sa.Column("sequence", sa.Integer, nullable=False),
        sa.Column("is_latest", sa.Boolean, nullable=False),
        sa.Column("delete_marker", sa.Boolean, nullable=False),
        sa.Column("size", sa.BigInteger, nullable=False),
        sa.Column("etag", sa.String(64), nullable=False),
        sa.Column("segments", sa.JSON, nullable=False),
        sa.Column("headers", sa.JSON, nullable=False),
        sa.Column("user_metadata", sa.JSON, nullable=False),
        sa.Column("checksum", sa.JSON),
        sa.Column("tags", sa.JSON, nullable=False),
        sa.Column("last_modified", sa.Float, nullable=False),
        sa.PrimaryKeyConstraint("bucket", "key", "version_id", name="pk_s3_objects"),
    )
    old = sa.table("s3_objects", *(sa.column(name) for name in OBJECT_COLUMNS))
    new = sa.table("s3_object_versions", *(sa.column(name) for name in
                                           OBJECT_COLUMNS + ("version_id", "sequence", "is_latest", "delete_marker")))
    op.execute(new.insert().from_select(
        [*OBJECT_COLUMNS, "version_id", "sequence", "is_latest", "delete_marker"],
        sa.select(*(old.c[name] for name in OBJECT_COLUMNS), sa.literal("null"), sa.literal(1),
                  sa.literal(True), sa.literal(False))))
    op.drop_table("s3_objects")
    op.rename_table("s3_object_versions", "s3_objects")
    op.create_index("uq_s3_objects_latest", "s3_objects", ["bucket", "key"], unique=True,
                    sqlite_where=sa.text("is_latest = 1"), postgresql_where=sa.text("is_latest"))
    op.create_table(
        "s3_completed_uploads",
        sa.Column("upload_id", sa.String(64), primary_key=True),
        sa.Column("bucket", sa.String(63), nullable=False),
        sa.Column("key", KEY, nullable=False),
        sa.Column("parts", sa.JSON, nullable=False),
        sa.Column("result", sa.JSON, nullable=False),
        sa.Column("completed", sa.Float, nullable=False),
    )
    op.create_index("ix_s3_completed_uploads_completed", "s3_completed_uploads", ["completed"])


def downgrade():
    versions = sa.table("s3_objects", sa.column("version_id"), sa.column("is_latest"), sa.column("delete_marker"))
    kept = sa.and_(versions.c.version_id == "null", versions.c.is_latest == sa.true(),
                   versions.c.delete_marker == sa.false())
    if op.get_bind().execute(sa.select(sa.func.count()).select_from(versions).where(sa.not_(kept))).scalar():
        raise RuntimeError("Buckets hold object versions or delete markers, which the schema before versions "
                           "cannot keep: delete them before downgrading")
    op.drop_index("ix_s3_completed_uploads_completed", "s3_completed_uploads")
    op.drop_table("s3_completed_uploads")
    op.drop_index("uq_s3_objects_latest", "s3_objects")
    op.create_table(
        "s3_objects_before_versions",
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
    current = sa.table("s3_objects", *(sa.column(name) for name in OBJECT_COLUMNS))
    op.execute(sa.table("s3_objects_before_versions", *(sa.column(name) for name in OBJECT_COLUMNS)).insert()
               .from_select(list(OBJECT_COLUMNS), sa.select(*(current.c[name] for name in OBJECT_COLUMNS))))
    op.drop_table("s3_objects")
    op.rename_table("s3_objects_before_versions", "s3_objects")
    with op.batch_alter_table("s3_buckets") as batch:
        batch.drop_column("versioning")
