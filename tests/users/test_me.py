"""The caller's own account: GET, PATCH and DELETE /users/me."""

from datetime import datetime

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

NEW_PASSWORD = "a brand new passphrase"


async def test_read_me_returns_the_account_without_secrets(
    client: httpx.AsyncClient, user: Account, user_headers: dict[str, str]
) -> None:
    response = await client.get("/users/me", headers=user_headers)

    assert response.status_code == 200
    body = response.json()
    assert set(body) == {"id", "username", "email", "role", "is_active", "created_at"}
    assert body["id"] == user.id
    assert body["username"] == user.username
    assert body["email"] is None
    assert body["role"] == "user"
    assert body["is_active"] is True
    assert datetime.fromisoformat(body["created_at"]).tzinfo is not None
    assert "password" not in response.text
    assert "$argon2" not in response.text


async def test_read_me_needs_a_token(client: httpx.AsyncClient) -> None:
    response = await client.get("/users/me")

    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"] == "Bearer"


async def test_password_change_ends_every_login(
    client: httpx.AsyncClient, user: Account
) -> None:
    first = await login(client, user)
    second = await login(client, user)
    headers = {"Authorization": f"Bearer {first['access_token']}"}

    response = await client.patch(
        "/users/me",
        json={"password": NEW_PASSWORD, "current_password": user.password},
        headers=headers,
    )

    assert response.status_code == 200, response.text
    assert "password" not in response.text
    assert "$argon2" not in response.text
    for tokens in (first, second):
        await assert_login_ended(
            client,
            headers={"Authorization": f"Bearer {tokens['access_token']}"},
            refresh_token=tokens["refresh_token"],
        )
    old = await client.post(
        "/auth/token", data={"username": user.username, "password": user.password}
    )
    assert old.status_code == 401
    fresh = await auth_headers(
        client,
        Account(
            id=user.id, username=user.username, password=NEW_PASSWORD, role=user.role
        ),
    )
    assert (await client.get("/users/me", headers=fresh)).status_code == 200


@pytest.mark.parametrize(
    "current_password",
    [
        pytest.param(None, id="missing"),
        pytest.param("not the password", id="wrong"),
    ],
)
async def test_password_change_needs_the_current_password(
    client: httpx.AsyncClient,
    user: Account,
    user_headers: dict[str, str],
    current_password: str | None,
) -> None:
    body = {"password": NEW_PASSWORD}
    if current_password is not None:
        body["current_password"] = current_password

    response = await client.patch("/users/me", json=body, headers=user_headers)

    assert response.status_code == 400
    assert "current_password" in response.json()["detail"]
    # Nothing changed: the login still works, with the old password only.
    assert (await client.get("/users/me", headers=user_headers)).status_code == 200
    await login(client, user)
    rejected = await client.post(
        "/auth/token", data={"username": user.username, "password": NEW_PASSWORD}
    )
    assert rejected.status_code == 401


async def test_a_too_short_password_is_rejected_without_being_echoed(
    client: httpx.AsyncClient, user: Account, user_headers: dict[str, str]
) -> None:
    response = await client.patch(
        "/users/me",
        json={"password": "short7!", "current_password": user.password},
        headers=user_headers,
    )

    assert response.status_code == 422
    assert "short7!" not in response.text
    assert user.password not in response.text


async def test_change_username_and_log_in_with_it(
    client: httpx.AsyncClient, user: Account, user_headers: dict[str, str]
) -> None:
    response = await client.patch(
        "/users/me", json={"username": "Renamed.User"}, headers=user_headers
    )

    assert response.status_code == 200, response.text
    assert response.json()["username"] == "Renamed.User"
    me = await client.get("/users/me", headers=user_headers)
    assert me.json()["username"] == "Renamed.User"
    # Usernames are matched ignoring case at login.
    renamed = Account(
        id=user.id, username="renamed.user", password=user.password, role=user.role
    )
    await login(client, renamed)


async def test_changing_only_the_case_of_my_own_username_is_allowed(
    client: httpx.AsyncClient, user: Account, user_headers: dict[str, str]
) -> None:
    response = await client.patch(
        "/users/me", json={"username": user.username.upper()}, headers=user_headers
    )

    assert response.status_code == 200, response.text
    assert response.json()["username"] == user.username.upper()


async def test_a_username_taken_ignoring_case_is_a_conflict(
    client: httpx.AsyncClient,
    db: Database,
    user: Account,
    user_headers: dict[str, str],
) -> None:
    await create_user(db, username="TakenName")

    response = await client.patch(
        "/users/me", json={"username": "takenNAME"}, headers=user_headers
    )

    assert response.status_code == 409
    me = await client.get("/users/me", headers=user_headers)
    assert me.json()["username"] == user.username


