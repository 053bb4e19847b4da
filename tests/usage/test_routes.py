"""The usage routes through HTTP: windows of days, filters, paging, the
leaderboard's order, who sees what; on SQLite and PostgreSQL.

The fake upstream counts words: a question of N words costs N prompt tokens
and N + 2 completion tokens (it answers "You asked: ...").
"""

from pathlib import Path
from typing import Any

import httpx
import pytest

from askgate.auth.deps import LOGIN_REQUIRED
from askgate.config import Settings
from askgate.db import Database
from tests.factories import (
    Account,
    auth_headers,
    create_api_key,
    create_user,
    key_headers,
)
from tests.fake_upstream import FakeUpstream
from tests.postgres_server import (
    BACKENDS,
    postgres_server,
    postgres_url,
    with_database,
)
from tests.usage.helpers import Calendar, rows_of, two_models

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
        update={"questions_per_minute": 10_000}
    )


async def ask(
    client: httpx.AsyncClient,
    headers: dict[str, str],
    words: int = 1,
    model: str = "alpha",
) -> None:
    response = await client.post(
        "/questions",
        json={"content": " ".join(["word"] * words), "model": model},
        headers=headers,
    )
    assert response.status_code in (201, 502), response.text


async def get(
    client: httpx.AsyncClient, path: str, headers: dict[str, str]
) -> list[dict[str, Any]]:
    response = await client.get(path, headers=headers)
    assert response.status_code == 200, response.text
    body: list[dict[str, Any]] = response.json()
    return body


async def test_my_daily_usage_by_day_and_model(
    client: httpx.AsyncClient,
    calendar: Calendar,
    user_headers: dict[str, str],
    fake_upstream: FakeUpstream,
) -> None:
    calendar.days_ago = 30  # just outside the default window
    await ask(client, user_headers, words=5)
    calendar.days_ago = 29
    await ask(client, user_headers, words=2)
    calendar.days_ago = 0
    await ask(client, user_headers, words=1)
    await ask(client, user_headers, words=3, model="beta")
    fake_upstream.fail_times, fake_upstream.fail_status = 1, 500
    await ask(client, user_headers, words=1)  # failed: no tokens recorded

    default = await get(client, "/users/me/usage/daily", user_headers)
    oldest = calendar.day(30)
    only_then = await get(
        client, f"/users/me/usage/daily?from={oldest}&to={oldest}", user_headers
    )

    assert rows_of(default, "day", "model", *COUNTS) == [
        (str(calendar.day(29)), "alpha", 1, 0, 2, 4, 6),
        (str(calendar.day(0)), "alpha", 2, 1, 1, 3, 4),
        (str(calendar.day(0)), "beta", 1, 0, 3, 5, 8),
    ]
    assert rows_of(only_then, "day", "model", *COUNTS) == [
        (str(oldest), "alpha", 1, 0, 5, 7, 12)
    ]


async def test_no_one_sees_another_users_rows(
    client: httpx.AsyncClient,
    db: Database,
    user: Account,
    user_headers: dict[str, str],
    admin_headers: dict[str, str],
) -> None:
    other = await create_user(db)
    other_headers = await auth_headers(client, other)
    await ask(client, user_headers)
    await ask(client, other_headers, words=4)
    await ask(client, other_headers, model="beta")
    users_key = key_headers((await create_api_key(client, user_headers))["key"])
    admins_key = key_headers((await create_api_key(client, admin_headers))["key"])

    mine = await get(client, "/users/me/usage/daily", user_headers)
    with_my_key = await get(client, "/users/me/usage/daily", users_key)
    admins_own = await get(client, "/users/me/usage/daily", admin_headers)

    assert rows_of(mine, "model", "questions", "total_tokens") == [("alpha", 1, 4)]
    assert with_my_key == mine
    assert admins_own == []  # the admin's own usage, not everyone's
    every = await get(client, "/usage/daily", admin_headers)
    assert rows_of(every, "user_id", "model", "total_tokens") == [
        (user.id, "alpha", 4),
        (other.id, "alpha", 10),
        (other.id, "beta", 4),
    ]
    for key in (users_key, admins_key):  # a key never carries an admin's powers
        for path in ("/usage/daily", "/usage/leaderboard"):
            refused = await client.get(path, headers=key)
            assert refused.status_code == 403, refused.text
            assert refused.json()["detail"] == LOGIN_REQUIRED
    for path in ("/usage/daily", "/usage/leaderboard"):
        refused = await client.get(path, headers=user_headers)
        assert refused.status_code == 403


