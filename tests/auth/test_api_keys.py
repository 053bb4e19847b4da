"""Personal API keys through HTTP: shown once, stored as a digest, accepted where
a caller asks or reads their own data, refused (403) wherever the account is
managed or an admin's powers are used, and 401 once revoked or expired."""

import hashlib
import logging
import re
from datetime import timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import text

from askgate.api_keys import service as keys_service
from askgate.auth import cache
from askgate.auth.deps import LOGIN_REQUIRED
from askgate.config import Settings
from askgate.db import Database, utcnow
from tests.factories import (
    Account,
    auth_headers,
    create_api_key,
    create_user,
    key_headers,
)

KEY_FORMAT = re.compile(r"ag-[A-Za-z0-9_-]{43}")
QUESTIONS_PER_MINUTE = 4


@pytest.fixture
def settings(settings: Settings) -> Settings:
    settings.questions_per_minute = QUESTIONS_PER_MINUTE
    return settings


async def _key_rows(db: Database) -> list[dict[str, Any]]:
    async with db.read() as session:
        rows = await session.execute(text("SELECT * FROM api_keys ORDER BY id"))
        return [dict(row._mapping) for row in rows]


async def test_a_key_is_shown_once_and_stored_as_its_digest(
    client: httpx.AsyncClient, db: Database, user_headers: dict[str, str]
) -> None:
    response = await client.post(
        "/users/me/api-keys",
        json={"name": "  laptop  ", "expires_in_days": 30},
        headers=user_headers,
    )

    assert response.status_code == 201, response.text
    assert response.headers["Cache-Control"] == "no-store"
    assert response.headers["Pragma"] == "no-cache"
    created = response.json()
    key = created["key"]
    assert KEY_FORMAT.fullmatch(key)
    assert created["prefix"] == key[:8]
    assert created["name"] == "laptop"
    assert created["last_used_at"] is None
    assert created["expires_at"] is not None

    listed = await client.get("/users/me/api-keys", headers=user_headers)
    assert listed.status_code == 200
    assert listed.headers["X-Total-Count"] == "1"
    assert listed.json() == [{k: v for k, v in created.items() if k != "key"}]
    assert "Cache-Control" not in listed.headers  # no credential in it

    (row,) = await _key_rows(db)
    digest = hashlib.sha256(key.encode()).hexdigest()
    assert row["digest"] == digest
    assert not any(key in str(value) for value in row.values())
    assert digest not in response.text + listed.text


async def test_every_key_is_different(
    client: httpx.AsyncClient, user_headers: dict[str, str]
) -> None:
    made = [await create_api_key(client, user_headers) for _ in range(5)]

    assert len({item["key"] for item in made}) == 5
    assert len({item["id"] for item in made}) == 5


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"name": ""},
        {"name": "   "},
        {"name": "x" * 101},
        {"name": "a\x00b"},
        {"name": "k", "expires_in_days": 0},
        {"name": "k", "expires_in_days": 3651},
        {"name": "k", "expires_in_days": "5"},
        {"name": "k", "expires_in_days": 1.5},
        {"name": "k", "key": "ag-" + "a" * 43},  # a key cannot be chosen
    ],
)
async def test_bad_key_requests_are_422(
    client: httpx.AsyncClient, user_headers: dict[str, str], body: dict[str, Any]
) -> None:
    response = await client.post("/users/me/api-keys", json=body, headers=user_headers)

    assert response.status_code == 422, response.text


