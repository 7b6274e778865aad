"""role names are unique per account whatever their case

Revision ID: 0004_roles_ci
Revises: 0001
"""
from alembic import op
import sqlalchemy as sa

revision = '0004_roles_ci'
down_revision = '0001'
branch_labels = ('iam',)
depends_on = None


def upgrade():
    clashes = op.get_bind().execute(sa.text(
        'SELECT account_id, lower(role_name) FROM roles GROUP BY account_id, lower(role_name) '
        'HAVING count(*) > 1')).all()
    if clashes:  # made before names were compared case-insensitively: an operator must choose
        listed = ", ".join(f"{account}:{name}" for account, name in clashes)
        raise RuntimeError(f"Roles whose names differ only in case exist ({listed}); IAM role names are not "
                           "distinguished by case: delete all but one of each and start again")
    op.create_index('uq_roles_account_lower_name', 'roles', ['account_id', sa.text('lower(role_name)')],
                    unique=True)


def downgrade():
    op.drop_index('uq_roles_account_lower_name', table_name='roles')
