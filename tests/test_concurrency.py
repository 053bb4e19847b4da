"""Integrity under concurrency on SQLite: races settle in the database (unique
indexes, conditional updates, BEGIN IMMEDIATE writers), never as a 5xx or a
"database is locked" reaching the client."""

import asyncio
from collections import Counter
from collections.abc import Coroutine
from typing import Any

import httpx
import pytest

from askgate.config import Settings
from askgate.db import Database
from tests.factories import Account, create_user, login

UNLIMITED = 1_000_000


@pytest.fixture(autouse=True)
def _no_rate_limits(settings: Settings) -> None:
    # The races are the subject here, not the abuse limits.
    settings.registrations_per_hour = UNLIMITED
    settings.questions_per_minute = UNLIMITED
    settings.login_failures_per_account = UNLIMITED
    settings.login_failures_per_ip = UNLIMITED
    settings.account_changes_per_hour = UNLIMITED
    settings.max_concurrent_questions_per_user = UNLIMITED


def assert_no_server_error(responses: list[httpx.Response]) -> None:
    for response in responses:
        assert response.status_code < 500, response.text
        assert "locked" not in response.text.lower(), response.text


async def test_one_username_registered_100_times_at_once(
    client: httpx.AsyncClient,
) -> None:
    async def register(i: int) -> httpx.Response:
        # Different case each time: uniqueness ignores case.
        name = "Racer" if i % 2 else "racer"
        return await client.post(
            "/auth/register",
            json={"username": name, "password": f"a long racing password {i}"},
        )

    responses = await asyncio.gather(*(register(i) for i in range(100)))

    assert_no_server_error(responses)
    statuses = Counter(response.status_code for response in responses)
    assert statuses == {201: 1, 409: 99}
    for response in responses:
        if response.status_code == 409:
            assert response.json()["detail"]
    winner = next(r for r in responses if r.status_code == 201).json()
    assert winner["username"].lower() == "racer"


async def test_one_refresh_token_used_20_times_at_once(
    client: httpx.AsyncClient, user: Account
) -> None:
    tokens = await login(client, user)

    responses = await asyncio.gather(
        *(
            client.post(
                "/auth/refresh", json={"refresh_token": tokens["refresh_token"]}
            )
            for _ in range(20)
        )
    )

    assert_no_server_error(responses)
    assert {response.status_code for response in responses} <= {200, 401}
    successors = [r.json() for r in responses if r.status_code == 200]
    assert len(successors) <= 1
    # A successor may be live only if no loser revoked the login after it won.
    live = 0
    for pair in successors:
        again = await client.post(
            "/auth/refresh", json={"refresh_token": pair["refresh_token"]}
        )
        assert again.status_code in (200, 401)
        live += again.status_code == 200
    assert live <= 1
    # Every loser presented a used token: the login is revoked, all of it.
    if len(successors) < len(responses):
        for pair in successors:
            me = await client.get(
                "/users/me",
                headers={"Authorization": f"Bearer {pair['access_token']}"},
            )
            assert me.status_code == 401


async def test_50_concurrent_writers(client: httpx.AsyncClient, db: Database) -> None:
    accounts = [await create_user(db) for _ in range(20)]
    headers = []
    for account in accounts:
        tokens = await login(client, account)
        headers.append({"Authorization": f"Bearer {tokens['access_token']}"})

    def register(i: int) -> Coroutine[Any, Any, httpx.Response]:
        return client.post(
            "/auth/register",
            json={"username": f"writer{i}", "password": "a long writer pass"},
        )

    def change_password(i: int) -> Coroutine[Any, Any, httpx.Response]:
        return client.patch(
            "/users/me",
            json={
                "password": f"a brand new passphrase {i}",
                "current_password": accounts[i].password,
            },
            headers=headers[i],
        )

    def ask(i: int) -> Coroutine[Any, Any, httpx.Response]:
        return client.post(
            "/questions", json={"content": f"question {i}"}, headers=headers[i]
        )

    def set_email(i: int) -> Coroutine[Any, Any, httpx.Response]:
        return client.patch(
            "/users/me", json={"email": f"w{i}@example.com"}, headers=headers[i]
        )

    writers = (
        [register(i) for i in range(20)]
        + [change_password(i) for i in range(10)]
        + [ask(i) for i in range(10, 20)]
        + [set_email(i) for i in range(10, 20)]
    )
    assert len(writers) == 50
    responses = await asyncio.gather(*writers)

    assert_no_server_error(responses)
    assert [r.status_code for r in responses[:20]] == [201] * 20
    assert [r.status_code for r in responses[20:30]] == [200] * 10
    assert [r.status_code for r in responses[30:40]] == [201] * 10
    assert [r.status_code for r in responses[40:50]] == [200] * 10
    # Every write is really there.
    for i in range(10):
        relogin = await client.post(
            "/auth/token",
            data={
                "username": accounts[i].username,
                "password": f"a brand new passphrase {i}",
            },
        )
        assert relogin.status_code == 200
    for i in range(10, 20):
        history = await client.get("/questions/me", headers=headers[i])
        assert [q["content"] for q in history.json()] == [f"question {i}"]
