"""GET /users/me/export: everything askgate holds about the caller, one JSON
document, its questions streamed page by page; never a secret."""

import json
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx
import pytest
from sqlalchemy import event, text

from askgate.auth.deps import LOGIN_REQUIRED
from askgate.config import Settings
from askgate.db import Database
from askgate.users import export
from askgate.users.export import AccountExport
from tests.factories import (
    Account,
    auth_headers,
    create_api_key,
    create_user,
    key_headers,
    login,
)
from tests.fake_upstream import MODEL, answer_for
from tests.postgres_server import (
    BACKENDS,
    postgres_server,
    postgres_url,
    with_database,
)
from tests.rows import days_ago, insert_questions

__all__ = ["postgres_server", "postgres_url"]  # fixtures used through `with_database`


@pytest.fixture(params=BACKENDS)
def settings(settings: Settings, request: pytest.FixtureRequest) -> Settings:
    return with_database(settings, request)


async def download(client: httpx.AsyncClient, headers: dict[str, str]) -> bytes:
    response = await client.get("/users/me/export", headers=headers)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/json"
    assert response.headers["content-disposition"].startswith("attachment;")
    assert response.headers["cache-control"] == "no-store"
    return response.content


async def test_the_export_holds_everything_of_the_caller_and_nothing_else(
    client: httpx.AsyncClient, db: Database, user: Account, admin: Account
) -> None:
    tokens = await login(client, user)
    headers = {"Authorization": f"Bearer {tokens['access_token']}"}
    key = await create_api_key(client, headers, name="laptop")
    asked = await client.post(
        "/questions", json={"content": "first one"}, headers=headers
    )
    assert asked.status_code == 201, asked.text
    completion = await client.post(
        "/v1/chat/completions",
        json={
            "model": MODEL,
            "messages": [
                {"role": "system", "content": "Be brief."},
                {"role": "user", "content": "second one"},
            ],
        },
        headers=key_headers(key["key"]),
    )
    assert completion.status_code == 200, completion.text
    admin_headers = await auth_headers(client, admin)
    other = await client.post(
        "/questions", json={"content": "the admin's own"}, headers=admin_headers
    )
    assert other.status_code == 201

    body = await download(client, headers)
    document = AccountExport.model_validate_json(body)

    assert document.account.id == user.id
    assert document.account.username == user.username
    assert [k.name for k in document.api_keys] == ["laptop"]
    assert document.api_keys[0].prefix == key["prefix"]
    assert len(document.logins) == 1
    assert document.logins[0].revoked_at is None
    first, second = document.questions
    assert (first.content, first.answer) == ("first one", answer_for("first one"))
    assert first.messages is None
    assert (second.content, second.answer) == ("second one", answer_for("second one"))
    assert second.api_key_id == key["id"]
    assert second.messages == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "second one"},
    ]
    assert [(row.model, row.questions) for row in document.usage.daily] == [(MODEL, 2)]
    assert document.usage.daily[0].total_tokens == sum(
        (q.usage.prompt_tokens or 0) + (q.usage.completion_tokens or 0)
        for q in document.questions
    )
    assert [row.used_tokens for row in document.usage.quota] == [
        document.usage.daily[0].total_tokens
    ]
    # Nothing of anyone else, and no secret of the caller's.
    raw = body.decode()
    assert "the admin's own" not in raw
    for secret in (key["key"], tokens["access_token"], tokens["refresh_token"]):
        assert secret not in raw
    for field in ("password", "hash", "digest", "token_hash"):
        assert field not in _keys(json.loads(body))
    async with db.read() as session:
        stored = (await session.execute(SECRETS, {"user_id": user.id})).all()
    assert len(stored) == 1
    for password_hash, digest in stored:
        assert password_hash not in raw
        assert digest not in raw


SECRETS = text(
    "SELECT users.password_hash, api_keys.digest FROM users "
    "JOIN api_keys ON api_keys.user_id = users.id WHERE users.id = :user_id"
)


def _keys(value: Any) -> set[str]:
    """Every key of every object in a JSON value."""
    if isinstance(value, dict):
        return set(value) | {k for v in value.values() for k in _keys(v)}
    if isinstance(value, list):
        return {k for v in value for k in _keys(v)}
    return set()


@contextmanager
def question_queries(db: Database) -> Iterator[list[str]]:
    """The SELECTs on `questions` run meanwhile."""
    seen: list[str] = []

    def record(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        if statement.lstrip().upper().startswith("SELECT") and (
            "FROM questions" in statement
        ):
            seen.append(statement)

    event.listen(db.engine.sync_engine, "before_cursor_execute", record)
    try:
        yield seen
    finally:
        event.remove(db.engine.sync_engine, "before_cursor_execute", record)


async def test_questions_are_read_page_by_page_oldest_first(
    client: httpx.AsyncClient,
    db: Database,
    user: Account,
    user_headers: dict[str, str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(export, "QUESTIONS_PER_PAGE", 2)
    ids = await insert_questions(db, user.id, [days_ago(d) for d in (5, 4, 3, 2, 1)])
    someone = await create_user(db)
    await insert_questions(db, someone.id, [days_ago(1)], tag="theirs")

    with question_queries(db) as queries:
        body = await download(client, user_headers)

    document = AccountExport.model_validate_json(body)
    assert [q.id for q in document.questions] == ids
    assert [q.content for q in document.questions] == [
        f"old question {n}" for n in range(5)
    ]
    # Three pages of at most two, each its own bounded query.
    assert len(queries) == 3
    assert all("LIMIT" in query.upper() for query in queries)


@pytest.mark.parametrize("count", [0, 2])
async def test_an_export_of_whole_pages_or_none_is_valid_json(
    client: httpx.AsyncClient,
    db: Database,
    user: Account,
    user_headers: dict[str, str],
    monkeypatch: pytest.MonkeyPatch,
    count: int,
) -> None:
    monkeypatch.setattr(export, "QUESTIONS_PER_PAGE", 2)
    await insert_questions(db, user.id, [days_ago(1)] * count)

    document = AccountExport.model_validate_json(await download(client, user_headers))

    assert len(document.questions) == count
    assert len(document.logins) == 1
    assert document.api_keys == []
    assert document.usage.daily == []


async def test_the_export_needs_a_login(
    client: httpx.AsyncClient, user_headers: dict[str, str]
) -> None:
    key = await create_api_key(client, user_headers)

    with_key = await client.get("/users/me/export", headers=key_headers(key["key"]))
    anonymous = await client.get("/users/me/export")

    assert with_key.status_code == 403
    assert with_key.json() == {"detail": LOGIN_REQUIRED}
    assert anonymous.status_code == 401
    assert anonymous.headers["www-authenticate"] == "Bearer"
