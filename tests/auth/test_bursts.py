"""Bursts of logins and password changes: attempts are counted before the password
is checked, so a burst gets at most the limits verified and the rest 429 without
hashing, while everyone else's requests keep answering.

The app's hasher is replaced by one that counts the verifications (and the most
running at once) and holds the first one until released: the other user's
requests are made while the burst is being hashed, not before or after it. On
SQLite and PostgreSQL: the original failure was a pool and a write lock held by
hashing.
"""

import asyncio
import threading
from collections.abc import Iterator

import httpx
import pytest
from fastapi import FastAPI
from pwdlib import PasswordHash

from askgate.app import create_app
from askgate.auth import security
from askgate.config import Settings
from askgate.db import Database
from askgate.users.service import WRONG_CURRENT_PASSWORD
from tests.factories import Account, create_user, login
from tests.postgres_server import (
    BACKENDS,
    postgres_server,
    postgres_url,
    with_database,
)

__all__ = ["postgres_server", "postgres_url"]  # fixtures used through `with_database`

PER_IP = 30  # the defaults
PER_ACCOUNT = 5
ACCOUNT_CHANGES = 10
HASHING_THREADS = 2
LOGIN_BURST = 300
PATCH_BURST = 80
WRONG = "not the password at all"
NEW_PASSWORD = "a brand new passphrase"
ATTACKER_IP = "203.0.113.66"
LOCKED = "Too many failed login attempts. Try again in {} seconds."


class CountingHasher:
    """The real hasher, counting verifications from `arm()` on; the first after it
    waits for `release`."""

    def __init__(self, real: PasswordHash) -> None:
        self._real = real
        self._lock = threading.Lock()
        self.verified = 0
        self.running = 0
        self.most_running = 0
        self.started = threading.Event()
        self.release = threading.Event()
        self.release.set()  # until armed

    def arm(self) -> None:
        self.verified = self.most_running = 0
        self.started.clear()
        self.release.clear()

    def hash(self, password: str) -> str:
        return self._real.hash(password)

    def verify(self, password: str, password_hash: str) -> bool:
        with self._lock:
            self.verified += 1
            self.running += 1
            self.most_running = max(self.most_running, self.running)
            first = not self.started.is_set()
            self.started.set()
        try:
            if first:
                self.release.wait(timeout=60)
            return self._real.verify(password, password_hash)
        finally:
            with self._lock:
                self.running -= 1

    async def wait_until_started(self) -> None:
        for _ in range(1000):
            if self.started.is_set():
                return
            await asyncio.sleep(0.01)
        raise AssertionError("no verification started")


@pytest.fixture(params=BACKENDS)
def settings(settings: Settings, request: pytest.FixtureRequest) -> Settings:
    settings.password_hash_concurrency = HASHING_THREADS
    return with_database(settings, request)


@pytest.fixture
def hasher(monkeypatch: pytest.MonkeyPatch) -> Iterator[CountingHasher]:
    counting = CountingHasher(security._password_hash)
    monkeypatch.setattr(security, "_password_hash", counting)
    yield counting
    counting.release.set()  # never leave a worker thread waiting


def client_at(app: FastAPI, ip: str) -> httpx.AsyncClient:
    transport = httpx.ASGITransport(app=app, client=(ip, 40000))
    return httpx.AsyncClient(transport=transport, base_url="http://test")


async def keeps_answering(client: httpx.AsyncClient, tokens: dict[str, str]) -> None:
    """Another user's reads and token refreshes answer (no 500, no pool timeout)."""
    for _ in range(3):
        headers = {"Authorization": f"Bearer {tokens['access_token']}"}
        me = await client.get("/users/me", headers=headers)
        assert me.status_code == 200, me.text
        refreshed = await client.post(
            "/auth/refresh", json={"refresh_token": tokens["refresh_token"]}
        )
        assert refreshed.status_code == 200, refreshed.text
        tokens = refreshed.json()


def statuses(responses: list[httpx.Response]) -> dict[int, int]:
    counts: dict[int, int] = {}
    for response in responses:
        counts[response.status_code] = counts.get(response.status_code, 0) + 1
    return counts


