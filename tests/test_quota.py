"""The daily token quota: reserved before the upstream is called, settled after.

The fake upstream's usage is deterministic: the prompt costs one token per word
of the question, the answer ("You asked: <question>") one per word. What the
upstream does not report (a stream that ends early, an upstream that reports no
usage) is estimated from the text: its UTF-8 bytes, plus the prompt's template
overhead (`estimate`).
"""

import asyncio
import json
import math
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from askgate.config import Settings
from askgate.quota.service import PROMPT_OVERHEAD_TOKENS
from tests.factories import Account
from tests.fake_upstream import FakeUpstream, answer_for
from tests.postgres_server import (
    BACKENDS,
    postgres_server,
    postgres_url,
    with_database,
)

__all__ = ["postgres_server", "postgres_url"]  # fixtures used through `with_database`

CONTENT = "hi"
# What the fake upstream reports for CONTENT: 1 prompt + 3 answer tokens.
CONTENT_COST = len(CONTENT.split()) + len(answer_for(CONTENT).split())
USAGE_FIELDS = {
    "day",
    "used_tokens",
    "reserved_tokens",
    "quota",
    "remaining",
    "resets_at",
}


@pytest.fixture(params=BACKENDS)
def settings(settings: Settings, request: pytest.FixtureRequest) -> Settings:
    """Every quota test on SQLite and on PostgreSQL, whose row locks (not one
    writer at a time) keep concurrent reservations within the quota there."""
    settings = with_database(settings, request)
    # Only the quota may refuse a question here, not the per-minute rate limit
    # or the cap on one user's questions at once.
    settings.questions_per_minute = 10_000
    settings.max_concurrent_questions_per_user = 10_000
    return settings


def reservation(content: str, max_tokens: int) -> int:
    """What askgate holds while a question is in flight."""
    return max_tokens + len(content.encode()) + PROMPT_OVERHEAD_TOKENS


def estimate(content: str, answer: str) -> int:
    """What a question costs when the upstream reports no usage."""
    return reservation(content, 0) + len(answer.encode())


async def usage(client: httpx.AsyncClient, headers: dict[str, str]) -> dict[str, Any]:
    response = await client.get("/users/me/usage", headers=headers)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    assert set(body) == USAGE_FIELDS
    return body


async def ask(
    client: httpx.AsyncClient,
    headers: dict[str, str],
    *,
    max_tokens: int,
    content: str = CONTENT,
    stream: bool = False,
) -> httpx.Response:
    return await client.post(
        "/questions",
        json={"content": content, "max_tokens": max_tokens, "stream": stream},
        headers=headers,
    )


async def stored_questions(
    client: httpx.AsyncClient, headers: dict[str, str]
) -> list[dict[str, Any]]:
    response = await client.get("/questions/me?limit=100", headers=headers)
    assert response.status_code == 200, response.text
    questions: list[dict[str, Any]] = response.json()
    return questions


def seconds_to_midnight(now: datetime) -> float:
    midnight = datetime.combine(now.date() + timedelta(days=1), datetime.min.time())
    return (midnight.replace(tzinfo=UTC) - now).total_seconds()


async def test_unlimited_by_default_and_usage_is_still_counted(
    client: httpx.AsyncClient, user_headers: dict[str, str]
) -> None:
    for _ in range(3):
        response = await ask(client, user_headers, max_tokens=10_000)
        assert response.status_code == 201, response.text

    body = await usage(client, user_headers)

    now = datetime.now(UTC)
    assert body["day"] == now.date().isoformat()
    assert body["used_tokens"] == 3 * CONTENT_COST
    assert body["reserved_tokens"] == 0
    assert body["quota"] is None
    assert body["remaining"] is None
    resets_at = datetime.fromisoformat(body["resets_at"])
    assert resets_at == datetime.combine(
        now.date() + timedelta(days=1), datetime.min.time(), tzinfo=UTC
    )


async def test_usage_needs_a_token(client: httpx.AsyncClient) -> None:
    response = await client.get("/users/me/usage")

    assert response.status_code == 401


async def test_a_question_over_the_quota_is_refused_before_the_upstream(
    client: httpx.AsyncClient,
    settings: Settings,
    user_headers: dict[str, str],
    fake_upstream: FakeUpstream,
) -> None:
    settings.daily_token_quota = 200
    first = await ask(client, user_headers, max_tokens=100)
    assert first.status_code == 201, first.text
    left = 200 - CONTENT_COST
    assert (await usage(client, user_headers))["remaining"] == left

    # The largest max_tokens that fits in what is left, and one more.
    fits = left - reservation(CONTENT, 0)

    before = math.ceil(seconds_to_midnight(datetime.now(UTC)))
    refused = await ask(client, user_headers, max_tokens=fits + 1)
    after = math.floor(seconds_to_midnight(datetime.now(UTC)))

    assert refused.status_code == 429, refused.text
    detail = refused.json()["detail"]
    assert f"{left} of 200 tokens left today" in detail
    assert f"may need up to {left + 1}" in detail
    assert "resets at 00:00 UTC" in detail
    assert after <= int(refused.headers["Retry-After"]) <= before
    assert len(fake_upstream.requests) == 1
    assert len(await stored_questions(client, user_headers)) == 1
    body = await usage(client, user_headers)
    assert (body["used_tokens"], body["reserved_tokens"]) == (CONTENT_COST, 0)

    assert (await ask(client, user_headers, max_tokens=fits)).status_code == 201


