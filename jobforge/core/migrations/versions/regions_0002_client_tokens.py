"""a client token names a resource of the request's region: its scope starts with the region

Revision ID: regions_0002
Revises: regions_0001
"""
from alembic import op
import sqlalchemy as sa

revision = 'regions_0002'
down_revision = 'regions_0001'
branch_labels = None
depends_on = None
DEFAULT_REGION = 'us-east-1'  # where a resource whose ARN names no region was made: the server's default region


def _tokens() -> sa.TableClause:
    return sa.table('idempotency', sa.column('account_id', sa.String), sa.column('scope', sa.String),
                    sa.column('token', sa.String), sa.column('resource_arn', sa.String))


def _rescope(scope_of) -> None:
    tokens = _tokens()
    conn = op.get_bind()
    rows = [{'key_account': account, 'key_scope': scope, 'key_token': token, 'new_scope': scope_of(scope, arn)}
            for account, scope, token, arn in conn.execute(
                sa.select(tokens.c.account_id, tokens.c.scope, tokens.c.token, tokens.c.resource_arn)).all()]
    if rows:
        conn.execute(tokens.update().where(tokens.c.account_id == sa.bindparam('key_account'),
                                           tokens.c.scope == sa.bindparam('key_scope'),
                                           tokens.c.token == sa.bindparam('key_token'))
                     .values(scope=sa.bindparam('new_scope')), rows)


def _region(arn: str) -> str:
    """The fourth field of the ARN the token created: arn:aws:<service>:<region>:<account>:..."""
    fields = arn.split(":")
    return fields[3] if len(fields) > 4 and fields[3] else DEFAULT_REGION


def upgrade():
    _rescope(lambda scope, arn: f"{_region(arn)}/{scope}")


def downgrade():
    _rescope(lambda scope, arn: scope.split("/", 1)[1])
