"""The caller cache stays exact: whatever changes a user or a login, in any process,
ends the cached access at once (the auth epoch, bumped by database triggers)."""

import asyncio
from collections.abc import AsyncIterator

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import text

from askgate.app import create_app
from askgate.auth.cache import FreshValue
from askgate.config import Settings
from askgate.db import Database
from askgate.users.models import Role
from tests.factories import Account, create_user, login
from tests.postgres_server import (
    BACKENDS,
    postgres_server,
    postgres_url,
    with_database,
)

__all__ = ["postgres_server", "postgres_url"]  # fixtures used through `with_database`


@pytest.fixture(params=BACKENDS)
def settings(settings: Settings, request: pytest.FixtureRequest) -> Settings:
    """On SQLite (the epoch read on the loop) and PostgreSQL (shared reads)."""
    return with_database(settings, request)


@pytest.fixture
async def other_instance(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    """A second askgate on the same database: another worker or instance."""
    app: FastAPI = create_app(settings.model_copy())
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://b") as c:
            yield c


async def _me(client: httpx.AsyncClient, token: str) -> int:
    response = await client.get(
        "/users/me", headers={"Authorization": f"Bearer {token}"}
    )
    return response.status_code


async def test_a_logout_elsewhere_ends_a_cached_access_token(
    client: httpx.AsyncClient, other_instance: httpx.AsyncClient, user: Account
) -> None:
    tokens = await login(client, user)
    assert await _me(other_instance, tokens["access_token"]) == 200  # now cached

    logout = await client.post(
        "/auth/logout", json={"refresh_token": tokens["refresh_token"]}
    )
    assert logout.status_code == 204

    assert await _me(other_instance, tokens["access_token"]) == 401


async def test_deactivation_and_role_changes_elsewhere_apply_at_once(
    client: httpx.AsyncClient,
    other_instance: httpx.AsyncClient,
    db: Database,
    user: Account,
    admin_headers: dict[str, str],
) -> None:
    tokens = await login(client, user)
    headers = {"Authorization": f"Bearer {tokens['access_token']}"}
    assert (await other_instance.get("/users", headers=headers)).status_code == 403

    promoted = await client.patch(
        f"/users/{user.id}", json={"role": "admin"}, headers=admin_headers
    )
    assert promoted.status_code == 200
    assert (await other_instance.get("/users", headers=headers)).status_code == 200

    demoted = await client.patch(
        f"/users/{user.id}", json={"role": "user"}, headers=admin_headers
    )
    assert demoted.status_code == 200
    assert (await other_instance.get("/users", headers=headers)).status_code == 403

    deactivated = await client.patch(
        f"/users/{user.id}", json={"is_active": False}, headers=admin_headers
    )
    assert deactivated.status_code == 200
    assert await _me(other_instance, tokens["access_token"]) == 401


async def test_a_change_made_directly_in_the_database_applies_at_once(
    client: httpx.AsyncClient, db: Database
) -> None:
    """No code path can forget to invalidate: the triggers see every change."""
    account = await create_user(db, role=Role.USER)
    tokens = await login(client, account)
    assert await _me(client, tokens["access_token"]) == 200

    async with db.write() as session:
        await session.execute(
            text("UPDATE users SET is_active = false WHERE id = :id"),
            {"id": account.id},
        )

    assert await _me(client, tokens["access_token"]) == 401


async def test_a_deleted_user_is_refused_by_every_instance(
    client: httpx.AsyncClient, other_instance: httpx.AsyncClient, user: Account
) -> None:
    tokens = await login(client, user)
    headers = {"Authorization": f"Bearer {tokens['access_token']}"}
    assert await _me(other_instance, tokens["access_token"]) == 200

    assert (await client.delete("/users/me", headers=headers)).status_code == 204

    assert await _me(other_instance, tokens["access_token"]) == 401


async def test_fresh_value_reads_start_after_the_caller_asked() -> None:
    """Concurrent callers share reads, but never one that began before them."""
    value = 0
    started: list[int] = []
    release = asyncio.Event()

    async def read() -> int:
        seen = value  # what a snapshot taken now would show
        started.append(seen)
        await release.wait()
        return seen

    fresh = FreshValue(read)
    first = asyncio.create_task(fresh.get())
    while not started:
        await asyncio.sleep(0)
    assert started == [0]  # the first read is running

    value = 1  # a change commits while that read is in flight
    late = [asyncio.create_task(fresh.get()) for _ in range(10)]
    await asyncio.sleep(0)
    release.set()

    assert await first == 0
    assert await asyncio.gather(*late) == [1] * 10  # all from one later read
    assert started == [0, 1]
