"""A client that leaves a plain (non-streamed) question cancels it, too."""

import asyncio
import sqlite3
from pathlib import Path
from typing import Any

import httpx
import pytest

from askgate.config import Settings
from tests.fake_upstream import FakeUpstream


@pytest.fixture
def settings(settings: Settings) -> Settings:
    # The upstream hangs on purpose: only the client leaving may end the call.
    return settings.model_copy(update={"llm_read_timeout": 30.0})


async def _only_question(
    client: httpx.AsyncClient, headers: dict[str, str]
) -> dict[str, Any]:
    while True:
        response = await client.get("/questions/me", headers=headers)
        if questions := response.json():
            [question] = questions
            return dict(question)
        await asyncio.sleep(0.05)


async def _upstream_call_abandoned(fake_upstream: FakeUpstream) -> None:
    while not fake_upstream.hangs_abandoned_by_client:
        await asyncio.sleep(0.02)


async def test_leaving_a_plain_question_cancels_the_upstream_call(
    server_url: str,
    client: httpx.AsyncClient,
    user_headers: dict[str, str],
    fake_upstream: FakeUpstream,
) -> None:
    fake_upstream.mode = "hang"
    async with httpx.AsyncClient(base_url=server_url, timeout=30) as real_client:
        asking = asyncio.create_task(
            real_client.post(
                "/questions", json={"content": "Still there?"}, headers=user_headers
            )
        )
        while not fake_upstream.requests:
            assert not asking.done(), asking
            await asyncio.sleep(0.02)
        asking.cancel()  # the client gives up: its connection is closed
        with pytest.raises(asyncio.CancelledError):
            await asking

    question = await asyncio.wait_for(_only_question(client, user_headers), 5)
    assert question["status"] == "cancelled"
    assert question["error"] == "The client disconnected before the answer was complete"
    assert question["answer"] is None
    await asyncio.wait_for(_upstream_call_abandoned(fake_upstream), 5)


async def test_a_client_that_stays_gets_its_answer(
    client: httpx.AsyncClient, user_headers: dict[str, str]
) -> None:
    # The disconnect watcher must not cut requests whose client is still there.
    response = await client.post(
        "/questions", json={"content": "Hello?"}, headers=user_headers
    )
    assert response.status_code == 201, response.text
    assert response.json()["status"] == "answered"


async def _upstream_answered(fake_upstream: FakeUpstream) -> None:
    while not (fake_upstream.requests and fake_upstream.in_flight == 0):
        await asyncio.sleep(0.02)


async def test_a_client_leaving_while_its_answer_is_stored_loses_nothing(
    server_url: str,
    client: httpx.AsyncClient,
    settings: Settings,
    database_path: Path,
    user_headers: dict[str, str],
    fake_upstream: FakeUpstream,
) -> None:
    """The final store and the quota settlement complete although the client
    leaves while they wait for the database: the answer was paid for upstream."""
    settings.daily_token_quota = 10_000
    fake_upstream.gate = asyncio.Event()
    async with httpx.AsyncClient(base_url=server_url, timeout=30) as real_client:
        asking = asyncio.create_task(
            real_client.post(
                "/questions", json={"content": "Store me"}, headers=user_headers
            )
        )
        while not fake_upstream.requests:
            assert not asking.done(), asking
            await asyncio.sleep(0.02)
        # Another process holds SQLite's write lock: askgate's store must wait.
        locker = sqlite3.connect(database_path, isolation_level=None)
        locker.execute("BEGIN IMMEDIATE")
        try:
            fake_upstream.gate.set()
            await asyncio.wait_for(_upstream_answered(fake_upstream), 5)
            await asyncio.sleep(0.2)  # askgate is now waiting to store the answer
            asking.cancel()  # the client leaves
            with pytest.raises(asyncio.CancelledError):
                await asking
            await asyncio.sleep(0.2)
        finally:
            locker.execute("ROLLBACK")
            locker.close()

    question = await asyncio.wait_for(_only_question(client, user_headers), 5)
    assert question["status"] == "answered"
    assert question["answer"] == "You asked: Store me"
    usage = (await client.get("/users/me/usage", headers=user_headers)).json()
    assert usage["reserved_tokens"] == 0
    assert usage["used_tokens"] == 6  # the fake's 2 prompt + 4 answer tokens
