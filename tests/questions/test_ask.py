import logging
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from pydantic import SecretStr

from askgate.app import create_app
from askgate.config import Settings
from askgate.runtime import Runtime
from tests.factories import Account, auth_headers, create_user
from tests.fake_upstream import MODEL, FakeUpstream, answer_for

API_KEY = "sk-upstream-key-that-must-never-leak-0123"


async def test_ask_stores_and_returns_the_answer(
    client: httpx.AsyncClient,
    user_headers: dict[str, str],
    fake_upstream: FakeUpstream,
) -> None:
    response = await client.post(
        "/questions", json={"content": "  What is 2+2?  "}, headers=user_headers
    )
    assert response.status_code == 201, response.text
    body = response.json()
    assert body["content"] == "What is 2+2?"
    assert body["answer"] == answer_for("What is 2+2?")
    assert body["status"] == "answered"
    assert body["model"] == MODEL
    assert body["usage"] == {"prompt_tokens": 3, "completion_tokens": 5}
    assert fake_upstream.requests[-1]["messages"][-1]["content"] == "What is 2+2?"

    history = await client.get("/questions/me", headers=user_headers)
    assert history.status_code == 200
    assert [q["id"] for q in history.json()] == [body["id"]]


async def test_ask_returns_the_full_question_shape(
    client: httpx.AsyncClient,
    user_headers: dict[str, str],
    user: Account,
) -> None:
    response = await client.post(
        "/questions", json={"content": "Shape?"}, headers=user_headers
    )

    assert response.status_code == 201, response.text
    body = response.json()
    assert set(body) == {
        "id",
        "user_id",
        "api_key_id",
        "content",
        "answer",
        "model",
        "upstream_model",
        "status",
        "error",
        "tool_calls",
        "usage",
        "latency_ms",
        "created_at",
    }
    assert body["user_id"] == user.id
    assert body["api_key_id"] is None  # asked with a login
    assert body["error"] is None
    assert isinstance(body["latency_ms"], int)
    assert body["latency_ms"] >= 0
    assert body["created_at"].endswith(("Z", "+00:00"))

    stored = await client.get(f"/questions/{body['id']}", headers=user_headers)
    assert stored.json() == {**body, "messages": None}  # not a /v1 call


async def test_ask_requires_authentication(
    client: httpx.AsyncClient, fake_upstream: FakeUpstream
) -> None:
    response = await client.post("/questions", json={"content": "Hello?"})

    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"] == "Bearer"
    assert fake_upstream.requests == []


@pytest.mark.parametrize(
    "body",
    [
        pytest.param({"content": ""}, id="empty"),
        pytest.param({"content": " \t\n "}, id="whitespace-only"),
        pytest.param({"content": "x" * 8001}, id="8001-chars"),
        pytest.param({"content": "a\x00b"}, id="nul"),
        pytest.param({}, id="missing-content"),
        pytest.param({"content": "Hi", "max_tokens": 0}, id="max-tokens-zero"),
        pytest.param({"content": "Hi", "temperature": -0.1}, id="temperature-low"),
        pytest.param({"content": "Hi", "temperature": 2.5}, id="temperature-high"),
        pytest.param({"content": "Hi", "colour": "blue"}, id="unknown-field"),
    ],
)
async def test_ask_rejects_invalid_input(
    client: httpx.AsyncClient,
    user_headers: dict[str, str],
    fake_upstream: FakeUpstream,
    body: dict[str, Any],
) -> None:
    response = await client.post("/questions", json=body, headers=user_headers)

    assert response.status_code == 422, response.text
    assert fake_upstream.requests == []
    history = await client.get("/questions/me", headers=user_headers)
    assert history.json() == []


async def test_ask_rejects_a_lone_surrogate(
    client: httpx.AsyncClient,
    user_headers: dict[str, str],
    fake_upstream: FakeUpstream,
) -> None:
    # Valid JSON, but not encodable as UTF-8: it could be neither stored nor sent.
    response = await client.post(
        "/questions",
        content=b'{"content": "bad \\ud800 text"}',
        headers={**user_headers, "Content-Type": "application/json"},
    )

    assert response.status_code == 422, response.text
    assert fake_upstream.requests == []


