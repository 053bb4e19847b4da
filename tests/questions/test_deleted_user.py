"""A user deleted while their question is in flight: the question goes with the
user, quietly. No 500, no cut stream, nothing of the question in the logs (the
engine hides statement parameters), and the other questions of the same
group-committed batch are stored as usual.
"""

import asyncio
import logging

import httpx
import pytest

from askgate.config import Settings
from askgate.db import Database
from askgate.questions.ledger import AccountDeleted
from askgate.runtime import Runtime
from tests.factories import Account, auth_headers, create_user, hold_writes, until
from tests.fake_upstream import FakeUpstream
from tests.postgres_server import (
    BACKENDS,
    postgres_server,
    postgres_url,
    with_database,
)
from tests.test_quota import parse_events

__all__ = ["postgres_server", "postgres_url"]  # fixtures used through `with_database`

SECRET = "my private question 7f3a9c"


@pytest.fixture(params=BACKENDS)
def settings(settings: Settings, request: pytest.FixtureRequest) -> Settings:
    settings = with_database(settings, request)
    # The upstream is held on purpose: only the test releases it.
    return settings.model_copy(update={"llm_read_timeout": 30.0})


def _assert_quiet(caplog: pytest.LogCaptureFixture) -> None:
    assert SECRET not in caplog.text
    assert [r for r in caplog.records if r.levelno >= logging.ERROR] == []
    assert "writes failed" not in caplog.text  # no batch failed on the vanished user


async def _delete(
    client: httpx.AsyncClient, user: Account, admin_headers: dict[str, str]
) -> None:
    response = await client.delete(f"/users/{user.id}", headers=admin_headers)
    assert response.status_code == 204, response.text


@pytest.mark.parametrize("stream", [False, True], ids=["plain", "stream"])
async def test_a_user_deleted_mid_question_loses_it_quietly(
    client: httpx.AsyncClient,
    settings: Settings,
    user: Account,
    user_headers: dict[str, str],
    admin_headers: dict[str, str],
    fake_upstream: FakeUpstream,
    caplog: pytest.LogCaptureFixture,
    stream: bool,
) -> None:
    caplog.set_level(logging.DEBUG)
    settings.daily_token_quota = 10_000  # a reservation is held, too
    fake_upstream.gate = asyncio.Event()
    asking = asyncio.create_task(
        client.post(
            "/questions",
            json={"content": SECRET, "stream": stream},
            headers=user_headers,
        )
    )
    await until(lambda: fake_upstream.requests)
    await _delete(client, user, admin_headers)
    fake_upstream.gate.set()

    response = await asyncio.wait_for(asking, 10)

    if stream:
        assert response.status_code == 200
        last = parse_events(response.text)[-1]
        assert last == {"type": "error", "detail": AccountDeleted().detail}
    else:
        assert response.status_code == 401, response.text
        assert response.json()["detail"] == AccountDeleted().detail
    listed = await client.get("/questions", headers=admin_headers)
    assert listed.json() == []
    _assert_quiet(caplog)


async def test_a_vanished_user_does_not_fail_the_rest_of_the_batch(
    client: httpx.AsyncClient,
    db: Database,
    runtime: Runtime,
    admin_headers: dict[str, str],
    fake_upstream: FakeUpstream,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    first, leaving, staying = [await create_user(db) for _ in range(3)]
    headers = {a.id: await auth_headers(client, a) for a in (first, leaving, staying)}

    def ask(account: Account, content: str) -> "asyncio.Task[httpx.Response]":
        return asyncio.create_task(
            client.post(
                "/questions", json={"content": content}, headers=headers[account.id]
            )
        )

    # Peeks at the ledger's group commit to know how the writes are batched.
    stores = runtime.ledger._stores
    first_gate, later_gate = asyncio.Event(), asyncio.Event()
    fake_upstream.gate = first_gate
    first_asking = ask(first, "first")
    await until(lambda: len(fake_upstream.requests) == 1)
    fake_upstream.gate = later_gate
    leaving_asking, staying_asking = ask(leaving, SECRET), ask(staying, "staying")
    await until(lambda: len(fake_upstream.requests) == 3)
    await _delete(client, leaving, admin_headers)

    async with hold_writes(db, "questions"):
        first_gate.set()  # its write takes the writer, and waits for the lock
        await until(lambda: stores._worker is not None and not stores._pending)
        later_gate.set()  # these two wait together: the next batch
        await until(lambda: len(stores._pending) == 2)

    assert (await asyncio.wait_for(first_asking, 10)).status_code == 201
    assert (await asyncio.wait_for(leaving_asking, 10)).status_code == 401
    stored = await asyncio.wait_for(staying_asking, 10)
    assert stored.status_code == 201, stored.text
    listed = (await client.get("/questions", headers=admin_headers)).json()
    assert sorted(q["content"] for q in listed) == ["first", "staying"]
    # The batch written again counts what it kept, and nothing of the other.
    usage = (await client.get("/usage/daily", headers=admin_headers)).json()
    assert sorted((row["user_id"], row["questions"]) for row in usage) == [
        (first.id, 1),
        (staying.id, 1),
    ]
    _assert_quiet(caplog)