async def test_a_key_asks_and_reads_the_callers_own_data(
    client: httpx.AsyncClient, user: Account, user_headers: dict[str, str]
) -> None:
    created = await create_api_key(client, user_headers)
    headers = key_headers(created["key"])

    me = await client.get("/users/me", headers=headers)
    assert me.status_code == 200
    assert me.json()["id"] == user.id
    assert (await client.get("/users/me/usage", headers=headers)).status_code == 200

    asked = await client.post("/questions", json={"content": "Hi?"}, headers=headers)
    assert asked.status_code == 201, asked.text
    question = asked.json()
    assert question["api_key_id"] == created["id"]
    assert question["user_id"] == user.id

    mine = await client.get("/questions/me", headers=headers)
    assert [q["id"] for q in mine.json()] == [question["id"]]
    assert mine.json()[0]["api_key_id"] == created["id"]
    read = await client.get(f"/questions/{question['id']}", headers=headers)
    assert read.json()["api_key_id"] == created["id"]
    # The same question seen through the login.
    seen = await client.get(f"/questions/{question['id']}", headers=user_headers)
    assert seen.json() == read.json()

    deleted = await client.delete(f"/questions/{question['id']}", headers=headers)
    assert deleted.status_code == 204


async def test_a_streamed_question_asked_with_a_key_records_it(
    client: httpx.AsyncClient, user_headers: dict[str, str]
) -> None:
    created = await create_api_key(client, user_headers)

    response = await client.post(
        "/questions",
        json={"content": "Stream?", "stream": True},
        headers=key_headers(created["key"]),
    )

    assert response.status_code == 200
    mine = await client.get("/questions/me", headers=user_headers)
    assert mine.json()[0]["api_key_id"] == created["id"]


async def _login_only_calls(
    client: httpx.AsyncClient, owner_headers: dict[str, str]
) -> list[tuple[str, str, Any]]:
    key_id = (await create_api_key(client, owner_headers))["id"]
    return [
        ("PATCH", "/users/me", {"email": "new@example.com"}),
        ("PATCH", "/users/me", {"password": "x" * 16, "current_password": "y" * 16}),
        ("DELETE", "/users/me", None),
        ("POST", "/users/me/api-keys", {"name": "another"}),
        ("GET", "/users/me/api-keys", None),
        ("DELETE", f"/users/me/api-keys/{key_id}", None),
        ("GET", "/users", None),
        ("POST", "/users", {"username": "made-by-key", "password": "p" * 12}),
        ("GET", "/users/1", None),
        ("PATCH", "/users/1", {"role": "admin"}),
        ("DELETE", "/users/1", None),
        ("GET", "/questions", None),
        ("GET", "/api-keys", None),
        ("DELETE", f"/api-keys/{key_id}", None),
    ]


@pytest.mark.parametrize("as_admin", [False, True], ids=["user", "admin"])
async def test_a_key_never_manages_the_account_nor_acts_as_an_admin(
    client: httpx.AsyncClient,
    user_headers: dict[str, str],
    admin_headers: dict[str, str],
    as_admin: bool,
) -> None:
    owner_headers = admin_headers if as_admin else user_headers
    headers = key_headers((await create_api_key(client, owner_headers))["key"])

    for method, path, body in await _login_only_calls(client, owner_headers):
        response = await client.request(method, path, json=body, headers=headers)
        assert response.status_code == 403, (method, path, response.text)
        assert response.json() == {"detail": LOGIN_REQUIRED}

    # Nothing changed: the account, its keys and the other users are as they were.
    me = await client.get("/users/me", headers=owner_headers)
    assert me.status_code == 200
    assert me.json()["email"] is None
    keys = await client.get("/users/me/api-keys", headers=owner_headers)
    assert keys.headers["X-Total-Count"] == "2"


async def test_an_admins_key_reads_only_the_admins_own_questions(
    client: httpx.AsyncClient,
    user_headers: dict[str, str],
    admin_headers: dict[str, str],
) -> None:
    asked = await client.post(
        "/questions", json={"content": "Mine"}, headers=user_headers
    )
    question = f"/questions/{asked.json()['id']}"
    headers = key_headers((await create_api_key(client, admin_headers))["key"])

    assert (await client.get(question, headers=admin_headers)).status_code == 200
    assert (await client.get(question, headers=headers)).status_code == 404
    assert (await client.delete(question, headers=headers)).status_code == 404
    assert (await client.get(question, headers=user_headers)).status_code == 200


