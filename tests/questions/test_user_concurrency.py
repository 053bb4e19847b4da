"""One user cannot hold every upstream slot: at most
ASKGATE_MAX_CONCURRENT_QUESTIONS_PER_USER (default 4) of their questions are
answered at once, streams included; one more answers 429 with Retry-After, and a
slot frees up when a question ends, however it ends. Shared by every instance
that uses the same Redis.

Streams are held open over a real connection (uvicorn in-process: ASGITransport
buffers whole responses) while the upstream keeps sending slowly.
"""

import asyncio
from collections.abc import AsyncIterator

import httpx
import pytest
from fastapi import FastAPI

from askgate.app import create_app
from askgate.config import Settings
from askgate.db import Database
from askgate.throttle import QUESTION_SLOT_RETRY_AFTER
from tests.factories import auth_headers, create_user
from tests.fake_upstream import FakeUpstream
from tests.redis_server import BACKENDS, redis_server, redis_url, with_backend

__all__ = ["redis_server", "redis_url"]  # fixtures used through `with_backend`

CAP = 4  # the default
AT_ONCE = (
    "Too many questions at once: at most 4 of yours can be answered at the same "
    "time. Try again when one has ended."
)


@pytest.fixture(params=BACKENDS)
def settings(settings: Settings, request: pytest.FixtureRequest) -> Settings:
    # Retries while waiting for a slot must not meet the per-minute limit.
    settings.questions_per_minute = 1000
    return with_backend(settings, request)


@pytest.fixture
async def streams(
    server_url: str, fake_upstream: FakeUpstream
) -> AsyncIterator["Streams"]:
    fake_upstream.mode = "slow_stream"  # a delta every 0.1 s, for minutes
    async with httpx.AsyncClient(base_url=server_url, timeout=30) as real_client:
        opened = Streams(real_client)
        try:
            yield opened
        finally:
            await opened.close_all()


class Streams:
    """Streamed questions held open over a real connection."""

    def __init__(self, client: httpx.AsyncClient) -> None:
        self._client = client
        self.open: list[httpx.Response] = []
        # Kept: an abandoned line iterator would close its stream when collected.
        self._lines: list[AsyncIterator[str]] = []

    async def start(self, headers: dict[str, str], count: int) -> None:
        for n in range(count):
            request = self._client.build_request(
                "POST",
                "/questions",
                json={"content": f"Count {n}", "stream": True},
                headers=headers,
            )
            response = await self._client.send(request, stream=True)
            self.open.append(response)
            assert response.status_code == 200
            lines = response.aiter_lines()
            self._lines.append(lines)
            await asyncio.wait_for(_first_delta(lines), timeout=10)

    async def drop_one(self) -> None:
        """Close one without reading it to the end: the client leaves."""
        await self.open.pop().aclose()
        self._lines.pop()

    async def close_all(self) -> None:
        while self.open:
            await self.drop_one()


async def _first_delta(lines: AsyncIterator[str]) -> None:
    while not (line := await anext(lines)).startswith("data: "):
        pass
    assert '"delta"' in line, line


async def ask(
    client: httpx.AsyncClient, headers: dict[str, str], *, stream: bool = False
) -> httpx.Response:
    return await client.post(
        "/questions",
        json={"content": "Anyone there?", "stream": stream},
        headers=headers,
    )


def assert_at_once_refused(response: httpx.Response) -> None:
    assert response.status_code == 429, response.text
    assert response.json() == {"detail": AT_ONCE}
    assert response.headers["Retry-After"] == str(QUESTION_SLOT_RETRY_AFTER)
    assert "X-RateLimit-Remaining" in response.headers


async def until_answered(
    client: httpx.AsyncClient, headers: dict[str, str]
) -> httpx.Response:
    """Ask until a slot is free (it frees up just after the stream's end)."""
    for _ in range(200):
        response = await ask(client, headers)
        if response.status_code != 429:
            return response
        await asyncio.sleep(0.05)
    raise AssertionError("the slot was never freed")


async def test_a_fifth_question_at_once_is_refused_while_others_are_answered(
    client: httpx.AsyncClient,
    db: Database,
    user_headers: dict[str, str],
    streams: Streams,
    fake_upstream: FakeUpstream,
) -> None:
    other_headers = await auth_headers(client, await create_user(db))
    await streams.start(user_headers, CAP)

    assert_at_once_refused(await ask(client, user_headers))
    assert_at_once_refused(await ask(client, user_headers, stream=True))
    assert fake_upstream.streams_started == CAP  # the refused never reached it
    other = await ask(client, other_headers)
    assert other.status_code == 201, other.text

    # A client leaving its stream frees its slot.
    await streams.drop_one()
    answered = await until_answered(client, user_headers)
    assert answered.status_code == 201, answered.text
    await streams.start(user_headers, 1)  # and the finished one's
    assert_at_once_refused(await ask(client, user_headers))


async def test_slots_are_freed_however_questions_end(
    client: httpx.AsyncClient,
    user_headers: dict[str, str],
    fake_upstream: FakeUpstream,
) -> None:
    for _ in range(CAP + 1):  # streams that complete
        assert (await ask(client, user_headers, stream=True)).status_code == 200
    for _ in range(CAP + 1):  # plain questions that complete
        assert (await ask(client, user_headers)).status_code == 201
    fake_upstream.mode = "status_500"
    for _ in range(CAP + 1):  # plain questions that fail upstream
        assert (await ask(client, user_headers)).status_code == 502
    for _ in range(CAP + 1):  # streams that fail upstream
        response = await ask(client, user_headers, stream=True)
        assert response.status_code == 200
        assert '"type":"error"' in response.text


async def test_questions_refused_by_the_quota_hold_no_slot(
    settings: Settings, client: httpx.AsyncClient, user_headers: dict[str, str]
) -> None:
    settings.daily_token_quota = 1  # read at each question
    for stream in [True, False] * CAP:
        refused = await ask(client, user_headers, stream=stream)
        assert refused.status_code == 429
        assert "quota" in refused.json()["detail"], refused.text

    settings.daily_token_quota = 0
    response = await ask(client, user_headers)
    assert response.status_code == 201, response.text


@pytest.fixture
async def second_instance(settings: Settings) -> AsyncIterator[FastAPI]:
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        yield app


async def test_the_cap_is_shared_by_instances_through_redis(
    settings: Settings,
    client: httpx.AsyncClient,
    user_headers: dict[str, str],
    streams: Streams,
    second_instance: FastAPI,
) -> None:
    await streams.start(user_headers, CAP)

    transport = httpx.ASGITransport(app=second_instance)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as two:
        on_other_instance = await ask(two, user_headers)

    # In process, each instance counts on its own; Redis is shared.
    if settings.redis_url:
        assert_at_once_refused(on_other_instance)
    else:
        assert on_other_instance.status_code == 201, on_other_instance.text