async def test_a_question_larger_than_the_whole_quota_says_so(
    client: httpx.AsyncClient,
    settings: Settings,
    user_headers: dict[str, str],
    fake_upstream: FakeUpstream,
) -> None:
    settings.daily_token_quota = 50

    response = await ask(client, user_headers, max_tokens=10)

    assert response.status_code == 429
    assert "more than your whole daily quota of 50" in response.json()["detail"]
    assert "Retry-After" in response.headers
    assert fake_upstream.requests == []


async def test_fifty_concurrent_questions_never_exceed_the_quota(
    client: httpx.AsyncClient,
    settings: Settings,
    user: Account,
    user_headers: dict[str, str],
    admin_headers: dict[str, str],
    fake_upstream: FakeUpstream,
) -> None:
    # Each question holds 76 tokens while in flight and costs 4: one at a time,
    # at most 19 would fit in 150, so the quota refuses some whatever the timing.
    settings.daily_token_quota = 150

    responses = await asyncio.gather(
        *(ask(client, user_headers, max_tokens=10) for _ in range(50))
    )

    codes = [response.status_code for response in responses]
    assert set(codes) <= {201, 429}, codes
    answered = codes.count(201)
    assert 1 <= answered < 50
    for response in responses:
        if response.status_code == 429:
            assert "Daily token quota exceeded" in response.json()["detail"]
    body = await usage(client, user_headers)
    assert body["used_tokens"] == answered * CONTENT_COST <= 150
    assert body["reserved_tokens"] == 0
    assert body["remaining"] == 150 - answered * CONTENT_COST
    assert len(fake_upstream.requests) == answered
    listed = await client.get(
        f"/questions?user_id={user.id}&limit=1", headers=admin_headers
    )
    assert listed.headers["X-Total-Count"] == str(answered)


async def test_admin_override_then_null_falls_back_to_the_global_setting(
    client: httpx.AsyncClient,
    settings: Settings,
    user: Account,
    user_headers: dict[str, str],
    admin_headers: dict[str, str],
) -> None:
    settings.daily_token_quota = 1000

    async def set_quota(value: int | None) -> None:
        response = await client.patch(
            f"/users/{user.id}",
            json={"daily_token_quota": value},
            headers=admin_headers,
        )
        assert response.status_code == 200, response.text
        assert response.json()["daily_token_quota"] == value

    await set_quota(100)
    other_change = await client.patch(
        f"/users/{user.id}", json={"role": "user"}, headers=admin_headers
    )
    assert other_change.json()["daily_token_quota"] == 100  # left alone
    assert (await usage(client, user_headers))["quota"] == 100
    assert (await ask(client, user_headers, max_tokens=50)).status_code == 429

    await set_quota(0)  # unlimited for this user, whatever the global setting
    body = await usage(client, user_headers)
    assert (body["quota"], body["remaining"]) == (None, None)
    assert (await ask(client, user_headers, max_tokens=10_000)).status_code == 201

    await set_quota(None)
    body = await usage(client, user_headers)
    assert (body["quota"], body["remaining"]) == (1000, 1000 - CONTENT_COST)
    read = await client.get(f"/users/{user.id}", headers=admin_headers)
    assert read.json()["daily_token_quota"] is None


@pytest.mark.parametrize("value", [-1, 10**12 + 1, "lots", 1.5, True], ids=repr)
async def test_invalid_quota_overrides_are_refused(
    client: httpx.AsyncClient,
    user: Account,
    admin_headers: dict[str, str],
    value: object,
) -> None:
    response = await client.patch(
        f"/users/{user.id}", json={"daily_token_quota": value}, headers=admin_headers
    )

    assert response.status_code == 422, response.text
    assert response.json()["detail"][0]["loc"] == ["body", "daily_token_quota"]


async def test_a_user_cannot_set_their_own_quota(
    client: httpx.AsyncClient, user: Account, user_headers: dict[str, str]
) -> None:
    own = await client.patch(
        "/users/me", json={"daily_token_quota": 0}, headers=user_headers
    )
    admin_route = await client.patch(
        f"/users/{user.id}", json={"daily_token_quota": 0}, headers=user_headers
    )

    assert own.status_code == 422
    assert admin_route.status_code == 403


