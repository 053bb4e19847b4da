"""PATCH /users/me is limited per user (ASKGATE_ACCOUNT_CHANGES_PER_HOUR), every
attempt counted: otherwise any user could test which emails are registered at
full speed. In process and in Redis."""

import httpx
import pytest
from fastapi import FastAPI

from askgate.config import Settings
from askgate.db import Database
from tests.factories import auth_headers, create_user
from tests.redis_server import BACKENDS, redis_server, redis_url, with_backend

__all__ = ["redis_server", "redis_url"]  # fixtures used through `with_backend`

CHANGES = 3
REFUSED = "Too many account changes: at most 3 per hour. Try again in {} seconds."


@pytest.fixture(params=BACKENDS)
def settings(settings: Settings, request: pytest.FixtureRequest) -> Settings:
    settings.account_changes_per_hour = CHANGES
    return with_backend(settings, request)


async def change_email(
    client: httpx.AsyncClient, headers: dict[str, str], email: str
) -> httpx.Response:
    return await client.patch("/users/me", json={"email": email}, headers=headers)


async def test_account_changes_are_limited_per_user_refused_ones_included(
    client: httpx.AsyncClient, db: Database, user_headers: dict[str, str]
) -> None:
    taken = await create_user(db)
    await client.patch(
        "/users/me",
        json={"email": "taken@example.com"},
        headers=await auth_headers(client, taken),
    )
    # Probing which emails are registered: a 409 counts like a 200.
    assert (
        await change_email(client, user_headers, "taken@example.com")
    ).status_code == 409
    for n in range(CHANGES - 1):
        response = await change_email(client, user_headers, f"me{n}@example.com")
        assert response.status_code == 200, response.text

    refused = await change_email(client, user_headers, "probe@example.com")

    assert refused.status_code == 429, refused.text
    retry_after = int(refused.headers["Retry-After"])
    assert 1 <= retry_after <= 3600
    assert refused.json() == {"detail": REFUSED.format(retry_after)}
    me = await client.get("/users/me", headers=user_headers)
    assert me.json()["email"] == f"me{CHANGES - 2}@example.com"


async def test_the_limit_is_per_user(
    client: httpx.AsyncClient, db: Database, user_headers: dict[str, str]
) -> None:
    for n in range(CHANGES):
        await change_email(client, user_headers, f"me{n}@example.com")
    assert (
        await change_email(client, user_headers, "x@example.com")
    ).status_code == 429

    other_headers = await auth_headers(client, await create_user(db))
    response = await change_email(client, other_headers, "other@example.com")
    assert response.status_code == 200, response.text


async def test_unauthenticated_attempts_are_401_not_counted(
    client: httpx.AsyncClient, user_headers: dict[str, str]
) -> None:
    for _ in range(CHANGES + 1):
        assert (await change_email(client, {}, "x@example.com")).status_code == 401

    response = await change_email(client, user_headers, "me@example.com")
    assert response.status_code == 200, response.text


def test_update_me_documents_its_429(app: FastAPI) -> None:
    operation = app.openapi()["paths"]["/users/me"]["patch"]
    assert "Retry-After" in operation["responses"]["429"]["headers"]
    assert "ASKGATE_ACCOUNT_CHANGES_PER_HOUR" in operation["description"]
