"""The record code every service shares: client tokens, tags, lookups by name or ARN."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from jobforge.core import idempotency, tags
from jobforge.core.errors import ServiceError
from jobforge.core.identifiers import name_or_arn
from jobforge.core.idempotency import ClientToken
from jobforge.core.store import open_store, roles

ARN = "arn:aws:unit:us-east-1:111111111111:thing/t"


@pytest.fixture(scope="module")
def engine(tmp_path_factory):
    found = open_store(f"sqlite:///{tmp_path_factory.mktemp('records') / 'store.db'}")
    yield found
    found.dispose()


def _token(token: str, digest: str = "h1") -> ClientToken:
    return ClientToken("111111111111", "unit:create", token, digest)


def test_a_token_returns_what_it_created_and_refuses_other_parameters(engine):
    mismatch = idempotency.reused("ConflictException")
    assert idempotency.earlier(engine, None, mismatch) is None
    assert idempotency.earlier(engine, _token("t1"), mismatch) is None
    with engine.begin() as conn:
        idempotency.remember(conn, _token("t1"), ARN)
        idempotency.remember(conn, None, ARN)  # a request without a token records nothing
    assert idempotency.earlier(engine, _token("t1"), mismatch) == ARN
    with pytest.raises(ServiceError) as err:
        idempotency.earlier(engine, _token("t1", "h2"), mismatch)
    assert err.value.code == "ConflictException" and err.value.message == (
        "The client token was already used with different request parameters. Use a new client token.")
    other_scope = ClientToken("111111111111", "other:create", "t1", "h2")
    assert idempotency.earlier(engine, other_scope, mismatch) is None


def test_a_token_used_twice_concurrently_fails_on_its_key(engine):
    with engine.begin() as conn:
        idempotency.remember(conn, _token("t2"), ARN)
    with pytest.raises(sa.exc.IntegrityError):
        with engine.begin() as conn:
            idempotency.remember(conn, _token("t2"), ARN + "-twin")


def test_the_message_names_the_token_as_the_service_does():
    error = idempotency.reused("ValidationException", "clientToken")()
    assert error.code == "ValidationException" and error.message == (
        "The clientToken was already used with different request parameters. Use a new clientToken.")


def test_tags_are_added_overwritten_and_removed(engine):
    arn = ARN + "/tags"
    tags.put(engine, "111111111111", arn, {"a": "1", "b": "2"})
    tags.put(engine, "111111111111", arn, {"b": "3", "c": "4"})
    assert tags.of(engine, arn) == {"a": "1", "b": "3", "c": "4"}
    tags.remove(engine, arn, ["a", "absent"])
    assert tags.of(engine, arn) == {"b": "3", "c": "4"}
    tags.remove(engine, arn)
    assert tags.of(engine, arn) == {}


def test_a_quota_counts_the_keys_after_the_change(engine):
    arn = ARN + "/quota"
    too_many = lambda: ServiceError("TooManyTagsException", "too many")  # noqa: E731
    tags.put(engine, "111111111111", arn, {"a": "1", "b": "2"}, limit=3, too_many=too_many)
    tags.put(engine, "111111111111", arn, {"b": "9", "c": "3"}, limit=3, too_many=too_many)  # b is replaced
    with pytest.raises(ServiceError, match="too many"):
        tags.put(engine, "111111111111", arn, {"d": "4"}, limit=3, too_many=too_many)
    assert tags.of(engine, arn) == {"a": "1", "b": "9", "c": "3"}


def test_keys_can_be_told_apart_without_case(engine):
    arn = ARN + "/case"
    tags.put(engine, "111111111111", arn, {"Team": "a"}, same_key=str.lower)
    tags.put(engine, "111111111111", arn, {"TEAM": "b"}, same_key=str.lower)
    assert tags.of(engine, arn) == {"TEAM": "b"}
    tags.remove(engine, arn, ["team"], same_key=str.lower)
    assert tags.of(engine, arn) == {}


def test_tags_written_in_a_transaction_go_with_it(engine):
    arn = ARN + "/rollback"
    with pytest.raises(RuntimeError):
        with engine.begin() as conn:
            tags.put(conn, "111111111111", arn, {"a": "1"})
            assert tags.of(conn, arn) == {"a": "1"}
            raise RuntimeError("the resource was not created")
    assert tags.of(engine, arn) == {}


def test_a_resource_is_found_by_name_or_by_arn():
    by_arn = name_or_arn(roles, "arn:aws:iam::111111111111:role/r")
    by_name = name_or_arn(sa.table("t", sa.column("arn"), sa.column("name")), "r")
    assert by_arn.left.name == "arn" and by_arn.right.value == "arn:aws:iam::111111111111:role/r"
    assert by_name.left.name == "name" and by_name.right.value == "r"
