"""Clients that leave mid-stream leak nothing.

200 streamed questions are dropped by their clients (most after the first delta,
some before any), through a real uvicorn server so the connections really close.
Afterwards every upstream request was cancelled, each question was stored once
as `cancelled`, and nothing is left behind: no upstream connection held by the
aiohttp connector or open on the upstream, no stray task, no database connection
checked out of the pool.
"""

import asyncio
import contextlib
import json
from collections.abc import Callable

import httpx
import pytest
from sqlalchemy import func, select
from sqlalchemy.pool import QueuePool

from askgate.config import Settings
from askgate.questions.models import Question, QuestionStatus
from askgate.runtime import Runtime
from tests.fake_upstream import FakeUpstream

STREAMS = 200
BATCH = 25  # more than llm_max_concurrency (16): some wait in the queue
SETTLE_SECONDS = 5.0  # a deadline that keeps a failure from hanging, not a speed


@pytest.fixture
def settings(settings: Settings) -> Settings:
    # One user drops every stream: no per-user limit may refuse them (a dropped
    # stream's slot frees up just after its connection closes).
    return settings.model_copy(
        update={
            "questions_per_minute": 10_000,
            "max_concurrent_questions_per_user": 10_000,
        }
    )


async def _drop_stream(
    client: httpx.AsyncClient, headers: dict[str, str], *, read_first_delta: bool
) -> None:
    async with client.stream(
        "POST",
        "/questions",
        json={"content": "Count forever", "stream": True},
        headers=headers,
    ) as response:
        assert response.status_code == 200
        if read_first_delta:
            async for line in response.aiter_lines():
                if line.startswith("data: "):
                    assert json.loads(line.removeprefix("data: "))["type"] == "delta"
                    break
    # Leaving the block closes the connection with the body unread.


async def _settle(condition: Callable[[], bool]) -> None:
    """Waits until `condition` holds, for SETTLE_SECONDS at most; the caller then
    asserts what it is waiting for, so a failure shows the state left behind."""
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(SETTLE_SECONDS):
            while not condition():
                await asyncio.sleep(0.02)


async def _stored(runtime: Runtime) -> dict[QuestionStatus, int]:
    async with runtime.db.read() as session:
        rows = await session.execute(
            select(Question.status, func.count()).group_by(Question.status)
        )
        return dict(rows.all())


async def test_dropped_streams_leak_no_connection_task_or_session(
    server_url: str,
    runtime: Runtime,
    user_headers: dict[str, str],
    fake_upstream: FakeUpstream,
) -> None:
    fake_upstream.mode = "slow_stream"
    connector = runtime.http.connector
    pool = runtime.db.engine.pool
    assert connector is not None
    assert isinstance(pool, QueuePool)
    assert runtime.models is not None
    [upstream] = runtime.models.default.client.upstreams
    baseline = asyncio.all_tasks()

    limits = httpx.Limits(max_connections=BATCH)
    async with httpx.AsyncClient(base_url=server_url, limits=limits) as client:
        for first in range(0, STREAMS, BATCH):
            await asyncio.gather(
                *(
                    _drop_stream(client, user_headers, read_first_delta=i % 5 != 0)
                    for i in range(first, first + BATCH)
                )
            )

    # Every upstream request that was answering saw its client go.
    await _settle(lambda: fake_upstream.in_flight == 0)
    assert fake_upstream.in_flight == 0
    assert fake_upstream.streams_closed_by_client == fake_upstream.streams_started
    assert fake_upstream.streams_started >= STREAMS * 4 // 5
    # Exactly one question per request, each stored as cancelled (the stores
    # outlive their requests: wait for the ones still being written).
    await runtime.ledger.drain()
    assert await _stored(runtime) == {QuestionStatus.CANCELLED: STREAMS}
    # Nothing held: connector internals (aiohttp has no public count of them),
    # the upstream's view of its connections, tasks, database connections.
    await _settle(lambda: not connector._acquired)
    assert connector._acquired == set()
    assert not any(connector._conns.values())
    await _settle(lambda: fake_upstream.open_connections == 0)
    assert fake_upstream.open_connections == 0
    await _settle(lambda: asyncio.all_tasks() <= baseline)
    assert asyncio.all_tasks() - baseline == set()
    assert pool.checkedout() == 0
    assert upstream.in_flight == 0
