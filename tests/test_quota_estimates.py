"""What a question is charged when the upstream does not say what it cost: an
estimate that errs high, from the UTF-8 bytes of the prompt and of the answer
delivered (askgate.quota.service.token_bound), with or without a quota.

Also the usage numbers no upstream can mean (over 10^9, negative, fractions,
booleans): treated as missing, hence estimated, never stored or counted as such.
"""

import asyncio
import json
import logging
from typing import Any

import httpx
import pytest

from askgate.config import Settings
from askgate.db import Database
from askgate.runtime import Runtime
from tests.factories import hold_writes, until
from tests.fake_upstream import FakeUpstream, answer_for
from tests.postgres_server import (
    BACKENDS,
    postgres_server,
    postgres_url,
    with_database,
)
from tests.test_quota import ask, estimate, parse_events, reservation, usage

__all__ = ["postgres_server", "postgres_url"]  # fixtures used through `with_database`

QUOTAS = [0, 100_000]  # 0: unlimited, nothing reserved, the cost counted all the same
# 4,004 characters in one delta (as a model may send them), 8,008 bytes in UTF-8.
LONG_CONTENT = "漢字😀abcd" * 572


@pytest.fixture(params=BACKENDS)
def settings(settings: Settings, request: pytest.FixtureRequest) -> Settings:
    settings = with_database(settings, request)
    settings.questions_per_minute = 10_000
    # The upstream stalls or hangs on purpose here: only the client may end it.
    return settings.model_copy(update={"llm_read_timeout": 30.0})


async def _stored(
    client: httpx.AsyncClient, headers: dict[str, str], count: int
) -> list[dict[str, Any]]:
    while True:
        response = await client.get("/questions/me?limit=100", headers=headers)
        questions: list[dict[str, Any]] = response.json()
        if len(questions) >= count:
            return questions
        await asyncio.sleep(0.05)


@pytest.mark.parametrize("quota", QUOTAS)
async def test_three_long_cancelled_streams_pay_for_their_text(
    server_url: str,
    client: httpx.AsyncClient,
    settings: Settings,
    user_headers: dict[str, str],
    fake_upstream: FakeUpstream,
    quota: int,
) -> None:
    settings.daily_token_quota = quota
    fake_upstream.mode = "stall_stream"  # the whole answer, then nothing, no usage
    fake_upstream.stall_after = 3  # "You", " asked:", " <the question>"
    answer = answer_for(LONG_CONTENT)
    async with httpx.AsyncClient(base_url=server_url, timeout=30) as real_client:
        for _ in range(3):
            async with real_client.stream(
                "POST",
                "/questions",
                json={"content": LONG_CONTENT, "max_tokens": 16384, "stream": True},
                headers=user_headers,
            ) as response:
                assert response.status_code == 200
                received = ""
                lines = response.aiter_lines()
                while received != answer:
                    line = await asyncio.wait_for(anext(lines), 10)
                    if line.startswith("data: "):
                        received += json.loads(line.removeprefix("data: "))["text"]
            # Leaving the block closes the connection: the client gave up.

    questions = await asyncio.wait_for(_stored(client, user_headers, 3), 10)
    assert [q["status"] for q in questions] == ["cancelled"] * 3
    assert [q["answer"] for q in questions] == [answer] * 3
    body = await usage(client, user_headers)
    assert body["reserved_tokens"] == 0
    assert body["used_tokens"] == 3 * estimate(LONG_CONTENT, answer)
    assert body["used_tokens"] > 3 * 2 * 8000  # the question and its echo, in bytes


@pytest.mark.parametrize("quota", QUOTAS)
@pytest.mark.parametrize("stream", [False, True], ids=["plain", "stream"])
async def test_without_reported_usage_prompt_and_answer_are_estimated(
    client: httpx.AsyncClient,
    settings: Settings,
    user_headers: dict[str, str],
    fake_upstream: FakeUpstream,
    quota: int,
    stream: bool,
) -> None:
    settings.daily_token_quota = quota
    fake_upstream.usage = None
    content = "Wie spät ist es in 東京? 🕐"

    response = await ask(
        client, user_headers, max_tokens=1000, content=content, stream=stream
    )

    assert response.status_code == (200 if stream else 201), response.text
    question = (
        parse_events(response.text)[-1]["question"] if stream else response.json()
    )
    assert question["status"] == "answered"
    assert question["usage"] == {"prompt_tokens": None, "completion_tokens": None}
    body = await usage(client, user_headers)
    assert body["reserved_tokens"] == 0
    assert body["used_tokens"] == estimate(content, answer_for(content))


