"""Every /v1 call is kept like a question, on SQLite and PostgreSQL, whether it
was answered, failed or cancelled; a client that leaves cancels the upstream
call, as on POST /questions."""

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import httpx
import httpx2
import openai
import pytest
from fastapi import FastAPI
from sqlalchemy import select

from askgate.config import Settings
from askgate.db import Database
from askgate.questions.models import Question
from tests.factories import create_api_key
from tests.fake_upstream import MODEL, TOOL_ARGUMENTS, TOOL_CALL_ID, FakeUpstream
from tests.postgres_server import (
    BACKENDS,
    postgres_server,
    postgres_url,
    with_database,
)

__all__ = ["postgres_server", "postgres_url"]  # fixtures used through `with_database`

CONVERSATION: Any = [
    {"role": "system", "content": "You are terse."},
    {"role": "user", "content": "First question"},
    {"role": "assistant", "content": "First answer"},
    {"role": "user", "content": [{"type": "text", "text": "Weather, café?"}]},
]
CALL = {
    "id": TOOL_CALL_ID,
    "type": "function",
    "function": {"name": "get_weather", "arguments": TOOL_ARGUMENTS},
}
TOOLS: Any = [{"type": "function", "function": {"name": "get_weather"}}]


@pytest.fixture(params=BACKENDS)
def settings(settings: Settings, request: pytest.FixtureRequest) -> Settings:
    settings = with_database(settings, request)
    # Only the client leaving may end a hanging upstream call here.
    return settings.model_copy(update={"llm_read_timeout": 30.0})


@pytest.fixture
async def real_sdk(server_url: str, user_key: str) -> AsyncIterator[openai.AsyncOpenAI]:
    """The SDK against askgate served on a real socket."""
    async with httpx2.AsyncClient(timeout=30) as http:
        yield openai.AsyncOpenAI(
            api_key=user_key,
            base_url=f"{server_url}/v1",
            http_client=http,
            max_retries=0,
        )


async def stored(db: Database) -> list[Question]:
    async with db.read() as session:
        return list(await session.scalars(select(Question).order_by(Question.id)))


async def until_stored(db: Database, count: int) -> list[Question]:
    while len(questions := await stored(db)) < count:
        await asyncio.sleep(0.05)
    return questions


async def history(
    client: httpx.AsyncClient, headers: dict[str, str]
) -> list[dict[str, Any]]:
    response = await client.get("/questions/me", headers=headers)
    questions: list[dict[str, Any]] = response.json()
    return questions


async def test_answers_tool_calls_and_failures_are_stored(
    sdk: openai.AsyncOpenAI,
    db: Database,
    client: httpx.AsyncClient,
    user_headers: dict[str, str],
    fake_upstream: FakeUpstream,
) -> None:
    await sdk.chat.completions.create(model=MODEL, messages=CONVERSATION)
    fake_upstream.mode = "tool_calls"
    stream = await sdk.chat.completions.create(
        model=MODEL, messages=CONVERSATION, tools=TOOLS, stream=True
    )
    async for _ in stream:
        pass
    fake_upstream.mode = "status_400"
    with pytest.raises(openai.InternalServerError):
        await sdk.chat.completions.create(model=MODEL, messages=CONVERSATION)

    answered, called, failed = await stored(db)
    for question in (answered, called, failed):
        assert question.messages == CONVERSATION
        assert question.content == "Weather, café?"
        assert question.model == MODEL
        assert question.latency_ms >= 0
    assert (answered.status, answered.answer, answered.tool_calls) == (
        "answered",
        "You asked: Weather, café?",
        None,
    )
    assert (called.status, called.answer, called.tool_calls) == (
        "answered",
        None,
        [CALL],
    )
    assert (called.prompt_tokens, called.completion_tokens) == (3, 7)
    assert failed.status == "failed"
    assert failed.error == "The LLM upstream answered HTTP 400"
    # They are the caller's questions, in the history and the day's usage.
    listed = await history(client, user_headers)
    assert [q["id"] for q in listed] == [failed.id, called.id, answered.id]
    assert listed[1]["tool_calls"] == [CALL]
    assert "messages" not in listed[0]  # lists leave the conversation out
    # Reading one shows it whole; a question asked on POST /questions has none.
    fake_upstream.mode = "ok"
    one = await client.get(f"/questions/{answered.id}", headers=user_headers)
    assert one.json()["messages"] == CONVERSATION
    asked = await client.post(
        "/questions", json={"content": "Plain"}, headers=user_headers
    )
    plain = await client.get(f"/questions/{asked.json()['id']}", headers=user_headers)
    assert plain.json()["messages"] is None
    usage = (await client.get("/users/me/usage", headers=user_headers)).json()
    assert usage["used_tokens"] > 0


