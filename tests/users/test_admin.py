"""User management by admins: /users and /users/{id}."""

import httpx
import pytest

from askgate.db import Database
from askgate.users.models import Role
from tests.factories import (
    Account,
    assert_login_ended,
    auth_headers,
    create_user,
    login,
)

NEW_PASSWORD = "an admin-chosen passphrase"


async def _list(
    client: httpx.AsyncClient, headers: dict[str, str], **params: str | int
) -> tuple[list[str], int]:
    response = await client.get("/users", params=params, headers=headers)
    assert response.status_code == 200, response.text
    body = response.json()
    assert isinstance(body, list)
    return [user["username"] for user in body], int(response.headers["X-Total-Count"])


async def test_list_users_newest_first_with_the_total(
    client: httpx.AsyncClient,
    db: Database,
    admin: Account,
    admin_headers: dict[str, str],
) -> None:
    created = [await create_user(db) for _ in range(3)]

    response = await client.get("/users", headers=admin_headers)

    assert response.status_code == 200
    body = response.json()
    assert [user["id"] for user in body] == [c.id for c in reversed(created)] + [
        admin.id
    ]
    assert response.headers["X-Total-Count"] == "4"
    assert "password" not in response.text
    assert "$argon2" not in response.text


async def test_list_users_pages_with_limit_and_offset(
    client: httpx.AsyncClient, db: Database, admin_headers: dict[str, str]
) -> None:
    for _ in range(4):
        await create_user(db)
    everyone, total = await _list(client, admin_headers)
    assert total == 5

    first, first_total = await _list(client, admin_headers, limit=2)
    second, _ = await _list(client, admin_headers, limit=2, offset=2)
    last, _ = await _list(client, admin_headers, limit=2, offset=4)
    beyond, beyond_total = await _list(client, admin_headers, limit=2, offset=10)

    assert first + second + last == everyone
    assert len(last) == 1
    assert beyond == []
    assert first_total == beyond_total == 5


@pytest.mark.parametrize(
    "params",
    [{"limit": 0}, {"limit": 101}, {"offset": -1}, {"limit": "many"}],
    ids=["limit-0", "limit-101", "offset-negative", "limit-text"],
)
async def test_list_users_rejects_bad_paging(
    client: httpx.AsyncClient,
    admin_headers: dict[str, str],
    params: dict[str, str | int],
) -> None:
    response = await client.get("/users", params=params, headers=admin_headers)

    assert response.status_code == 422


async def test_search_matches_part_of_the_username_ignoring_case(
    client: httpx.AsyncClient, db: Database, admin_headers: dict[str, str]
) -> None:
    for name in ("Alice", "malice.b", "bob", "ALI"):
        await create_user(db, username=name)

    names, total = await _list(client, admin_headers, q="aLi")

    assert names == ["ALI", "malice.b", "Alice"]
    assert total == 3


async def test_search_total_counts_every_match_not_only_the_page(
    client: httpx.AsyncClient, db: Database, admin_headers: dict[str, str]
) -> None:
    for name in ("team-a", "team-b", "team-c", "solo"):
        await create_user(db, username=name)

    names, total = await _list(client, admin_headers, q="team", limit=1)

    assert names == ["team-c"]
    assert total == 3


async def test_search_treats_underscore_literally(
    client: httpx.AsyncClient, db: Database, admin_headers: dict[str, str]
) -> None:
    for name in ("a_b", "axb", "a-b"):
        await create_user(db, username=name)

    names, total = await _list(client, admin_headers, q="a_b")

    assert names == ["a_b"]
    assert total == 1


@pytest.mark.parametrize("q", ["%", "a%b", "\\", "%%%"])
async def test_search_treats_percent_and_backslash_literally(
    client: httpx.AsyncClient,
    db: Database,
    admin_headers: dict[str, str],
    q: str,
) -> None:
    for name in ("a_b", "axb", "ab"):
        await create_user(db, username=name)

    names, total = await _list(client, admin_headers, q=q)

    # No username can hold these characters, so nothing matches.
    assert names == []
    assert total == 0


@pytest.mark.parametrize("q", ["a" * 33, "nul\x00"], ids=["too-long", "nul"])
async def test_search_rejects_unusable_text(
    client: httpx.AsyncClient, admin_headers: dict[str, str], q: str
) -> None:
    response = await client.get("/users", params={"q": q}, headers=admin_headers)

    assert response.status_code == 422


async def test_an_empty_search_lists_everyone(
    client: httpx.AsyncClient,
    user: Account,
    admin: Account,
    admin_headers: dict[str, str],
) -> None:
    names, total = await _list(client, admin_headers, q="")

    assert names == [admin.username, user.username]
    assert total == 2


async def test_read_a_user(
    client: httpx.AsyncClient, user: Account, admin_headers: dict[str, str]
) -> None:
    response = await client.get(f"/users/{user.id}", headers=admin_headers)

    assert response.status_code == 200
    body = response.json()
    assert body["id"] == user.id
    assert body["username"] == user.username
    assert body["role"] == "user"
    assert "password" not in response.text
    assert "$argon2" not in response.text


