"""Argon2 (tens of milliseconds a hash) runs with no transaction and no pooled
connection held: a login, registration or password change being hashed never holds
SQLite's write lock, so every other writer goes on meanwhile (a writer held behind
the lock would wait up to SQLite's 30 s busy timeout).

Each test holds the app's hasher in one call until released, so "meanwhile" is
certain, not a matter of timing. They run on PostgreSQL too, where the checks that
replace the held lock (a login or a password change is written only if the hash
it checked is still there) rely on row locks instead.
"""

import asyncio
import threading
import time
from collections.abc import Callable, Coroutine, Iterator
from typing import Any

import httpx
import pytest
from pwdlib import PasswordHash
from pydantic import SecretStr
from sqlalchemy import select

from askgate.app import create_app
from askgate.auth import security
from askgate.auth.service import BAD_CREDENTIALS
from askgate.config import Settings
from askgate.db import Database
from askgate.users.models import Role, User
from askgate.users.service import PASSWORD_CHANGED_MEANWHILE
from tests.factories import Account, auth_headers, create_user, login
from tests.postgres_server import (
    BACKENDS,
    postgres_server,
    postgres_url,
    with_database,
)

__all__ = ["postgres_server", "postgres_url"]  # fixtures used through `with_database`

PROMPTLY = 5.0  # seconds
NEW_PASSWORD = "a brand new passphrase"


class HeldHasher:
    """The app's hasher, whose first `hash` or `verify` call waits for `release`."""

    def __init__(self, real: PasswordHash, method: str) -> None:
        self._real = real
        self._method = method
        self.started = threading.Event()
        self.release = threading.Event()

    def hash(self, password: str) -> str:
        self._hold("hash")
        return self._real.hash(password)

    def verify(self, password: str, password_hash: str) -> bool:
        self._hold("verify")
        return self._real.verify(password, password_hash)

    def _hold(self, method: str) -> None:
        if method != self._method or self.started.is_set():
            return
        self.started.set()
        self.release.wait(timeout=60)

    async def wait_until_held(self) -> None:
        deadline = time.monotonic() + PROMPTLY
        while not self.started.is_set():
            assert time.monotonic() < deadline, f"no {self._method} call started"
            await asyncio.sleep(0.005)


Hold = Callable[[str], HeldHasher]


@pytest.fixture(params=BACKENDS)
def settings(settings: Settings, request: pytest.FixtureRequest) -> Settings:
    return with_database(settings, request)


@pytest.fixture
def hold(monkeypatch: pytest.MonkeyPatch) -> Iterator[Hold]:
    held: list[HeldHasher] = []

    def patch(method: str) -> HeldHasher:
        hasher = HeldHasher(security._password_hash, method)
        monkeypatch.setattr(security, "_password_hash", hasher)
        held.append(hasher)
        return hasher

    yield patch
    for hasher in held:  # never leave a worker thread waiting
        hasher.release.set()


@pytest.fixture
async def other_headers(client: httpx.AsyncClient, db: Database) -> dict[str, str]:
    """Another user, logged in before any hasher is held."""
    return await auth_headers(client, await create_user(db))


async def promptly_ask(client: httpx.AsyncClient, headers: dict[str, str]) -> None:
    """A write request (a question is stored before and after the upstream call)."""
    response = await asyncio.wait_for(
        client.post("/questions", json={"content": "Still there?"}, headers=headers),
        PROMPTLY,
    )
    assert response.status_code == 201, response.text


def change_password(
    client: httpx.AsyncClient, headers: dict[str, str], *, current: str, new: str
) -> Coroutine[Any, Any, httpx.Response]:
    return client.patch(
        "/users/me",
        json={"password": new, "current_password": current},
        headers=headers,
    )


def assert_no_connection_held(db: Database) -> None:
    assert db.engine.pool.checkedout() == 0  # type: ignore[attr-defined]


async def test_a_login_being_verified_blocks_no_writer(
    client: httpx.AsyncClient,
    db: Database,
    user: Account,
    other_headers: dict[str, str],
    hold: Hold,
) -> None:
    hasher = hold("verify")
    logging_in = asyncio.create_task(login(client, user))
    await hasher.wait_until_held()
    assert_no_connection_held(db)

    await promptly_ask(client, other_headers)
    registered = await asyncio.wait_for(
        client.post(
            "/auth/register", json={"username": "newcomer", "password": NEW_PASSWORD}
        ),
        PROMPTLY,
    )
    assert registered.status_code == 201, registered.text

    hasher.release.set()
    assert (await logging_in)["access_token"]


async def test_an_unknown_user_being_verified_blocks_no_writer(
    client: httpx.AsyncClient, other_headers: dict[str, str], hold: Hold
) -> None:
    hasher = hold("verify")  # the dummy hash: same work as for a real user
    logging_in = asyncio.create_task(
        client.post("/auth/token", data={"username": "nobody", "password": "x" * 12})
    )
    await hasher.wait_until_held()

    await promptly_ask(client, other_headers)

    hasher.release.set()
    response = await logging_in
    assert response.status_code == 401
    assert response.json() == {"detail": BAD_CREDENTIALS}


async def test_a_registration_being_hashed_blocks_no_writer(
    client: httpx.AsyncClient,
    db: Database,
    other_headers: dict[str, str],
    hold: Hold,
) -> None:
    hasher = hold("hash")
    registering = asyncio.create_task(
        client.post(
            "/auth/register", json={"username": "newcomer", "password": NEW_PASSWORD}
        )
    )
    await hasher.wait_until_held()
    assert_no_connection_held(db)

    await promptly_ask(client, other_headers)

    hasher.release.set()
    response = await registering
    assert response.status_code == 201, response.text


