"""Login throttling: per account and per client address, in process and in Redis."""

import asyncio
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx
import pytest
from fastapi import FastAPI

from askgate.app import create_app
from askgate.auth.service import BAD_CREDENTIALS
from askgate.config import Settings
from askgate.db import Database
from tests.factories import Account, create_user
from tests.redis_server import BACKENDS, redis_server, redis_url, with_backend

__all__ = ["redis_server", "redis_url"]  # fixtures used through `with_backend`

PER_ACCOUNT = 3
PER_IP = 7
WINDOW = 900
WRONG = "not the password at all"


@pytest.fixture(params=BACKENDS)
def settings(settings: Settings, request: pytest.FixtureRequest) -> Settings:
    settings.login_failures_per_account = PER_ACCOUNT
    settings.login_failures_per_ip = PER_IP
    settings.login_failure_window_seconds = WINDOW
    return with_backend(settings, request)


def client_at(app: FastAPI, ip: str) -> httpx.AsyncClient:
    transport = httpx.ASGITransport(app=app, client=(ip, 40000))
    return httpx.AsyncClient(transport=transport, base_url="http://test")


async def log_in(
    client: httpx.AsyncClient,
    username: str,
    password: str,
    headers: dict[str, str] | None = None,
) -> httpx.Response:
    return await client.post(
        "/auth/token",
        data={"username": username, "password": password},
        headers=headers,
    )


def assert_locked(response: httpx.Response, window: int = WINDOW) -> int:
    assert response.status_code == 429, response.text
    assert response.json() == {
        "detail": (
            "Too many failed login attempts. Try again in "
            f"{response.headers['Retry-After']} seconds."
        )
    }
    retry_after = int(response.headers["Retry-After"])
    assert 1 <= retry_after <= window
    return retry_after


async def fail(client: httpx.AsyncClient, username: str, times: int) -> None:
    for _ in range(times):
        response = await log_in(client, username, WRONG)
        assert response.status_code == 401, response.text
        assert response.json() == {"detail": BAD_CREDENTIALS}


async def test_account_locks_after_its_failures_even_for_the_right_password(
    client: httpx.AsyncClient, user: Account
) -> None:
    await fail(client, user.username, PER_ACCOUNT)

    locked = await log_in(client, user.username, user.password)

    assert_locked(locked)
    assert "access_token" not in locked.text
    # Attempts while locked are refused again, and still nothing is issued.
    assert_locked(await log_in(client, user.username, user.password))


async def test_failures_count_for_the_account_ignoring_case(
    client: httpx.AsyncClient, db: Database
) -> None:
    account = await create_user(db, username="CaseUser")

    for spelling in ["caseuser", "CASEUSER", "cAsEuSeR"][:PER_ACCOUNT]:
        assert (await log_in(client, spelling, WRONG)).status_code == 401

    assert_locked(await log_in(client, "CaseUser", account.password))


async def test_unknown_account_is_locked_exactly_like_a_real_one(
    client: httpx.AsyncClient, user: Account
) -> None:
    real = [(await log_in(client, user.username, WRONG)) for _ in range(4)]
    ghost = [(await log_in(client, "nobody-here", WRONG)) for _ in range(4)]

    def shape(response: httpx.Response) -> tuple[int, str, bool]:
        # The seconds to wait are compared apart: the two lockouts began a few
        # hashes apart, so they may round to neighbouring seconds.
        detail = re.sub(r"\d+", "N", response.json()["detail"])
        return response.status_code, detail, "Retry-After" in response.headers

    def wait(response: httpx.Response) -> int:
        return int(response.headers.get("Retry-After", 0))

    assert [r.status_code for r in real] == [401] * PER_ACCOUNT + [429]
    assert [shape(r) for r in ghost] == [shape(r) for r in real]
    assert all(abs(wait(g) - wait(r)) <= 1 for g, r in zip(ghost, real, strict=True))


async def test_success_clears_the_accounts_failures(
    client: httpx.AsyncClient, user: Account
) -> None:
    await fail(client, user.username, PER_ACCOUNT - 1)
    assert (await log_in(client, user.username, user.password)).status_code == 200

    await fail(client, user.username, PER_ACCOUNT - 1)

    assert (await log_in(client, user.username, user.password)).status_code == 200


async def test_lock_of_one_account_leaves_others_alone(
    client: httpx.AsyncClient, user: Account, db: Database
) -> None:
    other = await create_user(db)
    await fail(client, user.username, PER_ACCOUNT)

    assert (await log_in(client, other.username, other.password)).status_code == 200
    assert_locked(await log_in(client, user.username, user.password))


