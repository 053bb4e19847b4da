"""An active admin always remains, and a write made as an admin is decided by the
database as it is when the write happens, not as it was when the request was
authenticated.
On SQLite and PostgreSQL: the check runs inside the write transaction, with the
active admins' rows locked."""

import asyncio
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from typing import Any

import httpx
import pytest
from sqlalchemy import event, func, select, update

from askgate.config import Settings
from askgate.db import Database
from askgate.errors import ADMIN_REQUIRED
from askgate.questions.models import Question
from askgate.users.models import Role, User
from askgate.users.service import LAST_ADMIN
from tests.factories import Account, auth_headers, create_user
from tests.postgres_server import (
    BACKENDS,
    postgres_server,
    postgres_url,
    with_database,
)

__all__ = ["postgres_server", "postgres_url"]  # fixtures used through `with_database`

ROUNDS = 8
Headers = dict[str, str]


@pytest.fixture(params=BACKENDS)
def settings(settings: Settings, request: pytest.FixtureRequest) -> Settings:
    settings = with_database(settings, request)
    settings.login_failures_per_ip = 1_000  # many logins from one address here
    return settings


async def _active_admins(db: Database, *ids: int) -> int:
    async with db.read() as session:
        count = await session.scalar(
            select(func.count()).where(
                User.id.in_(ids), User.role == Role.ADMIN, User.is_active.is_(True)
            )
        )
    return count or 0


async def _demote(
    client: httpx.AsyncClient, target: Account, headers: Headers
) -> httpx.Response:
    return await client.patch(
        f"/users/{target.id}", json={"role": "user"}, headers=headers
    )


async def _deactivate(
    client: httpx.AsyncClient, target: Account, headers: Headers
) -> httpx.Response:
    return await client.patch(
        f"/users/{target.id}", json={"is_active": False}, headers=headers
    )


async def _delete(
    client: httpx.AsyncClient, target: Account, headers: Headers
) -> httpx.Response:
    return await client.delete(f"/users/{target.id}", headers=headers)


Change = Callable[[httpx.AsyncClient, Account, Headers], Awaitable[httpx.Response]]


@pytest.mark.parametrize(
    "change", [_demote, _deactivate, _delete], ids=["demote", "deactivate", "delete"]
)
async def test_two_admins_removing_each_other_at_once_leave_one(
    client: httpx.AsyncClient, db: Database, change: Change
) -> None:
    for _ in range(ROUNDS):
        first = await create_user(db, role=Role.ADMIN)
        second = await create_user(db, role=Role.ADMIN)
        first_headers = await auth_headers(client, first)
        second_headers = await auth_headers(client, second)

        responses = await asyncio.gather(
            change(client, second, first_headers),
            change(client, first, second_headers),
        )

        statuses = Counter(response.status_code for response in responses)
        # The loser is no longer an admin (403), or no longer active or there
        # at all (401), by the time its write runs.
        assert statuses[200] + statuses[204] == 1, [r.text for r in responses]
        assert statuses[401] + statuses[403] == 1, [r.text for r in responses]
        assert await _active_admins(db, first.id, second.id) == 1


async def test_the_last_admin_cannot_delete_their_account(
    client: httpx.AsyncClient, db: Database, admin: Account, admin_headers: Headers
) -> None:
    # An inactive admin is no admin: it cannot administer anything.
    await create_user(db, role=Role.ADMIN, is_active=False)

    refused = await client.delete("/users/me", headers=admin_headers)

    assert refused.status_code == 409
    assert refused.json()["detail"] == LAST_ADMIN
    assert await _active_admins(db, admin.id) == 1

    other = await create_user(db, role=Role.ADMIN)
    assert (await client.delete("/users/me", headers=admin_headers)).status_code == 204
    assert await _active_admins(db, admin.id, other.id) == 1


async def test_the_last_admins_deleting_themselves_at_once_leave_one(
    client: httpx.AsyncClient, db: Database
) -> None:
    for _ in range(ROUNDS):
        admins = [await create_user(db, role=Role.ADMIN) for _ in range(2)]
        async with db.write() as session:  # only these two, this round
            await session.execute(
                update(User)
                .where(User.id.not_in([a.id for a in admins]))
                .values(is_active=False)
            )
        headers = [await auth_headers(client, admin) for admin in admins]

        responses = await asyncio.gather(
            *(client.delete("/users/me", headers=h) for h in headers)
        )

        statuses = sorted(response.status_code for response in responses)
        assert statuses == [204, 409], [r.text for r in responses]
        assert await _active_admins(db, *(a.id for a in admins)) == 1


@pytest.mark.parametrize("write", ["create", "update", "delete", "delete-question"])
async def test_an_admin_demoted_while_their_write_waits_is_refused(
    client: httpx.AsyncClient, db: Database, write: str
) -> None:
    """The caller was an admin when authenticated; by the time its transaction
    writes, another transaction has demoted it: the write is refused."""
    boss = await create_user(db, role=Role.ADMIN)
    demoted = await create_user(db, role=Role.ADMIN)
    target = await create_user(db)
    headers = await auth_headers(client, demoted)
    asked = await client.post(
        "/questions",
        json={"content": "Mine?"},
        headers=await auth_headers(client, target),
    )
    assert asked.status_code == 201, asked.text
    question_id = asked.json()["id"]
    requests = {
        "create": lambda: client.post(
            "/users",
            json={"username": "made-by-ex-admin", "password": "a long passphrase"},
            headers=headers,
        ),
        "update": lambda: client.patch(
            f"/users/{target.id}", json={"role": "admin"}, headers=headers
        ),
        "delete": lambda: client.delete(f"/users/{target.id}", headers=headers),
        "delete-question": lambda: client.delete(
            f"/questions/{question_id}", headers=headers
        ),
    }

    async with db.write() as session:
        # Holds the write lock (SQLite) and the demoted admin's row (PostgreSQL).
        await session.execute(
            update(User).where(User.id == demoted.id).values(role=Role.USER)
        )
        with _first_write_statement(db) as writing:
            request = asyncio.create_task(requests[write]())
            waiting = asyncio.create_task(writing.wait())
            await asyncio.wait({request, waiting}, return_when=asyncio.FIRST_COMPLETED)
            waiting.cancel()
            # Authenticated as an admin, its write transaction has started.
            assert writing.is_set(), (await request).text
    response = await request

    assert response.status_code == 403, response.text
    assert response.json()["detail"] == ADMIN_REQUIRED
    async with db.read() as session:
        unchanged = await session.get(User, target.id)
        assert unchanged is not None
        assert unchanged.role == Role.USER
        made = await session.scalar(
            select(User.id).where(User.username == "made-by-ex-admin")
        )
        assert made is None
        assert await session.get(Question, question_id) is not None
    assert await _active_admins(db, boss.id) == 1


@contextmanager
def _first_write_statement(db: Database) -> Iterator[asyncio.Event]:
    """An event set when a write transaction (of a request) sends a statement."""
    seen = asyncio.Event()

    def listener(conn: Any, *_: Any) -> None:
        # The option askgate.db puts on write sessions (BEGIN IMMEDIATE).
        if conn.get_execution_options().get("askgate_write"):
            seen.set()

    engine = db.engine.sync_engine
    event.listen(engine, "before_cursor_execute", listener)
    try:
        yield seen
    finally:
        event.remove(engine, "before_cursor_execute", listener)