async def test_a_registration_racing_for_the_same_name_still_gets_409(
    client: httpx.AsyncClient, hold: Hold
) -> None:
    hasher = hold("hash")
    first = asyncio.create_task(
        client.post(
            "/auth/register", json={"username": "Racer", "password": NEW_PASSWORD}
        )
    )
    await hasher.wait_until_held()

    second = await asyncio.wait_for(
        client.post(
            "/auth/register", json={"username": "racer", "password": NEW_PASSWORD}
        ),
        PROMPTLY,
    )
    assert second.status_code == 201, second.text

    hasher.release.set()
    response = await first
    assert response.status_code == 409, response.text
    assert response.json() == {"detail": "This username is already taken"}


async def test_an_admin_creating_a_user_blocks_no_writer(
    client: httpx.AsyncClient,
    admin_headers: dict[str, str],
    other_headers: dict[str, str],
    hold: Hold,
) -> None:
    hasher = hold("hash")
    creating = asyncio.create_task(
        client.post(
            "/users",
            json={"username": "created", "password": NEW_PASSWORD, "role": "admin"},
            headers=admin_headers,
        )
    )
    await hasher.wait_until_held()

    await promptly_ask(client, other_headers)

    hasher.release.set()
    response = await creating
    assert response.status_code == 201, response.text
    assert response.json()["role"] == "admin"


@pytest.mark.parametrize("method", ["verify", "hash"])
async def test_a_password_change_blocks_no_writer(
    client: httpx.AsyncClient,
    db: Database,
    user: Account,
    user_headers: dict[str, str],
    other_headers: dict[str, str],
    hold: Hold,
    method: str,
) -> None:
    hasher = hold(method)  # checking the current password, or hashing the new one
    changing = asyncio.create_task(
        change_password(client, user_headers, current=user.password, new=NEW_PASSWORD)
    )
    await hasher.wait_until_held()
    assert_no_connection_held(db)

    await promptly_ask(client, other_headers)

    hasher.release.set()
    response = await changing
    assert response.status_code == 200, response.text
    relogin = await client.post(
        "/auth/token", data={"username": user.username, "password": NEW_PASSWORD}
    )
    assert relogin.status_code == 200


async def test_first_admin_from_environment_blocks_no_writer(
    settings: Settings, db: Database, hold: Hold
) -> None:
    configured = settings.model_copy(
        update={
            "admin_username": "boss",
            "admin_password": SecretStr("first admin passphrase"),
        }
    )
    second_worker = create_app(configured)

    async def start() -> None:
        async with second_worker.router.lifespan_context(second_worker):
            pass

    hasher = hold("hash")
    starting = asyncio.create_task(start())
    await hasher.wait_until_held()

    await asyncio.wait_for(create_user(db), PROMPTLY)

    hasher.release.set()
    await starting
    async with db.read() as session:
        role = await session.scalar(select(User.role).where(User.username == "boss"))
    assert role == Role.ADMIN


# --- what hashing outside the transaction must not weaken ----------------------


async def test_a_password_change_ends_a_login_verified_just_before_it(
    client: httpx.AsyncClient,
    user: Account,
    user_headers: dict[str, str],
    hold: Hold,
) -> None:
    """The login checked the old password, but writes after the change: it must not
    outlive a change that ends every login."""
    hasher = hold("verify")
    logging_in = asyncio.create_task(
        client.post(
            "/auth/token", data={"username": user.username, "password": user.password}
        )
    )
    await hasher.wait_until_held()

    changed = await asyncio.wait_for(
        change_password(client, user_headers, current=user.password, new=NEW_PASSWORD),
        PROMPTLY,
    )
    assert changed.status_code == 200, changed.text

    hasher.release.set()
    response = await logging_in
    assert response.status_code == 401
    assert response.json() == {"detail": BAD_CREDENTIALS}


async def test_a_deactivation_refuses_a_login_verified_just_before_it(
    client: httpx.AsyncClient,
    user: Account,
    admin_headers: dict[str, str],
    hold: Hold,
) -> None:
    hasher = hold("verify")
    logging_in = asyncio.create_task(
        client.post(
            "/auth/token", data={"username": user.username, "password": user.password}
        )
    )
    await hasher.wait_until_held()

    deactivated = await asyncio.wait_for(
        client.patch(
            f"/users/{user.id}", json={"is_active": False}, headers=admin_headers
        ),
        PROMPTLY,
    )
    assert deactivated.status_code == 200, deactivated.text

    hasher.release.set()
    response = await logging_in
    assert response.status_code == 401
    assert response.json() == {"detail": BAD_CREDENTIALS}


async def test_two_password_changes_at_once_the_later_writer_is_refused(
    client: httpx.AsyncClient, user: Account, hold: Hold
) -> None:
    """Both checked the same current password; the second to write would replace
    a password it never checked, so it is refused (409) and changes nothing."""
    first_headers = await auth_headers(client, user)
    second_headers = await auth_headers(client, user)
    hasher = hold("hash")  # the first change's new hash, after its check
    first = asyncio.create_task(
        change_password(
            client, first_headers, current=user.password, new="the first passphrase"
        )
    )
    await hasher.wait_until_held()

    second = await asyncio.wait_for(
        change_password(
            client, second_headers, current=user.password, new="the second passphrase"
        ),
        PROMPTLY,
    )
    assert second.status_code == 200, second.text

    hasher.release.set()
    response = await first
    assert response.status_code == 409, response.text
    assert response.json() == {"detail": PASSWORD_CHANGED_MEANWHILE}
    relogin = await client.post(
        "/auth/token",
        data={"username": user.username, "password": "the second passphrase"},
    )
    assert relogin.status_code == 200
