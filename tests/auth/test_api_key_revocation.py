"""A key's end reaches every worker and instance at once (the auth epoch, bumped
by the `api_keys` triggers), on SQLite and PostgreSQL; its last-use writes,
throttled, leave the caches alone."""

import asyncio
from collections.abc import AsyncIterator
from datetime import datetime, timedelta

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import select, text

from askgate.api_keys import last_used
from askgate.api_keys import service as keys_service
from askgate.api_keys.models import ApiKey
from askgate.app import create_app
from askgate.config import Settings
from askgate.db import Database, utcnow
from askgate.runtime import Runtime
from tests.factories import Account, create_api_key, key_headers
from tests.postgres_server import (
    BACKENDS,
    postgres_server,
    postgres_url,
    with_database,
)

__all__ = ["postgres_server", "postgres_url"]  # fixtures used through `with_database`


@pytest.fixture(params=BACKENDS)
def settings(settings: Settings, request: pytest.FixtureRequest) -> Settings:
    return with_database(settings, request)


@pytest.fixture
async def other_app(settings: Settings) -> AsyncIterator[FastAPI]:
    """A second askgate on the same database: another worker or instance."""
    app: FastAPI = create_app(settings.model_copy())
    async with app.router.lifespan_context(app):
        yield app


@pytest.fixture
async def other_instance(other_app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=other_app)
    async with httpx.AsyncClient(transport=transport, base_url="http://b") as c:
        yield c


async def _me(client: httpx.AsyncClient, key: str) -> int:
    return (await client.get("/users/me", headers=key_headers(key))).status_code


async def _epoch(db: Database) -> int:
    async with db.read() as session:
        return int(await session.scalar(text("SELECT value FROM auth_epoch")) or 0)


async def _last_used(db: Database, key_id: int) -> datetime | None:
    async with db.read() as session:
        return await session.scalar(
            select(ApiKey.last_used_at).where(ApiKey.id == key_id)
        )


async def test_a_key_revoked_elsewhere_fails_at_once(
    client: httpx.AsyncClient,
    other_instance: httpx.AsyncClient,
    user_headers: dict[str, str],
    admin_headers: dict[str, str],
) -> None:
    mine = await create_api_key(client, user_headers)
    theirs = await create_api_key(client, user_headers)
    assert await _me(other_instance, mine["key"]) == 200  # now cached there
    assert await _me(other_instance, theirs["key"]) == 200

    revoked = await client.delete(
        f"/users/me/api-keys/{mine['id']}", headers=user_headers
    )
    assert revoked.status_code == 204
    assert await _me(other_instance, mine["key"]) == 401

    by_admin = await client.delete(f"/api-keys/{theirs['id']}", headers=admin_headers)
    assert by_admin.status_code == 204
    assert await _me(other_instance, theirs["key"]) == 401


async def test_a_deactivated_or_deleted_users_keys_fail_at_once(
    client: httpx.AsyncClient,
    other_instance: httpx.AsyncClient,
    user: Account,
    user_headers: dict[str, str],
    admin_headers: dict[str, str],
) -> None:
    key = (await create_api_key(client, user_headers))["key"]
    assert await _me(other_instance, key) == 200

    deactivated = await client.patch(
        f"/users/{user.id}", json={"is_active": False}, headers=admin_headers
    )
    assert deactivated.status_code == 200
    assert await _me(other_instance, key) == 401
    asked = await other_instance.post(
        "/questions", json={"content": "still?"}, headers=key_headers(key)
    )
    assert asked.status_code == 401

    reactivated = await client.patch(
        f"/users/{user.id}", json={"is_active": True}, headers=admin_headers
    )
    assert reactivated.status_code == 200
    assert await _me(other_instance, key) == 200

    deleted = await client.delete(f"/users/{user.id}", headers=admin_headers)
    assert deleted.status_code == 204
    assert await _me(other_instance, key) == 401


async def test_an_expiry_changed_in_the_database_applies_at_once(
    client: httpx.AsyncClient, db: Database, user_headers: dict[str, str]
) -> None:
    """No code path can forget to invalidate: the triggers see the change."""
    created = await create_api_key(client, user_headers)
    assert await _me(client, created["key"]) == 200

    async with db.write() as session:
        await session.execute(
            text("UPDATE api_keys SET expires_at = :past WHERE id = :id"),
            {"past": utcnow() - timedelta(seconds=1), "id": created["id"]},
        )

    assert await _me(client, created["key"]) == 401


async def test_last_used_at_is_written_at_most_once_a_minute_and_empties_no_cache(
    client: httpx.AsyncClient,
    runtime: Runtime,
    db: Database,
    user_headers: dict[str, str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    created = await create_api_key(client, user_headers)
    epoch = await _epoch(db)

    assert await _me(client, created["key"]) == 200
    await runtime.key_uses.drain()
    first = await _last_used(db, created["id"])
    assert first is not None

    for _ in range(3):
        assert await _me(client, created["key"]) == 200
    await runtime.key_uses.drain()
    assert await _last_used(db, created["id"]) == first

    a_minute_later = utcnow() + last_used.INTERVAL
    monkeypatch.setattr(last_used, "utcnow", lambda: a_minute_later)
    assert await _me(client, created["key"]) == 200
    await runtime.key_uses.drain()
    assert await _last_used(db, created["id"]) == a_minute_later

    assert await _epoch(db) == epoch  # every cached caller is still good
    listed = await client.get("/users/me/api-keys", headers=user_headers)
    assert listed.json()[0]["last_used_at"] is not None
    # A refused use is no use.
    assert (
        await client.get("/users", headers=key_headers(created["key"]))
    ).status_code == 403


async def test_another_worker_does_not_write_last_used_at_again_within_the_minute(
    client: httpx.AsyncClient,
    other_app: FastAPI,
    other_instance: httpx.AsyncClient,
    db: Database,
    runtime: Runtime,
    user_headers: dict[str, str],
) -> None:
    created = await create_api_key(client, user_headers)
    assert await _me(client, created["key"]) == 200
    await runtime.key_uses.drain()
    first = await _last_used(db, created["id"])

    assert await _me(other_instance, created["key"]) == 200
    await other_app.state.runtime.key_uses.drain()

    assert await _last_used(db, created["id"]) == first


async def test_revoking_a_missing_key_leaves_the_caches_alone(
    client: httpx.AsyncClient, db: Database, user_headers: dict[str, str]
) -> None:
    epoch = await _epoch(db)

    missing = await client.delete("/users/me/api-keys/12345", headers=user_headers)

    assert missing.status_code == 404
    assert await _epoch(db) == epoch


async def test_concurrent_creations_never_pass_the_limit(
    client: httpx.AsyncClient, user_headers: dict[str, str]
) -> None:
    for _ in range(keys_service.MAX_LIVE_KEYS - 2):
        await create_api_key(client, user_headers)

    responses = await asyncio.gather(
        *(
            client.post(
                "/users/me/api-keys", json={"name": f"race {i}"}, headers=user_headers
            )
            for i in range(6)
        )
    )

    assert sorted(r.status_code for r in responses) == [201, 201, 409, 409, 409, 409]
    listed = await client.get("/users/me/api-keys", headers=user_headers)
    assert listed.headers["X-Total-Count"] == str(keys_service.MAX_LIVE_KEYS)
