"""ASKGATE_LLM_MAX_QUESTION_SECONDS: no question outlives it, so that a quota
reservation older than it (plus a margin) can only be a dead process's.

The read timeout is set far above the deadline here: what cuts each question is
the deadline, whose error names the setting.
"""

import asyncio
import json
from typing import Any

import httpx
import pytest

from askgate.config import Settings
from tests.fake_upstream import FakeUpstream

SETTING = "ASKGATE_LLM_MAX_QUESTION_SECONDS"


@pytest.fixture
def settings(settings: Settings) -> Settings:
    return settings.model_copy(
        update={
            "llm_max_question_seconds": 0.5,
            "llm_read_timeout": 30.0,
            "questions_per_minute": 10_000,
            "daily_token_quota": 10_000,
        }
    )


def events(body: str) -> list[dict[str, Any]]:
    return [
        json.loads(line.removeprefix("data:"))
        for line in body.splitlines()
        if line.startswith("data:")
    ]


async def only_question(
    client: httpx.AsyncClient, headers: dict[str, str]
) -> dict[str, Any]:
    listed = (await client.get("/questions/me", headers=headers)).json()
    assert len(listed) == 1, listed
    question: dict[str, Any] = listed[0]
    return question


async def nothing_reserved(client: httpx.AsyncClient, headers: dict[str, str]) -> bool:
    body = (await client.get("/users/me/usage", headers=headers)).json()
    return bool(body["reserved_tokens"] == 0)


async def test_a_plain_question_past_the_deadline_is_a_504_stored_as_failed(
    client: httpx.AsyncClient,
    user_headers: dict[str, str],
    fake_upstream: FakeUpstream,
) -> None:
    fake_upstream.mode = "hang"  # answers nothing, ever

    response = await asyncio.wait_for(
        client.post("/questions", json={"content": "hi"}, headers=user_headers), 20
    )

    assert response.status_code == 504, response.text
    assert SETTING in response.json()["detail"]
    question = await only_question(client, user_headers)
    assert question["status"] == "failed"
    assert SETTING in question["error"]
    assert await nothing_reserved(client, user_headers)


@pytest.mark.parametrize(
    "mode",
    [
        "slow_stream",  # a delta every 0.1 s, for ever: cut as a delta arrives
        "stall_stream",  # two deltas, then silence: cut while waiting
    ],
)
async def test_a_stream_past_the_deadline_ends_with_an_error_event(
    client: httpx.AsyncClient,
    user_headers: dict[str, str],
    fake_upstream: FakeUpstream,
    mode: str,
) -> None:
    fake_upstream.mode = mode

    response = await asyncio.wait_for(
        client.post(
            "/questions",
            json={"content": "Count forever", "stream": True},
            headers=user_headers,
        ),
        20,
    )

    assert response.status_code == 200
    received = events(response.text)
    assert [e["type"] for e in received[:2]] == ["delta", "delta"]
    last = received[-1]
    assert last["type"] == "error", last
    assert SETTING in last["detail"]
    question = await only_question(client, user_headers)
    assert question["id"] == last["question_id"]
    assert question["status"] == "failed"
    assert question["answer"].startswith(received[0]["text"])
    assert await nothing_reserved(client, user_headers)


async def test_a_question_within_the_deadline_is_answered(
    client: httpx.AsyncClient,
    user_headers: dict[str, str],
    fake_upstream: FakeUpstream,
) -> None:
    for stream in (False, True):
        response = await client.post(
            "/questions",
            json={"content": "hi", "stream": stream},
            headers=user_headers,
        )
        assert response.status_code == (200 if stream else 201), response.text
        assert SETTING not in response.text