@pytest.mark.parametrize(
    "key",
    [
        "ag-" + "A" * 43,  # well formed, unknown
        "ag-short",
        "ag-" + "A" * 44,
        "ag-" + "*" * 43,
        "ag-",
    ],
)
@pytest.mark.parametrize(
    ("method", "path"),
    [("GET", "/users/me"), ("POST", "/questions"), ("PATCH", "/users/me")],
)
async def test_an_unknown_key_is_401_on_every_route(
    client: httpx.AsyncClient, key: str, method: str, path: str
) -> None:
    response = await client.request(
        method, path, json={"content": "x"}, headers=key_headers(key)
    )

    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"] == "Bearer"
    assert response.json() == {"detail": cache.INVALID_KEY}


async def test_a_revoked_key_is_refused_at_once(
    client: httpx.AsyncClient, db: Database, user_headers: dict[str, str]
) -> None:
    revoked = await create_api_key(client, user_headers, name="old")
    kept = await create_api_key(client, user_headers, name="new")
    headers = key_headers(revoked["key"])
    asked = await client.post("/questions", json={"content": "q"}, headers=headers)
    assert asked.status_code == 201  # and the key's caller is now cached

    response = await client.delete(
        f"/users/me/api-keys/{revoked['id']}", headers=user_headers
    )

    assert response.status_code == 204
    for path in ("/users/me", "/questions/me", "/users/me/usage"):
        refused = await client.get(path, headers=headers)
        assert refused.status_code == 401, path
        assert refused.json() == {"detail": cache.INVALID_KEY}
    assert (await client.patch("/users/me", headers=headers)).status_code == 401
    again = await client.delete(
        f"/users/me/api-keys/{revoked['id']}", headers=user_headers
    )
    assert again.status_code == 404
    # The other key still works; the question stays, no longer naming its key.
    assert (await client.get("/users/me", headers=key_headers(kept["key"]))).is_success
    question = await client.get(
        f"/questions/{asked.json()['id']}", headers=user_headers
    )
    assert question.json()["api_key_id"] is None
    assert [row["id"] for row in await _key_rows(db)] == [kept["id"]]


async def test_another_users_key_cannot_be_revoked_nor_seen(
    client: httpx.AsyncClient, db: Database, user_headers: dict[str, str]
) -> None:
    other = await create_user(db)
    other_headers = await auth_headers(client, other)
    theirs = await create_api_key(client, other_headers)

    response = await client.delete(
        f"/users/me/api-keys/{theirs['id']}", headers=user_headers
    )

    assert response.status_code == 404
    assert (await client.get("/users/me/api-keys", headers=user_headers)).json() == []
    assert (
        await client.get("/users/me", headers=key_headers(theirs["key"]))
    ).is_success