async def test_ask_accepts_8000_chars_after_trimming(
    client: httpx.AsyncClient,
    user_headers: dict[str, str],
    fake_upstream: FakeUpstream,
) -> None:
    content = "x" * 8000

    response = await client.post(
        "/questions", json={"content": f"   {content}\n"}, headers=user_headers
    )

    assert response.status_code == 201, response.text
    assert response.json()["content"] == content
    assert fake_upstream.requests[-1]["messages"][-1]["content"] == content


async def test_ask_forwards_max_tokens_and_temperature(
    client: httpx.AsyncClient,
    user_headers: dict[str, str],
    fake_upstream: FakeUpstream,
) -> None:
    response = await client.post(
        "/questions",
        json={"content": "Be brief", "max_tokens": 17, "temperature": 0.3},
        headers=user_headers,
    )

    assert response.status_code == 201, response.text
    sent = fake_upstream.requests[-1]
    assert sent["max_tokens"] == 17
    assert sent["temperature"] == 0.3
    assert sent["model"] == MODEL
    assert sent["stream"] is False


async def test_ask_uses_the_default_max_tokens_and_no_temperature(
    client: httpx.AsyncClient,
    user_headers: dict[str, str],
    fake_upstream: FakeUpstream,
    settings: Settings,
) -> None:
    response = await client.post(
        "/questions", json={"content": "Defaults?"}, headers=user_headers
    )

    assert response.status_code == 201, response.text
    sent = fake_upstream.requests[-1]
    assert sent["max_tokens"] == settings.llm_default_max_tokens
    assert "temperature" not in sent


async def test_ask_does_not_forward_the_callers_token(
    client: httpx.AsyncClient,
    user_headers: dict[str, str],
    fake_upstream: FakeUpstream,
) -> None:
    response = await client.post(
        "/questions", json={"content": "Who am I?"}, headers=user_headers
    )

    assert response.status_code == 201, response.text
    assert "Authorization" not in fake_upstream.headers[-1]


@pytest.fixture
async def keyed_app(settings: Settings) -> AsyncIterator[FastAPI]:
    """The app with an upstream API key configured."""
    keyed = settings.model_copy(update={"llm_api_key": SecretStr(API_KEY)})
    application = create_app(keyed)
    async with application.router.lifespan_context(application):
        yield application


@pytest.fixture
async def keyed_client(keyed_app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=keyed_app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as c:
        yield c


@pytest.mark.parametrize("mode", ["ok", "status_500", "garbage_json"])
async def test_api_key_is_sent_upstream_and_never_shown(
    keyed_app: FastAPI,
    keyed_client: httpx.AsyncClient,
    fake_upstream: FakeUpstream,
    caplog: pytest.LogCaptureFixture,
    mode: str,
) -> None:
    caplog.set_level(logging.DEBUG)
    runtime: Runtime = keyed_app.state.runtime
    headers = await auth_headers(keyed_client, await create_user(runtime.db))
    fake_upstream.mode = mode

    asked = await keyed_client.post(
        "/questions", json={"content": "Secret?"}, headers=headers
    )
    streamed = await keyed_client.post(
        "/questions", json={"content": "Secret?", "stream": True}, headers=headers
    )
    history = await keyed_client.get("/questions/me", headers=headers)

    assert [h["Authorization"] for h in fake_upstream.headers] == [
        f"Bearer {API_KEY}"
    ] * 2
    for response in (asked, streamed, history):
        assert API_KEY not in response.text
        assert API_KEY not in str(response.headers)
    assert API_KEY not in caplog.text
    assert API_KEY not in repr(runtime.models)


async def test_unstorable_characters_in_the_answer_are_replaced(
    client: httpx.AsyncClient,
    user_headers: dict[str, str],
    fake_upstream: FakeUpstream,
) -> None:
    fake_upstream.mode = "unstorable_text"

    response = await client.post(
        "/questions", json={"content": "Odd?"}, headers=user_headers
    )

    assert response.status_code == 201, response.text
    assert response.json()["answer"] == "lone \ufffd and nul \ufffd here"
    stored = await client.get(
        f"/questions/{response.json()['id']}", headers=user_headers
    )
    assert stored.json()["answer"] == "lone \ufffd and nul \ufffd here"
