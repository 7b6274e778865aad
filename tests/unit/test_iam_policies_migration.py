"""The migration that brings IAM policies gives the default roles of existing accounts their policy."""

from __future__ import annotations

from pathlib import Path

import sqlalchemy as sa
from alembic import command
from alembic.config import Config

from jobforge.core import store
from jobforge.core.accounts import DEFAULT_ROLE_POLICY, TRUST_POLICY, create_account, role_row
from jobforge.core.store import migrate, open_store, role_policy_attachments, roles


def _attached(engine) -> list[tuple[str, str]]:
    with engine.connect() as conn:
        return sorted(conn.execute(sa.select(roles.c.role_name, role_policy_attachments.c.policy_arn).join(
            role_policy_attachments, role_policy_attachments.c.role_id == roles.c.role_id)).all())


def test_default_roles_made_before_policies_get_their_policy(tmp_path):
    engine = open_store(f"sqlite:///{tmp_path / 'jobforge.db'}")
    try:
        config = Config()
        config.set_main_option("script_location", str(Path(store.__file__).with_name("migrations")))
        with engine.begin() as connection:
            config.attributes["connection"] = connection
            command.downgrade(config, "0004_roles_ci")  # the iam branch as it was before policies
        assert not sa.inspect(engine).has_table("role_policy_attachments")
        with engine.begin() as conn:  # an account's default roles then, and a role of its own
            for path, name in (("/", "JobforgeExecutionRole"), ("/service-role/", "AmazonBraketJobsExecutionRole"),
                               ("/", "OwnRole")):
                conn.execute(roles.insert().values(role_row("111111111111", name, path, TRUST_POLICY, None, 3600,
                                                            0.0)))
        migrate(engine)
        assert _attached(engine) == [("AmazonBraketJobsExecutionRole", DEFAULT_ROLE_POLICY),
                                     ("JobforgeExecutionRole", DEFAULT_ROLE_POLICY)]
    finally:
        engine.dispose()


def test_new_accounts_default_roles_carry_the_policy(tmp_path):
    engine = open_store(f"sqlite:///{tmp_path / 'jobforge.db'}")
    try:
        create_account(engine, "fresh")
        assert _attached(engine) == [("AmazonBraketJobsExecutionRole", DEFAULT_ROLE_POLICY),
                                     ("JobforgeExecutionRole", DEFAULT_ROLE_POLICY)]
    finally:
        engine.dispose()