async def test_an_expired_key_is_refused_even_when_cached(
    client: httpx.AsyncClient,
    user_headers: dict[str, str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    created = await create_api_key(client, user_headers, expires_in_days=1)
    headers = key_headers(created["key"])
    assert (await client.get("/users/me", headers=headers)).status_code == 200

    later = utcnow() + timedelta(days=1, seconds=1)
    monkeypatch.setattr(cache, "utcnow", lambda: later)

    response = await client.get("/users/me", headers=headers)
    assert response.status_code == 401
    assert response.json() == {"detail": cache.INVALID_KEY}


async def test_fifty_live_keys_at_most(
    client: httpx.AsyncClient, db: Database, user_headers: dict[str, str]
) -> None:
    made = [
        await create_api_key(client, user_headers)
        for _ in range(keys_service.MAX_LIVE_KEYS)
    ]

    refused = await client.post(
        "/users/me/api-keys", json={"name": "one too many"}, headers=user_headers
    )
    assert refused.status_code == 409
    assert "50" in refused.json()["detail"]

    revoked = await client.delete(
        f"/users/me/api-keys/{made[0]['id']}", headers=user_headers
    )
    assert revoked.status_code == 204
    await create_api_key(client, user_headers)
    assert (
        await client.post(
            "/users/me/api-keys", json={"name": "again"}, headers=user_headers
        )
    ).status_code == 409

    # An expired key is not live: it no longer counts.
    async with db.write() as session:
        await session.execute(
            text("UPDATE api_keys SET expires_at = :past WHERE id = :id"),
            {"past": utcnow() - timedelta(seconds=1), "id": made[1]["id"]},
        )
    await create_api_key(client, user_headers)


async def test_admin_lists_and_revokes_any_key(
    client: httpx.AsyncClient,
    user: Account,
    admin: Account,
    user_headers: dict[str, str],
    admin_headers: dict[str, str],
) -> None:
    users_key = await create_api_key(client, user_headers)
    admins_key = await create_api_key(client, admin_headers)
    second = await create_api_key(client, user_headers)

    everyone = await client.get("/api-keys", headers=admin_headers)
    assert everyone.status_code == 200
    assert everyone.headers["X-Total-Count"] == "3"
    assert [(k["id"], k["user_id"]) for k in everyone.json()] == [
        (second["id"], user.id),
        (admins_key["id"], admin.id),
        (users_key["id"], user.id),
    ]
    assert not any("key" in item or "digest" in item for item in everyone.json())
    page = await client.get(
        "/api-keys",
        params={"user_id": user.id, "limit": 1, "offset": 1},
        headers=admin_headers,
    )
    assert page.headers["X-Total-Count"] == "2"
    assert [k["id"] for k in page.json()] == [users_key["id"]]
    assert (await client.get("/api-keys", headers=user_headers)).status_code == 403

    assert (
        await client.delete(f"/api-keys/{users_key['id']}", headers=user_headers)
    ).status_code == 403
    revoked = await client.delete(f"/api-keys/{users_key['id']}", headers=admin_headers)
    assert revoked.status_code == 204
    assert (
        await client.get("/users/me", headers=key_headers(users_key["key"]))
    ).status_code == 401
    missing = await client.delete(f"/api-keys/{users_key['id']}", headers=admin_headers)
    assert missing.status_code == 404
    assert (
        await client.get("/users/me", headers=key_headers(second["key"]))
    ).status_code == 200


async def test_keys_and_logins_share_the_rate_limit_and_the_usage(
    client: httpx.AsyncClient, user_headers: dict[str, str]
) -> None:
    headers = key_headers((await create_api_key(client, user_headers))["key"])

    for i in range(QUESTIONS_PER_MINUTE):
        asked = await client.post(
            "/questions",
            json={"content": f"q{i}"},
            headers=headers if i % 2 else user_headers,
        )
        assert asked.status_code == 201, asked.text
    for caller in (headers, user_headers):
        limited = await client.post(
            "/questions", json={"content": "more"}, headers=caller
        )
        assert limited.status_code == 429

    by_key = await client.get("/users/me/usage", headers=headers)
    by_login = await client.get("/users/me/usage", headers=user_headers)
    assert by_key.json() == by_login.json()
    assert by_key.json()["used_tokens"] > 0


async def test_a_key_reaches_no_later_response_and_no_log_line(
    client: httpx.AsyncClient,
    user_headers: dict[str, str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    created = await create_api_key(client, user_headers)
    key = created["key"]
    digest = hashlib.sha256(key.encode()).hexdigest()
    headers = key_headers(key)

    later = [
        await client.get("/users/me", headers=headers),
        await client.post("/questions", json={"content": "log?"}, headers=headers),
        await client.get("/questions/me", headers=headers),
        await client.patch("/users/me", json={"email": "a@b.cd"}, headers=headers),
        await client.get("/users/me/api-keys", headers=user_headers),
        await client.delete(
            f"/users/me/api-keys/{created['id']}", headers=user_headers
        ),
        await client.get("/users/me", headers=headers),  # 401 now
        await client.get("/users/me", headers=key_headers(key[:-1] + "?")),
    ]

    for response in later:
        text_seen = response.text + str(response.headers)
        assert key[3:] not in text_seen
        assert digest not in text_seen
    assert caplog.records  # the access log ran
    for record in caplog.records:
        logged = record.getMessage() + str(record.args) + str(record.exc_text)
        assert key[3:] not in logged, record.name
        assert digest not in logged, record.name