@pytest.mark.parametrize("user_id", ["999999", str(2**63 - 1)])
async def test_read_an_unknown_user_is_404(
    client: httpx.AsyncClient, admin_headers: dict[str, str], user_id: str
) -> None:
    response = await client.get(f"/users/{user_id}", headers=admin_headers)

    assert response.status_code == 404


@pytest.mark.parametrize("user_id", ["0", "-1", "abc", str(2**63)])
async def test_an_invalid_user_id_is_422(
    client: httpx.AsyncClient, admin_headers: dict[str, str], user_id: str
) -> None:
    response = await client.get(f"/users/{user_id}", headers=admin_headers)

    assert response.status_code == 422


async def test_create_an_admin_who_can_then_administer(
    client: httpx.AsyncClient, admin_headers: dict[str, str]
) -> None:
    response = await client.post(
        "/users",
        json={
            "username": "second-admin",
            "password": NEW_PASSWORD,
            "email": "boss@example.com",
            "role": "admin",
        },
        headers=admin_headers,
    )

    assert response.status_code == 201, response.text
    body = response.json()
    assert body["username"] == "second-admin"
    assert body["email"] == "boss@example.com"
    assert body["role"] == "admin"
    assert body["is_active"] is True
    assert "password" not in response.text
    assert NEW_PASSWORD not in response.text
    created = Account(
        id=body["id"], username="second-admin", password=NEW_PASSWORD, role=Role.ADMIN
    )
    headers = await auth_headers(client, created)
    assert (await client.get("/users", headers=headers)).status_code == 200


async def test_create_a_user_defaults_to_the_user_role(
    client: httpx.AsyncClient, admin_headers: dict[str, str]
) -> None:
    response = await client.post(
        "/users",
        json={"username": "plain", "password": NEW_PASSWORD},
        headers=admin_headers,
    )

    assert response.status_code == 201
    assert response.json()["role"] == "user"
    created = Account(
        id=response.json()["id"],
        username="plain",
        password=NEW_PASSWORD,
        role=Role.USER,
    )
    headers = await auth_headers(client, created)
    assert (await client.get("/users", headers=headers)).status_code == 403


async def test_create_an_inactive_user_who_cannot_log_in(
    client: httpx.AsyncClient, admin_headers: dict[str, str]
) -> None:
    response = await client.post(
        "/users",
        json={"username": "dormant", "password": NEW_PASSWORD, "is_active": False},
        headers=admin_headers,
    )

    assert response.status_code == 201
    assert response.json()["is_active"] is False
    login_attempt = await client.post(
        "/auth/token", data={"username": "dormant", "password": NEW_PASSWORD}
    )
    assert login_attempt.status_code == 401


async def test_create_a_user_with_a_taken_username_is_a_conflict(
    client: httpx.AsyncClient, user: Account, admin_headers: dict[str, str]
) -> None:
    response = await client.post(
        "/users",
        json={"username": user.username.upper(), "password": NEW_PASSWORD},
        headers=admin_headers,
    )

    assert response.status_code == 409
    _, total = await _list(client, admin_headers)
    assert total == 2


@pytest.mark.parametrize(
    "body",
    [
        {"username": "x", "password": NEW_PASSWORD},
        {"username": "valid-name", "password": "short"},
        {"username": "valid-name", "password": NEW_PASSWORD, "role": "root"},
        {"username": "valid-name", "password": NEW_PASSWORD, "extra": 1},
    ],
    ids=["short-username", "short-password", "unknown-role", "unknown-field"],
)
async def test_create_a_user_validates_the_body(
    client: httpx.AsyncClient, admin_headers: dict[str, str], body: dict[str, object]
) -> None:
    response = await client.post("/users", json=body, headers=admin_headers)

    assert response.status_code == 422
    assert NEW_PASSWORD not in response.text


async def test_promotion_takes_effect_on_the_users_current_token(
    client: httpx.AsyncClient,
    user: Account,
    user_headers: dict[str, str],
    admin_headers: dict[str, str],
) -> None:
    assert (await client.get("/users", headers=user_headers)).status_code == 403

    response = await client.patch(
        f"/users/{user.id}", json={"role": "admin"}, headers=admin_headers
    )

    assert response.status_code == 200
    assert response.json()["role"] == "admin"
    assert (await client.get("/users", headers=user_headers)).status_code == 200

    demoted = await client.patch(
        f"/users/{user.id}", json={"role": "user"}, headers=admin_headers
    )
    assert demoted.status_code == 200
    assert (await client.get("/users", headers=user_headers)).status_code == 403


