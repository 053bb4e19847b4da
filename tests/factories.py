"""Small helpers that build what a test needs, through the real code paths."""

import asyncio
import itertools
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from functools import cache
from typing import Any

import httpx
from pwdlib import PasswordHash
from pwdlib.hashers.argon2 import Argon2Hasher
from sqlalchemy import text

from askgate.db import Database
from askgate.users.models import Role, User

PASSWORD = "correct horse battery staple"
_counter = itertools.count(1)


@cache
def _password_hash() -> str:
    # Hashed once per run: Argon2 on every factory user would slow the suite.
    return PasswordHash((Argon2Hasher(),)).hash(PASSWORD)


@dataclass
class Account:
    id: int
    username: str
    password: str
    role: Role


async def create_user(
    db: Database,
    *,
    username: str | None = None,
    role: Role = Role.USER,
    is_active: bool = True,
) -> Account:
    name = username or f"user{next(_counter)}"
    async with db.write() as session:
        user = User(
            username=name,
            password_hash=_password_hash(),
            role=role,
            is_active=is_active,
        )
        session.add(user)
        await session.flush()
        user_id = user.id
    return Account(id=user_id, username=name, password=PASSWORD, role=role)


async def login(client: httpx.AsyncClient, account: Account) -> dict[str, str]:
    """Logs in over HTTP; returns the token response body."""
    response = await client.post(
        "/auth/token",
        data={"username": account.username, "password": account.password},
    )
    assert response.status_code == 200, response.text
    tokens: dict[str, str] = response.json()
    return tokens


async def auth_headers(client: httpx.AsyncClient, account: Account) -> dict[str, str]:
    tokens = await login(client, account)
    return {"Authorization": f"Bearer {tokens['access_token']}"}


async def assert_login_ended(
    client: httpx.AsyncClient, *, headers: dict[str, str], refresh_token: str
) -> None:
    """Both halves of a login are dead: its access token and its refresh token."""
    assert (await client.get("/users/me", headers=headers)).status_code == 401
    refreshed = await client.post(
        "/auth/refresh", json={"refresh_token": refresh_token}
    )
    assert refreshed.status_code == 401


@asynccontextmanager
async def hold_writes(db: Database, table: str) -> AsyncIterator[None]:
    """Until the block ends, askgate's writes to `table` wait: SQLite's write
    lock, or on PostgreSQL an EXCLUSIVE lock on the table (reads go on)."""
    async with db.write() as session:
        if session.get_bind().dialect.name == "postgresql":
            await session.execute(text(f"LOCK TABLE {table} IN EXCLUSIVE MODE"))
        else:
            await session.execute(text("SELECT 1"))  # BEGIN IMMEDIATE takes the lock
        yield


async def until(condition: Callable[[], object], timeout: float = 10) -> None:
    """Wait until `condition()` holds; TimeoutError after `timeout` seconds."""

    async def poll() -> None:
        while not condition():
            await asyncio.sleep(0.01)

    await asyncio.wait_for(poll(), timeout)


async def create_api_key(
    client: httpx.AsyncClient, login_headers: dict[str, str], **fields: object
) -> dict[str, Any]:
    """Creates a personal API key over HTTP; returns the 201 body (with `key`)."""
    response = await client.post(
        "/users/me/api-keys",
        json={"name": "test key", **fields},
        headers=login_headers,
    )
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


def key_headers(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}
