"""Console sign-in records: one-time tokens, sessions, their expiry and the CSRF comparison."""

from __future__ import annotations

import time

import pytest

from jobforge.console import sessions
from jobforge.core import accounts
from jobforge.core.store import open_store


@pytest.fixture
def engine(tmp_path):
    return open_store(f"sqlite:///{tmp_path / 'jobforge.db'}")


@pytest.fixture
def credential(engine):
    return accounts.create_account(engine, "team")


def test_a_signin_token_opens_one_session_only(engine, credential):
    token = sessions.issue_signin_token(engine, credential)
    assert sessions.redeem_signin_token(engine, token) == credential.access_key_id
    assert sessions.redeem_signin_token(engine, token) is None  # used
    assert sessions.redeem_signin_token(engine, "not-a-token") is None


def test_an_expired_signin_token_is_refused_and_gone(engine, credential):
    token = sessions.issue_signin_token(engine, credential, lifetime=-1)
    assert sessions.redeem_signin_token(engine, token) is None
    with engine.connect() as conn:
        assert conn.execute(sessions.console_signin_tokens.select()).all() == []


def test_only_digests_are_stored(engine, credential):
    token = sessions.issue_signin_token(engine, credential)
    session_id, _ = sessions.open_session(engine, credential)
    with engine.connect() as conn:
        stored = [tuple(row) for table in (sessions.console_signin_tokens, sessions.console_sessions)
                  for row in conn.execute(table.select())]
    assert not any(token in map(str, row) or session_id in map(str, row) for row in stored)


def test_a_session_scopes_to_the_key_s_account_until_closed(engine, credential):
    session_id, opened = sessions.open_session(engine, credential)
    found = sessions.find_session(engine, session_id)
    assert found == opened and found.account_id == credential.account_id
    assert found.access_key_id == credential.access_key_id
    assert time.time() + sessions.SESSION_SECONDS - 5 < found.expires_at <= time.time() + sessions.SESSION_SECONDS
    assert sessions.find_session(engine, "someone-else's") is None
    sessions.close_session(engine, session_id)
    assert sessions.find_session(engine, session_id) is None


def test_a_session_ends_no_later_than_its_credential(engine, credential):
    soon = accounts.Credential(credential.access_key_id, credential.secret_key, credential.account_id,
                               credential.principal_arn, expires_at=time.time() - 1)
    session_id, _ = sessions.open_session(engine, soon)
    assert sessions.find_session(engine, session_id) is None


def test_the_csrf_token_must_match_exactly(engine, credential):
    _, session = sessions.open_session(engine, credential)
    assert session.csrf_matches(session.csrf_token)
    assert not session.csrf_matches(None)
    assert not session.csrf_matches("")
    assert not session.csrf_matches(session.csrf_token[:-1])