async def test_inactive_account_with_right_password_counts_as_a_failure(
    client: httpx.AsyncClient, db: Database
) -> None:
    inactive = await create_user(db, is_active=False)
    for _ in range(PER_ACCOUNT):
        response = await log_in(client, inactive.username, inactive.password)
        assert response.status_code == 401

    assert_locked(await log_in(client, inactive.username, inactive.password))


async def test_concurrent_guesses_cannot_exceed_the_account_limit(
    client: httpx.AsyncClient, user: Account
) -> None:
    responses = await asyncio.gather(
        *(log_in(client, user.username, WRONG) for _ in range(12))
    )

    statuses = sorted(response.status_code for response in responses)
    assert statuses == [401] * PER_ACCOUNT + [429] * (12 - PER_ACCOUNT)


async def test_client_address_with_many_failures_is_locked_for_every_account(
    app: FastAPI, user: Account
) -> None:
    async with client_at(app, "203.0.113.7") as attacker:
        for n in range(PER_IP):
            assert (await log_in(attacker, f"victim{n}", WRONG)).status_code == 401

        # A new name, and a right password: the address itself is locked.
        assert_locked(await log_in(attacker, user.username, user.password))

    async with client_at(app, "198.51.100.9") as someone_else:
        response = await log_in(someone_else, user.username, user.password)
        assert response.status_code == 200, response.text


async def test_successes_do_not_count_against_the_address(
    app: FastAPI, db: Database
) -> None:
    accounts = [await create_user(db) for _ in range(PER_IP + 2)]
    async with client_at(app, "192.0.2.10") as office:
        for account in accounts:
            response = await log_in(office, account.username, account.password)
            assert response.status_code == 200, response.text


async def test_spoofed_forwarded_for_from_an_untrusted_peer_changes_nothing(
    app: FastAPI, user: Account
) -> None:
    async with client_at(app, "203.0.113.8") as attacker:
        for n in range(PER_IP):
            spoof = {"X-Forwarded-For": f"10.9.8.{n}"}
            response = await log_in(attacker, f"victim{n}", WRONG, headers=spoof)
            assert response.status_code == 401

        fresh = {"X-Forwarded-For": "10.9.9.9, 10.9.9.10"}
        assert_locked(
            await log_in(attacker, user.username, user.password, headers=fresh)
        )


async def test_trusted_proxy_clients_are_told_apart_by_forwarded_for(
    settings: Settings, user: Account
) -> None:
    settings.trusted_proxies = ["10.0.0.0/8"]
    app = create_app(settings)
    async with app.router.lifespan_context(app), client_at(app, "10.0.0.2") as proxy:
        attacker = {"X-Forwarded-For": "spoofed, 203.0.113.50, 10.0.0.3"}
        for n in range(PER_IP):
            response = await log_in(proxy, f"victim{n}", WRONG, headers=attacker)
            assert response.status_code == 401
        assert_locked(
            await log_in(proxy, user.username, user.password, headers=attacker)
        )

        honest = {"X-Forwarded-For": "198.51.100.20"}
        response = await log_in(proxy, user.username, user.password, headers=honest)
        assert response.status_code == 200, response.text


# Long enough for the failures to be verified within it on a busy machine (a
# verification can take a third of a second there); short enough to wait out.
SHORT_WINDOW = 3


@asynccontextmanager
async def short_window_client(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    settings.login_failure_window_seconds = SHORT_WINDOW
    app = create_app(settings)
    async with app.router.lifespan_context(app), client_at(app, "192.0.2.1") as c:
        yield c


async def test_lock_ends_when_the_window_has_passed(
    settings: Settings, user: Account
) -> None:
    async with short_window_client(settings) as client:
        await fail(client, user.username, PER_ACCOUNT)
        retry_after = assert_locked(
            await log_in(client, user.username, user.password), window=SHORT_WINDOW
        )

        # Waiting out exactly the advertised Retry-After is enough.
        await asyncio.sleep(retry_after)

        assert (await log_in(client, user.username, user.password)).status_code == 200


def test_login_documents_its_429(app: FastAPI) -> None:
    responses = app.openapi()["paths"]["/auth/token"]["post"]["responses"]

    assert "Retry-After" in responses["429"]["headers"]
    schema = responses["429"]["content"]["application/json"]["schema"]
    assert schema == {"$ref": "#/components/schemas/ErrorDetail"}