async def test_a_login_burst_from_one_address_gets_only_its_limit_verified(
    app: FastAPI,
    client: httpx.AsyncClient,
    db: Database,
    hasher: CountingHasher,
) -> None:
    other = await create_user(db)
    other_tokens = await login(client, other)
    hasher.arm()

    async with client_at(app, ATTACKER_IP) as attacker:
        burst = asyncio.gather(
            *(
                attacker.post(
                    "/auth/token", data={"username": f"ghost{n}", "password": WRONG}
                )
                for n in range(LOGIN_BURST)
            )
        )
        await hasher.wait_until_started()
        await keeps_answering(client, other_tokens)  # while the burst is being verified
        hasher.release.set()
        responses = await burst

    assert statuses(responses) == {401: PER_IP, 429: LOGIN_BURST - PER_IP}
    assert hasher.verified == PER_IP
    assert hasher.most_running <= HASHING_THREADS
    refused = next(r for r in responses if r.status_code == 429)
    assert refused.json() == {"detail": LOCKED.format(refused.headers["Retry-After"])}
    # The address stays locked, for a right password too; others are not.
    assert (
        await attacker_login(app, other.username, other.password)
    ).status_code == 429
    await keeps_answering(client, await login(client, other))


async def attacker_login(app: FastAPI, username: str, password: str) -> httpx.Response:
    async with client_at(app, ATTACKER_IP) as attacker:
        return await attacker.post(
            "/auth/token", data={"username": username, "password": password}
        )


def change_password(
    client: httpx.AsyncClient, headers: dict[str, str], current: str
) -> "asyncio.Future[httpx.Response]":
    return asyncio.ensure_future(
        client.patch(
            "/users/me",
            json={"password": NEW_PASSWORD, "current_password": current},
            headers=headers,
        )
    )


async def test_a_burst_of_wrong_current_passwords_is_a_burst_of_failed_logins(
    client: httpx.AsyncClient,
    db: Database,
    user: Account,
    user_headers: dict[str, str],
    hasher: CountingHasher,
) -> None:
    other = await create_user(db)
    other_tokens = await login(client, other)
    hasher.arm()

    burst = asyncio.gather(
        *(change_password(client, user_headers, WRONG) for _ in range(PATCH_BURST))
    )
    await hasher.wait_until_started()
    await keeps_answering(client, other_tokens)
    hasher.release.set()
    responses = await burst

    # 10 changes an hour pass the account-change limit; of those, 5 wrong
    # passwords lock the account; nothing else is verified.
    assert statuses(responses) == {400: PER_ACCOUNT, 429: PATCH_BURST - PER_ACCOUNT}
    assert hasher.verified == PER_ACCOUNT
    assert hasher.most_running <= HASHING_THREADS
    wrong = next(r for r in responses if r.status_code == 400)
    assert wrong.json() == {"detail": WRONG_CURRENT_PASSWORD}
    # The same lockout as logins: the right password cannot log in now.
    locked = await client.post(
        "/auth/token", data={"username": user.username, "password": user.password}
    )
    assert locked.status_code == 429
    assert locked.json() == {"detail": LOCKED.format(locked.headers["Retry-After"])}


async def test_failed_logins_lock_password_changes_too(
    client: httpx.AsyncClient,
    user: Account,
    user_headers: dict[str, str],
    hasher: CountingHasher,
) -> None:
    for _ in range(PER_ACCOUNT):
        failed = await client.post(
            "/auth/token", data={"username": user.username.upper(), "password": WRONG}
        )
        assert failed.status_code == 401
    verified = hasher.verified

    locked = await change_password(client, user_headers, user.password)

    assert locked.status_code == 429, locked.text
    assert locked.json() == {"detail": LOCKED.format(locked.headers["Retry-After"])}
    assert hasher.verified == verified  # refused before hashing
    assert (await client.get("/users/me", headers=user_headers)).status_code == 200


async def test_a_right_current_password_clears_the_accounts_failures(
    client: httpx.AsyncClient, user: Account, user_headers: dict[str, str]
) -> None:
    for _ in range(PER_ACCOUNT - 1):
        wrong = await change_password(client, user_headers, WRONG)
        assert wrong.status_code == 400

    changed = await change_password(client, user_headers, user.password)
    assert changed.status_code == 200, changed.text

    for _ in range(PER_ACCOUNT - 1):
        failed = await client.post(
            "/auth/token", data={"username": user.username, "password": WRONG}
        )
        assert failed.status_code == 401
    relogin = await client.post(
        "/auth/token", data={"username": user.username, "password": NEW_PASSWORD}
    )
    assert relogin.status_code == 200, relogin.text


async def test_wrong_current_passwords_count_against_the_address(
    settings: Settings, db: Database
) -> None:
    settings.login_failures_per_ip = 3
    app = create_app(settings)
    victim, bystander = await create_user(db), await create_user(db)
    async with app.router.lifespan_context(app), client_at(app, ATTACKER_IP) as c:
        tokens = await login(c, victim)
        headers = {"Authorization": f"Bearer {tokens['access_token']}"}
        for _ in range(3):
            assert (await change_password(c, headers, WRONG)).status_code == 400

        # The address is locked: for another account's login too.
        response = await c.post(
            "/auth/token",
            data={"username": bystander.username, "password": bystander.password},
        )
        assert response.status_code == 429, response.text