async def test_the_admin_filters_by_user_and_model_and_pages(
    client: httpx.AsyncClient,
    db: Database,
    calendar: Calendar,
    admin_headers: dict[str, str],
) -> None:
    first, second = await create_user(db), await create_user(db)
    headers = {a.id: await auth_headers(client, a) for a in (first, second)}
    calendar.days_ago = 1
    await ask(client, headers[second.id], model="beta")
    calendar.days_ago = 0
    for account in (first, second):
        await ask(client, headers[account.id])
        await ask(client, headers[account.id], model="beta")
    yesterday, today = str(calendar.day(1)), str(calendar.day(0))

    async def rows(query: str) -> tuple[list[tuple[Any, ...]], str]:
        response = await client.get(f"/usage/daily?{query}", headers=admin_headers)
        assert response.status_code == 200, response.text
        return (
            rows_of(response.json(), "day", "user_id", "username", "model"),
            response.headers["X-Total-Count"],
        )

    everything = [
        (yesterday, second.id, second.username, "beta"),
        (today, first.id, first.username, "alpha"),
        (today, first.id, first.username, "beta"),
        (today, second.id, second.username, "alpha"),
        (today, second.id, second.username, "beta"),
    ]
    assert await rows("") == (everything, "5")
    assert await rows("limit=2&offset=1") == (everything[1:3], "5")
    assert await rows("offset=5") == ([], "5")
    assert await rows(f"user_id={second.id}") == (
        [r for r in everything if r[1] == second.id],
        "3",
    )
    assert await rows("model=beta") == ([r for r in everything if r[3] == "beta"], "3")
    assert await rows(f"model=alpha&user_id={first.id}") == ([everything[1]], "1")
    assert await rows(f"from={today}") == (everything[1:], "4")
    assert await rows(f"to={yesterday}") == (everything[:1], "1")
    assert await rows("model=gamma") == ([], "0")
    assert await rows("user_id=999999") == ([], "0")


async def test_the_leaderboard_ranks_by_tokens_or_questions(
    client: httpx.AsyncClient,
    db: Database,
    calendar: Calendar,
    admin_headers: dict[str, str],
    fake_upstream: FakeUpstream,
) -> None:
    many, verbose, few, tied = [await create_user(db) for _ in range(4)]
    headers = {a.id: await auth_headers(client, a) for a in (many, verbose, few, tied)}
    for _ in range(3):
        await ask(client, headers[many.id])  # 3 questions, 12 tokens
    await ask(client, headers[verbose.id], words=20)  # 1 question, 42 tokens
    for account in (few, tied):
        await ask(client, headers[account.id])  # 2 questions, 8 tokens
        await ask(client, headers[account.id], model="beta")
    fake_upstream.fail_times, fake_upstream.fail_status = 1, 500
    await ask(client, headers[verbose.id])  # failed: a question, no tokens
    calendar.days_ago = 8  # outside the default 7 days
    for _ in range(2):
        await ask(client, headers[few.id], words=30)  # 2 questions, 124 tokens

    async def board(query: str = "") -> list[tuple[Any, ...]]:
        body = await get(client, f"/usage/leaderboard?{query}", admin_headers)
        return rows_of(body, "user_id", "username", *COUNTS)

    by_tokens = [
        (verbose.id, verbose.username, 2, 1, 20, 22, 42),
        (many.id, many.username, 3, 0, 3, 9, 12),
        (few.id, few.username, 2, 0, 2, 6, 8),
        (tied.id, tied.username, 2, 0, 2, 6, 8),
    ]
    assert await board() == by_tokens
    assert await board("by=tokens&days=7&limit=10") == by_tokens
    assert await board("limit=2") == by_tokens[:2]
    assert [row[0] for row in await board("by=questions")] == [
        many.id,
        verbose.id,  # 2 questions, before `few` and `tied` by user id
        few.id,
        tied.id,
    ]
    over_nine_days = await board("days=9")
    assert over_nine_days[0] == (few.id, few.username, 4, 0, 62, 70, 132)
    assert [row[0] for row in await board("days=9&by=questions")] == [
        few.id,
        many.id,
        verbose.id,
        tied.id,
    ]
    assert await board("days=1&limit=1") == by_tokens[:1]


async def test_usage_is_empty_before_any_question(
    client: httpx.AsyncClient, admin_headers: dict[str, str]
) -> None:
    for path in ("/users/me/usage/daily", "/usage/daily", "/usage/leaderboard"):
        assert await get(client, path, admin_headers) == []
