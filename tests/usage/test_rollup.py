"""The daily usage rollup equals a recount of the stored questions after a
mixed run: answered, failed and cancelled questions, through POST /questions
and the OpenAI API, on two models, over two days; on SQLite and PostgreSQL."""

import asyncio
from pathlib import Path
from typing import Any

import httpx
import pytest

from askgate.config import Settings
from askgate.db import Database
from tests.factories import Account, auth_headers, create_api_key, create_user
from tests.fake_upstream import FakeUpstream
from tests.postgres_server import (
    BACKENDS,
    postgres_server,
    postgres_url,
    with_database,
)
from tests.usage.helpers import (
    Calendar,
    per_user,
    recount,
    rollup,
    rows_of,
    two_models,
    user_rollup,
)

__all__ = ["postgres_server", "postgres_url"]  # fixtures used through `with_database`

COUNTS = ("questions", "failed", "prompt_tokens", "completion_tokens", "total_tokens")


@pytest.fixture(params=BACKENDS)
def settings(
    request: pytest.FixtureRequest,
    settings: Settings,
    tmp_path: Path,
    fake_upstream: FakeUpstream,
    second_upstream: FakeUpstream,
) -> Settings:
    settings = two_models(settings, tmp_path, fake_upstream, second_upstream)
    return with_database(settings, request).model_copy(
        update={"llm_read_timeout": 30.0}  # only the client leaving ends a hang
    )


async def _ask(
    client: httpx.AsyncClient, headers: dict[str, str], **body: Any
) -> httpx.Response:
    return await client.post(
        "/questions", json={"content": "How many words here", **body}, headers=headers
    )


async def _complete(
    client: httpx.AsyncClient, key: dict[str, str], **body: Any
) -> httpx.Response:
    messages = [{"role": "user", "content": "Count these five words"}]
    return await client.post(
        "/v1/chat/completions",
        json={"model": "alpha", "messages": messages, **body},
        headers=key,
    )


async def _leave_a_question(
    server_url: str, headers: dict[str, str], upstream: FakeUpstream
) -> None:
    """Asked on a real socket; the client leaves while the upstream hangs."""
    upstream.mode = "hang"
    seen = len(upstream.requests)
    async with httpx.AsyncClient(base_url=server_url, timeout=30) as real_client:
        asking = asyncio.create_task(
            real_client.post("/questions", json={"content": "Hello?"}, headers=headers)
        )
        while len(upstream.requests) == seen:
            assert not asking.done(), asking
            await asyncio.sleep(0.02)
        asking.cancel()
        with pytest.raises(asyncio.CancelledError):
            await asking
    upstream.mode = "ok"


async def _run(
    client: httpx.AsyncClient,
    server_url: str,
    headers: dict[str, str],
    fake_upstream: FakeUpstream,
    second_upstream: FakeUpstream,
) -> None:
    key = {"Authorization": f"Bearer {(await create_api_key(client, headers))['key']}"}
    statuses = [
        (await _ask(client, headers)).status_code,
        (await _ask(client, headers, model="beta", stream=True)).status_code,
        (await _complete(client, key)).status_code,
        (await _complete(client, key, model="beta", stream=True)).status_code,
        (
            await _complete(
                client, key, stream=True, stream_options={"include_usage": True}
            )
        ).status_code,
    ]
    fake_upstream.usage = None  # recorded as null: counts 0
    statuses.append((await _ask(client, headers)).status_code)
    fake_upstream.usage = "counted"
    fake_upstream.fail_times = 2  # one failed question on each API
    fake_upstream.fail_status = 500
    statuses.append((await _ask(client, headers)).status_code)
    statuses.append((await _complete(client, key)).status_code)
    second_upstream.mode = "cut_stream"  # fails part way through
    statuses.append(
        (await _complete(client, key, model="beta", stream=True)).status_code
    )
    second_upstream.mode = "ok"
    await _leave_a_question(server_url, headers, fake_upstream)
    # The two refused ones are the upstream's failure, passed on (a 502).
    assert statuses == [201, 200, 200, 200, 200, 201, 502, 502, 200]