async def test_set_and_remove_the_email(
    client: httpx.AsyncClient, user_headers: dict[str, str]
) -> None:
    set_ = await client.patch(
        "/users/me", json={"email": "me@example.com"}, headers=user_headers
    )
    assert set_.status_code == 200, set_.text
    assert set_.json()["email"] == "me@example.com"

    removed = await client.patch(
        "/users/me", json={"email": None}, headers=user_headers
    )

    assert removed.status_code == 200
    assert removed.json()["email"] is None
    me = await client.get("/users/me", headers=user_headers)
    assert me.json()["email"] is None


async def test_an_email_taken_ignoring_case_is_a_conflict_until_released(
    client: httpx.AsyncClient,
    db: Database,
    user_headers: dict[str, str],
) -> None:
    other = await create_user(db)
    other_headers = await auth_headers(client, other)
    taken = await client.patch(
        "/users/me", json={"email": "Shared@Example.com"}, headers=other_headers
    )
    assert taken.status_code == 200

    conflict = await client.patch(
        "/users/me", json={"email": "shared@example.COM"}, headers=user_headers
    )
    assert conflict.status_code == 409

    released = await client.patch(
        "/users/me", json={"email": None}, headers=other_headers
    )
    assert released.status_code == 200
    claimed = await client.patch(
        "/users/me", json={"email": "shared@example.com"}, headers=user_headers
    )
    assert claimed.status_code == 200


@pytest.mark.parametrize(
    "body",
    [
        pytest.param({"role": "admin"}, id="role"),
        pytest.param({"is_active": False}, id="is_active"),
        pytest.param({"email": "a@example.com", "role": "admin"}, id="role-mixed-in"),
        pytest.param({"id": 1}, id="id"),
    ],
)
async def test_fields_users_may_not_set_are_rejected(
    client: httpx.AsyncClient,
    user: Account,
    user_headers: dict[str, str],
    body: dict[str, object],
) -> None:
    response = await client.patch("/users/me", json=body, headers=user_headers)

    assert response.status_code == 422
    me = (await client.get("/users/me", headers=user_headers)).json()
    assert me["role"] == Role.USER
    assert me["is_active"] is True
    assert me["email"] is None
    assert me["id"] == user.id
    listing = await client.get("/users", headers=user_headers)
    assert listing.status_code == 403


async def test_delete_me_removes_the_account_its_questions_and_tokens(
    client: httpx.AsyncClient,
    db: Database,
    user: Account,
    user_headers: dict[str, str],
    admin_headers: dict[str, str],
) -> None:
    tokens = await login(client, user)
    asked = await client.post(
        "/questions", json={"content": "Soon gone?"}, headers=user_headers
    )
    assert asked.status_code == 201
    bystander = await create_user(db)
    bystander_headers = await auth_headers(client, bystander)
    kept = await client.post(
        "/questions", json={"content": "Still here?"}, headers=bystander_headers
    )
    assert kept.status_code == 201

    response = await client.delete("/users/me", headers=user_headers)

    assert response.status_code == 204
    assert response.content == b""
    await assert_login_ended(
        client, headers=user_headers, refresh_token=tokens["refresh_token"]
    )
    relogin = await client.post(
        "/auth/token", data={"username": user.username, "password": user.password}
    )
    assert relogin.status_code == 401
    lookup = await client.get(f"/users/{user.id}", headers=admin_headers)
    assert lookup.status_code == 404
    theirs = await client.get(
        "/questions", params={"user_id": user.id}, headers=admin_headers
    )
    assert theirs.json() == []
    assert theirs.headers["X-Total-Count"] == "0"
    question = await client.get(
        f"/questions/{asked.json()['id']}", headers=admin_headers
    )
    assert question.status_code == 404
    others = await client.get(
        "/questions", params={"user_id": bystander.id}, headers=admin_headers
    )
    assert [q["id"] for q in others.json()] == [kept.json()["id"]]


async def test_a_deleted_username_can_be_registered_again(
    client: httpx.AsyncClient, user: Account, user_headers: dict[str, str]
) -> None:
    deleted = await client.delete("/users/me", headers=user_headers)
    assert deleted.status_code == 204

    registered = await client.post(
        "/auth/register",
        json={"username": user.username, "password": "yet another passphrase"},
    )

    assert registered.status_code == 201
    assert registered.json()["id"] != user.id
    # The old token must not name the new account.
    assert (await client.get("/users/me", headers=user_headers)).status_code == 401