async def test_failed_questions_pay_nothing(
    client: httpx.AsyncClient,
    settings: Settings,
    user_headers: dict[str, str],
    fake_upstream: FakeUpstream,
) -> None:
    settings.daily_token_quota = 1000
    fake_upstream.mode = "status_500"

    response = await ask(client, user_headers, max_tokens=100)

    assert response.status_code == 502
    body = await usage(client, user_headers)
    assert (body["used_tokens"], body["reserved_tokens"]) == (0, 0)
    assert body["remaining"] == 1000


def parse_events(body: str) -> list[dict[str, Any]]:
    return [
        json.loads(block.removeprefix("data: ")) for block in body.strip().split("\n\n")
    ]


async def test_a_stream_settles_to_its_reported_usage(
    client: httpx.AsyncClient, settings: Settings, user_headers: dict[str, str]
) -> None:
    settings.daily_token_quota = 1000

    response = await ask(
        client, user_headers, max_tokens=100, content="What is up?", stream=True
    )

    assert response.status_code == 200, response.text
    done = parse_events(response.text)[-1]
    assert done["type"] == "done"
    reported = done["question"]["usage"]
    assert reported == {"prompt_tokens": 3, "completion_tokens": 5}
    body = await usage(client, user_headers)
    assert (body["used_tokens"], body["reserved_tokens"]) == (8, 0)


async def test_a_stream_cut_by_the_upstream_pays_for_its_prompt_and_delivered_text(
    client: httpx.AsyncClient,
    settings: Settings,
    user_headers: dict[str, str],
    fake_upstream: FakeUpstream,
) -> None:
    settings.daily_token_quota = 1000
    fake_upstream.mode = "cut_stream"  # two deltas, then the connection drops

    response = await ask(client, user_headers, max_tokens=100, stream=True)

    events = parse_events(response.text)
    assert [event["type"] for event in events] == ["delta", "delta", "error"]
    body = await usage(client, user_headers)
    delivered = "".join(event["text"] for event in events[:2])
    assert delivered == "You asked:"
    assert body["used_tokens"] == estimate(CONTENT, delivered)
    assert body["reserved_tokens"] == 0


async def test_a_stream_over_quota_is_a_plain_429_not_a_stream(
    client: httpx.AsyncClient,
    settings: Settings,
    user_headers: dict[str, str],
    fake_upstream: FakeUpstream,
) -> None:
    settings.daily_token_quota = 100

    response = await ask(client, user_headers, max_tokens=100, stream=True)

    assert response.status_code == 429
    assert response.headers["content-type"] == "application/json"
    assert "Retry-After" in response.headers
    assert "quota" in response.json()["detail"]
    assert fake_upstream.requests == []
    assert await stored_questions(client, user_headers) == []


async def _read_deltas(lines: AsyncIterator[str], count: int) -> None:
    # Reads from an iterator the caller keeps: leaving an `async for` over
    # aiter_lines() would let the iterator be finalized, closing the connection.
    seen = 0
    while seen < count:
        line = await anext(lines)
        if line.startswith("data: "):
            assert json.loads(line.removeprefix("data: "))["type"] == "delta"
            seen += 1


async def _stored_question(
    client: httpx.AsyncClient, headers: dict[str, str]
) -> dict[str, Any]:
    while not (questions := await stored_questions(client, headers)):
        await asyncio.sleep(0.05)
    [question] = questions
    return question


async def test_a_cancelled_stream_pays_for_its_prompt_and_delivered_text(
    server_url: str,
    client: httpx.AsyncClient,
    settings: Settings,
    user_headers: dict[str, str],
    fake_upstream: FakeUpstream,
) -> None:
    settings.daily_token_quota = 1000
    fake_upstream.mode = "slow_stream"  # " tick0", " tick1", ... and no usage
    held = reservation("Count forever", 100)

    async with (
        httpx.AsyncClient(base_url=server_url) as real_client,
        real_client.stream(
            "POST",
            "/questions",
            json={"content": "Count forever", "max_tokens": 100, "stream": True},
            headers=user_headers,
        ) as response,
    ):
        assert response.status_code == 200
        lines = response.aiter_lines()
        await asyncio.wait_for(_read_deltas(lines, 2), timeout=5)
        in_flight = await usage(client, user_headers)
        assert (in_flight["used_tokens"], in_flight["reserved_tokens"]) == (0, held)
        assert in_flight["remaining"] == 1000 - held

    question = await asyncio.wait_for(_stored_question(client, user_headers), timeout=5)
    assert question["status"] == "cancelled"
    assert question["answer"].count(" tick") >= 2
    body = await usage(client, user_headers)
    assert body["used_tokens"] == estimate("Count forever", question["answer"])
    assert body["reserved_tokens"] == 0