async def test_an_estimated_answer_costs_at_most_its_max_tokens(
    client: httpx.AsyncClient, user_headers: dict[str, str], fake_upstream: FakeUpstream
) -> None:
    fake_upstream.usage = None
    content = "Tell me everything"  # the answer has 29 bytes, max_tokens is 5

    response = await ask(client, user_headers, max_tokens=5, content=content)

    assert response.status_code == 201, response.text
    body = await usage(client, user_headers)
    assert body["used_tokens"] == reservation(content, 5)


@pytest.mark.parametrize("quota", QUOTAS)
async def test_a_plain_question_abandoned_by_its_client_keeps_its_reservation(
    server_url: str,
    client: httpx.AsyncClient,
    settings: Settings,
    user_headers: dict[str, str],
    fake_upstream: FakeUpstream,
    quota: int,
) -> None:
    settings.daily_token_quota = quota
    fake_upstream.mode = "hang"
    async with httpx.AsyncClient(base_url=server_url, timeout=30) as real_client:
        asking = asyncio.create_task(
            ask(real_client, user_headers, max_tokens=300, content="Still there?")
        )
        while not fake_upstream.requests:
            assert not asking.done(), asking
            await asyncio.sleep(0.02)
        asking.cancel()  # the client gives up once the upstream has the question
        with pytest.raises(asyncio.CancelledError):
            await asking

    [question] = await asyncio.wait_for(_stored(client, user_headers, 1), 10)
    assert question["status"] == "cancelled"
    body = await usage(client, user_headers)
    assert body["reserved_tokens"] == 0
    assert body["used_tokens"] == reservation("Still there?", 300)


@pytest.mark.parametrize(
    "reported",
    [2**63, 10**9 + 1, True, -1, 1.5],
    ids=["2**63", "1e9+1", "true", "-1", "1.5"],
)
@pytest.mark.parametrize("stream", [False, True], ids=["plain", "stream"])
async def test_implausible_usage_is_estimated_and_the_question_kept(
    client: httpx.AsyncClient,
    settings: Settings,
    user_headers: dict[str, str],
    fake_upstream: FakeUpstream,
    reported: Any,
    stream: bool,
) -> None:
    settings.daily_token_quota = 10_000
    fake_upstream.usage = {"prompt_tokens": reported, "completion_tokens": 3}

    response = await ask(client, user_headers, max_tokens=100, stream=stream)

    assert response.status_code == (200 if stream else 201), response.text
    if stream:
        last = parse_events(response.text)[-1]
        assert last["type"] == "done", last
        question = last["question"]
    else:
        question = response.json()
    assert question["status"] == "answered"
    assert question["usage"] == {"prompt_tokens": None, "completion_tokens": 3}
    stored = await client.get(f"/questions/{question['id']}", headers=user_headers)
    assert stored.json()["usage"] == question["usage"]
    body = await usage(client, user_headers)
    assert body["reserved_tokens"] == 0
    assert body["used_tokens"] == reservation("hi", 0) + 3  # the prompt estimated


async def test_a_client_leaving_while_its_tokens_are_reserved_holds_nothing(
    server_url: str,
    client: httpx.AsyncClient,
    settings: Settings,
    db: Database,
    runtime: Runtime,
    user_headers: dict[str, str],
    fake_upstream: FakeUpstream,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The reservation is written all the same (a group-committed write outlives
    its request): it must be released, not held all day."""
    caplog.set_level(logging.INFO, logger="askgate.access")
    settings.daily_token_quota = 10_000
    reservations = runtime.ledger._reservations  # to see the write waiting
    async with (
        httpx.AsyncClient(base_url=server_url, timeout=30) as real_client,
        hold_writes(db, "token_usage"),
    ):
        asking = asyncio.create_task(ask(real_client, user_headers, max_tokens=100))
        await until(lambda: reservations._worker is not None)
        asking.cancel()  # the client leaves while its tokens are being reserved
        with pytest.raises(asyncio.CancelledError):
            await asking
        # askgate saw it leave, and answered nobody:
        await until(lambda: "POST /questions 499" in caplog.text)

    await asyncio.wait_for(runtime.ledger.drain(), 10)  # every write is done
    body = await usage(client, user_headers)
    assert (body["used_tokens"], body["reserved_tokens"]) == (0, 0)
    assert fake_upstream.requests == []
    assert (await client.get("/questions/me", headers=user_headers)).json() == []