async def test_a_keys_completion_is_stored_with_it_and_a_revoked_key_is_refused(
    app: FastAPI,
    db: Database,
    client: httpx.AsyncClient,
    user_headers: dict[str, str],
) -> None:
    created = await create_api_key(client, user_headers, name="editor plugin")
    async with httpx2.AsyncClient(transport=httpx2.ASGITransport(app=app)) as http:
        sdk = openai.AsyncOpenAI(
            api_key=created["key"],
            base_url="http://test/v1",
            http_client=http,
            max_retries=0,
        )
        await sdk.chat.completions.create(model=MODEL, messages=CONVERSATION)
        (question,) = await stored(db)
        assert question.api_key_id == created["id"]
        (listed,) = await history(client, user_headers)
        assert listed["api_key_id"] == created["id"]

        revoked = await client.delete(
            f"/users/me/api-keys/{created['id']}", headers=user_headers
        )
        assert revoked.status_code == 204
        with pytest.raises(openai.AuthenticationError) as refused:
            await sdk.chat.completions.create(model=MODEL, messages=CONVERSATION)
        assert refused.value.code == "invalid_api_key"
        with pytest.raises(openai.AuthenticationError):
            await sdk.models.list()
    assert len(await stored(db)) == 1  # the refused call asked nothing


async def test_leaving_a_stream_cancels_it_and_keeps_what_arrived(
    real_sdk: openai.AsyncOpenAI, db: Database, fake_upstream: FakeUpstream
) -> None:
    # The upstream never ends: the first chunks arrive unbuffered, then the
    # client leaves.
    fake_upstream.mode = "slow_stream"
    fake_upstream.slow_stream_interval = 0.02
    stream = await real_sdk.chat.completions.create(
        model=MODEL, messages=CONVERSATION, stream=True
    )
    received = []
    async for chunk in stream:
        received.append(chunk.choices[0].delta.content or "")
        if len(received) == 3:
            break
    await stream.close()

    await asyncio.wait_for(fake_upstream.stream_closed_by_client.wait(), 10)
    [question] = await asyncio.wait_for(until_stored(db, 1), 10)
    assert question.status == "cancelled"
    assert question.error == "The client disconnected before the answer was complete"
    assert question.answer is not None
    assert question.answer.startswith("".join(received))
    assert question.messages == CONVERSATION


async def test_leaving_a_plain_call_cancels_it(
    real_sdk: openai.AsyncOpenAI, db: Database, fake_upstream: FakeUpstream
) -> None:
    fake_upstream.mode = "hang"
    asking = asyncio.create_task(
        real_sdk.chat.completions.create(model=MODEL, messages=CONVERSATION)
    )
    while not fake_upstream.requests:
        assert not asking.done(), asking
        await asyncio.sleep(0.02)
    asking.cancel()  # the client gives up: its connection is closed
    with pytest.raises(asyncio.CancelledError):
        await asking

    [question] = await asyncio.wait_for(until_stored(db, 1), 10)
    assert question.status == "cancelled"
    assert question.answer is None
    assert question.messages == CONVERSATION
    while not fake_upstream.hangs_abandoned_by_client:
        await asyncio.sleep(0.02)