async def _stored(
    client: httpx.AsyncClient, headers: dict[str, str], count: int
) -> None:
    """Wait until `count` questions are kept (the cancelled one is stored
    after its client left)."""

    async def until_stored() -> None:
        while (
            len((await client.get("/questions/me?limit=100", headers=headers)).json())
            < count
        ):
            await asyncio.sleep(0.05)

    await asyncio.wait_for(until_stored(), 10)


async def test_the_rollup_equals_a_recount_of_the_questions(
    client: httpx.AsyncClient,
    db: Database,
    server_url: str,
    calendar: Calendar,
    user: Account,
    user_headers: dict[str, str],
    admin_headers: dict[str, str],
    fake_upstream: FakeUpstream,
    second_upstream: FakeUpstream,
) -> None:
    other = await create_user(db)
    other_headers = await auth_headers(client, other)
    calendar.days_ago = 1
    await _run(client, server_url, user_headers, fake_upstream, second_upstream)
    await _ask(client, other_headers, model="beta")
    await _stored(client, user_headers, 10)
    calendar.days_ago = 0
    await _run(client, server_url, user_headers, fake_upstream, second_upstream)
    await _stored(client, user_headers, 20)

    counted = await recount(db)

    assert await rollup(db) == counted
    assert await user_rollup(db) == per_user(counted)
    # The run is what it says: two days, two models, each status, both APIs.
    yesterday, today = calendar.day(1), calendar.day(0)
    assert {(u, day, model) for u, day, model, *_ in counted} == {
        (user.id, day, model)
        for day in (yesterday, today)
        for model in ("alpha", "beta")
    } | {(other.id, yesterday, "beta")}
    listed = (await client.get("/questions/me?limit=20", headers=user_headers)).json()
    assert sorted({q["status"] for q in listed}) == ["answered", "cancelled", "failed"]
    assert sum(n for u, _, _, _, n, *_ in counted if u == user.id) == 2 * 3
    # ...and the routes show it: the user's own days, everyone's for an admin.
    window = f"from={yesterday}&to={today}"
    mine = await client.get(f"/users/me/usage/daily?{window}", headers=user_headers)
    assert rows_of(mine.json(), "day", "model", *COUNTS) == [
        (str(day), model, *numbers, numbers[2] + numbers[3])
        for u, day, model, *numbers in counted
        if u == user.id
    ]
    every = await client.get(f"/usage/daily?{window}", headers=admin_headers)
    assert sorted(rows_of(every.json(), "user_id", "day", "model", *COUNTS[:4])) == [
        (u, str(day), model, *numbers) for u, day, model, *numbers in counted
    ]
    board = await client.get("/usage/leaderboard?days=2", headers=admin_headers)
    by_user: dict[int, list[int]] = {}
    for u, _day, *numbers in per_user(counted):
        by_user[u] = [
            a + b for a, b in zip(by_user.get(u, [0] * 4), numbers, strict=True)
        ]
    assert sorted(rows_of(board.json(), "user_id", *COUNTS[:4])) == [
        (u, *numbers) for u, numbers in sorted(by_user.items())
    ]


async def test_deleting_a_question_does_not_change_usage(
    client: httpx.AsyncClient, db: Database, user_headers: dict[str, str]
) -> None:
    asked = await _ask(client, user_headers)
    before = await client.get("/users/me/usage/daily", headers=user_headers)
    assert before.json()[0]["questions"] == 1

    deleted = await client.delete(
        f"/questions/{asked.json()['id']}", headers=user_headers
    )

    assert deleted.status_code == 204
    after = await client.get("/users/me/usage/daily", headers=user_headers)
    assert after.json() == before.json()
    assert await recount(db) == []
