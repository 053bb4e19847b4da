"""Upstream failures answer 502/504 with a clear detail, never 500, and the
question is stored anyway as `failed` with the reason."""

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from askgate.app import create_app
from askgate.config import Settings
from tests.factories import auth_headers, create_user
from tests.fake_upstream import FakeUpstream


async def _only_question(
    client: httpx.AsyncClient, headers: dict[str, str]
) -> dict[str, Any]:
    history = await client.get("/questions/me", headers=headers)
    assert history.status_code == 200, history.text
    questions: list[dict[str, Any]] = history.json()
    assert len(questions) == 1
    return questions[0]


@pytest.mark.parametrize(
    ("mode", "status", "reason", "attempts"),
    [
        pytest.param("status_500", 502, "HTTP 500", 1, id="http-500"),
        # 429 is retried (1 + ASKGATE_LLM_MAX_RETRIES attempts), still one row.
        pytest.param("status_429", 502, "HTTP 429", 3, id="http-429"),
        pytest.param(
            "garbage_json", 502, "invalid response: not JSON", 1, id="garbage"
        ),
        pytest.param("wrong_content_type", 502, "text/html", 1, id="content-type"),
        pytest.param(
            "no_choices", 502, "invalid response: no choices", 1, id="choices"
        ),
        pytest.param(
            "hang", 504, "Timed out waiting for the LLM upstream", 1, id="hang"
        ),
    ],
)
async def test_upstream_failure_is_reported_and_stored(
    client: httpx.AsyncClient,
    user_headers: dict[str, str],
    fake_upstream: FakeUpstream,
    mode: str,
    status: int,
    reason: str,
    attempts: int,
) -> None:
    fake_upstream.mode = mode

    response = await client.post(
        "/questions", json={"content": "Will this work?"}, headers=user_headers
    )

    assert response.status_code == status, response.text
    detail = response.json()["detail"]
    assert reason in detail
    question = await _only_question(client, user_headers)
    assert f"question {question['id']} was stored as failed" in detail
    assert question["status"] == "failed"
    assert question["content"] == "Will this work?"
    assert question["answer"] is None
    assert reason in question["error"]
    assert question["usage"] == {"prompt_tokens": None, "completion_tokens": None}
    assert len(fake_upstream.requests) == attempts


async def test_wrong_content_type_names_both_types(
    client: httpx.AsyncClient,
    user_headers: dict[str, str],
    fake_upstream: FakeUpstream,
) -> None:
    fake_upstream.mode = "wrong_content_type"

    response = await client.post(
        "/questions", json={"content": "HTML?"}, headers=user_headers
    )

    assert response.status_code == 502
    assert "sent text/html, expected application/json" in response.json()["detail"]


async def test_timeout_detail_says_timed_out(
    client: httpx.AsyncClient,
    user_headers: dict[str, str],
    fake_upstream: FakeUpstream,
) -> None:
    fake_upstream.mode = "hang"

    response = await client.post(
        "/questions", json={"content": "Anyone?"}, headers=user_headers
    )

    assert response.status_code == 504
    assert "timed out" in response.json()["detail"].lower()


async def test_upstream_down_is_a_502_connection_error(
    client: httpx.AsyncClient,
    user_headers: dict[str, str],
    fake_upstream: FakeUpstream,
) -> None:
    await fake_upstream.stop()

    response = await client.post(
        "/questions", json={"content": "Hello?"}, headers=user_headers
    )

    assert response.status_code == 502, response.text
    assert "Could not connect to the LLM upstream" in response.json()["detail"]
    question = await _only_question(client, user_headers)
    assert question["status"] == "failed"
    assert question["error"] == "Could not connect to the LLM upstream"


async def test_the_service_recovers_after_a_failure(
    client: httpx.AsyncClient,
    user_headers: dict[str, str],
    fake_upstream: FakeUpstream,
) -> None:
    fake_upstream.mode = "status_500"
    failed = await client.post(
        "/questions", json={"content": "First"}, headers=user_headers
    )
    fake_upstream.mode = "ok"

    answered = await client.post(
        "/questions", json={"content": "Second"}, headers=user_headers
    )

    assert failed.status_code == 502
    assert answered.status_code == 201, answered.text
    history = await client.get("/questions/me", headers=user_headers)
    assert [q["status"] for q in history.json()] == ["answered", "failed"]


@pytest.fixture
async def app_without_upstream(settings: Settings) -> AsyncIterator[FastAPI]:
    application = create_app(settings.model_copy(update={"llm_base_url": None}))
    async with application.router.lifespan_context(application):
        yield application


@pytest.mark.parametrize("stream", [False, True])
async def test_no_upstream_configured_is_a_503(
    app_without_upstream: FastAPI, fake_upstream: FakeUpstream, stream: bool
) -> None:
    transport = httpx.ASGITransport(app=app_without_upstream)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as c:
        headers = await auth_headers(
            c, await create_user(app_without_upstream.state.runtime.db)
        )

        response = await c.post(
            "/questions", json={"content": "Hello?", "stream": stream}, headers=headers
        )
        history = await c.get("/questions/me", headers=headers)

    assert response.status_code == 503, response.text
    assert response.json() == {"detail": "No LLM upstream is configured"}
    assert history.json() == []
    assert fake_upstream.requests == []