async def test_deactivation_ends_logins_and_reactivation_allows_them_again(
    client: httpx.AsyncClient,
    user: Account,
    admin_headers: dict[str, str],
) -> None:
    tokens = await login(client, user)
    headers = {"Authorization": f"Bearer {tokens['access_token']}"}

    response = await client.patch(
        f"/users/{user.id}", json={"is_active": False}, headers=admin_headers
    )

    assert response.status_code == 200
    assert response.json()["is_active"] is False
    await assert_login_ended(
        client, headers=headers, refresh_token=tokens["refresh_token"]
    )
    blocked = await client.post(
        "/auth/token", data={"username": user.username, "password": user.password}
    )
    assert blocked.status_code == 401

    reactivated = await client.patch(
        f"/users/{user.id}", json={"is_active": True}, headers=admin_headers
    )
    assert reactivated.status_code == 200
    assert reactivated.json()["is_active"] is True
    # The old login stays ended; a new one works.
    assert (await client.get("/users/me", headers=headers)).status_code == 401
    await login(client, user)


@pytest.mark.parametrize(
    "body",
    [{"role": "user"}, {"is_active": False}, {"role": "user", "is_active": True}],
    ids=["demote", "deactivate", "demote-while-active"],
)
async def test_admins_cannot_demote_or_deactivate_themselves(
    client: httpx.AsyncClient,
    admin: Account,
    admin_headers: dict[str, str],
    body: dict[str, object],
) -> None:
    response = await client.patch(
        f"/users/{admin.id}", json=body, headers=admin_headers
    )

    assert response.status_code == 409
    me = await client.get(f"/users/{admin.id}", headers=admin_headers)
    assert me.json()["role"] == "admin"
    assert me.json()["is_active"] is True


async def test_an_admin_can_demote_another_admin(
    client: httpx.AsyncClient, db: Database, admin_headers: dict[str, str]
) -> None:
    other_admin = await create_user(db, role=Role.ADMIN)
    other_headers = await auth_headers(client, other_admin)

    response = await client.patch(
        f"/users/{other_admin.id}", json={"role": "user"}, headers=admin_headers
    )

    assert response.status_code == 200
    assert (await client.get("/users", headers=other_headers)).status_code == 403


async def test_update_an_unknown_user_is_404(
    client: httpx.AsyncClient, admin_headers: dict[str, str]
) -> None:
    response = await client.patch(
        "/users/999999", json={"role": "admin"}, headers=admin_headers
    )

    assert response.status_code == 404


@pytest.mark.parametrize(
    "body",
    [
        {"username": "renamed"},
        {"password": NEW_PASSWORD},
        {"role": "root"},
        {"is_active": "sometimes"},
    ],
    ids=["username", "password", "unknown-role", "not-a-bool"],
)
async def test_update_a_user_accepts_only_role_and_is_active(
    client: httpx.AsyncClient,
    user: Account,
    admin_headers: dict[str, str],
    body: dict[str, object],
) -> None:
    response = await client.patch(f"/users/{user.id}", json=body, headers=admin_headers)

    assert response.status_code == 422
    unchanged = (await client.get(f"/users/{user.id}", headers=admin_headers)).json()
    assert unchanged["username"] == user.username
    assert unchanged["role"] == "user"
    await login(client, user)


@pytest.mark.parametrize("field", ["role", "is_active"])
async def test_update_a_user_refuses_null(
    client: httpx.AsyncClient,
    user: Account,
    admin_headers: dict[str, str],
    field: str,
) -> None:
    response = await client.patch(
        f"/users/{user.id}", json={field: None}, headers=admin_headers
    )

    assert response.status_code == 400
    unchanged = (await client.get(f"/users/{user.id}", headers=admin_headers)).json()
    assert unchanged["role"] == "user"
    assert unchanged["is_active"] is True


async def test_delete_a_user_with_their_questions_and_tokens(
    client: httpx.AsyncClient,
    user: Account,
    user_headers: dict[str, str],
    admin_headers: dict[str, str],
) -> None:
    tokens = await login(client, user)
    asked = await client.post(
        "/questions", json={"content": "Delete me?"}, headers=user_headers
    )
    assert asked.status_code == 201

    response = await client.delete(f"/users/{user.id}", headers=admin_headers)

    assert response.status_code == 204
    assert (
        await client.get(f"/users/{user.id}", headers=admin_headers)
    ).status_code == 404
    questions = await client.get(
        "/questions", params={"user_id": user.id}, headers=admin_headers
    )
    assert questions.json() == []
    await assert_login_ended(
        client, headers=user_headers, refresh_token=tokens["refresh_token"]
    )
    names, _ = await _list(client, admin_headers)
    assert user.username not in names

    again = await client.delete(f"/users/{user.id}", headers=admin_headers)
    assert again.status_code == 404


async def test_admins_cannot_delete_themselves_by_id(
    client: httpx.AsyncClient, admin: Account, admin_headers: dict[str, str]
) -> None:
    response = await client.delete(f"/users/{admin.id}", headers=admin_headers)

    assert response.status_code == 409
    assert (await client.get("/users/me", headers=admin_headers)).status_code == 200


async def test_delete_an_unknown_user_is_404(
    client: httpx.AsyncClient, admin_headers: dict[str, str]
) -> None:
    response = await client.delete("/users/999999", headers=admin_headers)

    assert response.status_code == 404
