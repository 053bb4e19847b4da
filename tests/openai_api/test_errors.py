"""Every error under /v1 comes in OpenAI's shape, and the openai SDK raises its
matching exception class for it."""

import asyncio
from typing import Any

import httpx
import openai
import pytest
from fastapi import APIRouter, FastAPI

from askgate.config import Settings
from askgate.errors import PermissionDenied
from askgate.openai_api.errors import OpenAIRoute
from tests.fake_upstream import MODEL, FakeUpstream

HELLO: Any = [{"role": "user", "content": "Hello"}]


async def history(
    client: httpx.AsyncClient, headers: dict[str, str]
) -> list[dict[str, Any]]:
    response = await client.get("/questions/me", headers=headers)
    questions: list[dict[str, Any]] = response.json()
    return questions


def error_of(exc: openai.APIStatusError) -> dict[str, Any]:
    body = exc.response.json()
    assert set(body) == {"error"}
    assert set(body["error"]) == {"message", "type", "param", "code"}
    error: dict[str, Any] = body["error"]
    return error


async def test_a_wrong_key_is_an_authentication_error(
    sdk: openai.AsyncOpenAI,
) -> None:
    wrong = sdk.with_options(api_key="not-a-token")
    with pytest.raises(openai.AuthenticationError) as raised:
        await wrong.chat.completions.create(model=MODEL, messages=HELLO)
    with pytest.raises(openai.AuthenticationError):
        await wrong.models.list()

    assert raised.value.status_code == 401
    assert raised.value.response.headers["WWW-Authenticate"] == "Bearer"
    error = error_of(raised.value)
    assert error["type"] == "invalid_request_error"
    assert error["code"] == "invalid_api_key"
    assert "not-a-token" not in raised.value.response.text


async def test_no_key_is_an_authentication_error(client: httpx.AsyncClient) -> None:
    response = await client.get("/v1/models")

    assert response.status_code == 401
    assert response.json()["error"]["code"] == "invalid_api_key"


async def test_a_refusal_is_a_permission_error(
    app: FastAPI, sdk: openai.AsyncOpenAI
) -> None:
    # No /v1 route refuses a caller yet (API keys will, on account routes):
    # a route of the OpenAI API's kind shows how a 403 comes out.
    router = APIRouter(route_class=OpenAIRoute)

    @router.get("/v1/forbidden")
    async def forbidden() -> None:
        raise PermissionDenied("Not for you")

    app.router.routes[:0] = router.routes
    with pytest.raises(openai.PermissionDeniedError) as raised:
        await sdk.get("/forbidden", cast_to=object)

    error = error_of(raised.value)
    assert error["message"] == "Not for you"
    assert error["code"] == "permission_denied"


async def test_an_unknown_model_is_not_found_and_names_the_models(
    sdk: openai.AsyncOpenAI, fake_upstream: FakeUpstream
) -> None:
    with pytest.raises(openai.NotFoundError) as raised:
        await sdk.chat.completions.create(model="gpt-17", messages=HELLO)
    with pytest.raises(openai.NotFoundError) as retrieved:
        await sdk.models.retrieve("gpt-17")

    for exc in (raised.value, retrieved.value):
        error = error_of(exc)
        assert error["code"] == "model_not_found"
        assert error["param"] == "model"
        assert error["type"] == "invalid_request_error"
        assert MODEL in error["message"]
        assert "gpt-17" in error["message"]
    assert fake_upstream.requests == []


async def test_an_unknown_path_is_not_found(sdk: openai.AsyncOpenAI) -> None:
    with pytest.raises(openai.NotFoundError) as raised:
        await sdk.embeddings.create(model=MODEL, input="hello")

    assert error_of(raised.value)["message"] == "Invalid URL (POST /v1/embeddings)"


@pytest.mark.parametrize(
    ("extra", "param", "message"),
    [
        pytest.param(
            {"logprobs": True},
            "logprobs",
            "Unrecognized request argument supplied: logprobs",
            id="unknown-parameter",
        ),
        pytest.param({"n": 2}, "n", "only n=1 is supported", id="n"),
        pytest.param(
            {"temperature": 3},
            "temperature",
            "Invalid value for 'temperature'",
            id="temperature",
        ),
        pytest.param(
            {
                "messages": [
                    {
                        "role": "user",
                        "content": [
                            {
                                "type": "image_url",
                                "image_url": {"url": "https://x/y.png"},
                            }
                        ],
                    }
                ]
            },
            "messages[0].content",
            "Image content parts are not supported",
            id="image",
        ),
        pytest.param(
            {
                "messages": [
                    {
                        "role": "user",
                        "content": [
                            {
                                "type": "input_audio",
                                "input_audio": {"data": "", "format": "wav"},
                            }
                        ],
                    }
                ]
            },
            "messages[0].content",
            "Audio content parts are not supported",
            id="audio",
        ),
        pytest.param(
            {"messages": [{"role": "robot", "content": "Hi"}]},
            "messages[0].role",
            "Invalid value for 'messages[0].role'",
            id="role",
        ),
        pytest.param(
            {"messages": []}, "messages", "Invalid value for 'messages'", id="empty"
        ),
        pytest.param(
            {"max_tokens": 5, "max_completion_tokens": 5},
            None,
            "not both",
            id="both-limits",
        ),
        pytest.param(
            {"stream_options": {"include_usage": True}},
            None,
            "only allowed when stream is true",
            id="stream-options",
        ),
    ],
)
async def test_a_bad_request_names_its_parameter(
    sdk: openai.AsyncOpenAI,
    fake_upstream: FakeUpstream,
    extra: dict[str, Any],
    param: str | None,
    message: str,
) -> None:
    with pytest.raises(openai.BadRequestError) as raised:
        await sdk.chat.completions.create(model=MODEL, messages=HELLO, extra_body=extra)

    error = error_of(raised.value)
    assert error["type"] == "invalid_request_error"
    assert error["param"] == param
    assert message in error["message"]
    assert fake_upstream.requests == []


async def test_a_missing_parameter_is_named(
    client: httpx.AsyncClient, user_headers: dict[str, str]
) -> None:
    response = await client.post(
        "/v1/chat/completions", json={"messages": HELLO}, headers=user_headers
    )

    assert response.status_code == 400
    assert response.json()["error"] == {
        "message": "Missing required parameter: 'model'.",
        "type": "invalid_request_error",
        "param": "model",
        "code": None,
    }


async def test_a_body_that_is_not_json_is_a_bad_request(
    client: httpx.AsyncClient, user_headers: dict[str, str]
) -> None:
    response = await client.post(
        "/v1/chat/completions",
        content=b"{not json",
        headers={**user_headers, "Content-Type": "application/json"},
    )

    assert response.status_code == 400
    assert response.json()["error"]["message"].startswith("We could not parse")


async def test_a_rejected_value_is_never_echoed(
    client: httpx.AsyncClient, user_headers: dict[str, str]
) -> None:
    secret = "sk-live-0123456789abcdef"
    response = await client.post(
        "/v1/chat/completions",
        json={"model": MODEL, "messages": HELLO, "temperature": secret, secret: 1},
        headers=user_headers,
    )

    assert response.status_code == 400
    assert response.json()["error"]["param"] == "temperature"
    assert "sk-live" not in response.json()["error"]["message"]


@pytest.fixture
def settings(settings: Settings) -> Settings:
    return settings.model_copy(
        update={
            "max_body_bytes": 4096,
            "llm_max_retries": 0,
            "llm_breaker_failures": 1,
            "questions_per_minute": 2,
            "max_concurrent_questions_per_user": 1,
        }
    )


async def test_a_body_too_large_is_413_in_openai_shape(
    sdk: openai.AsyncOpenAI,
) -> None:
    long: Any = [{"role": "user", "content": "x" * 5000}]
    with pytest.raises(openai.APIStatusError) as raised:
        await sdk.chat.completions.create(model=MODEL, messages=long)

    assert raised.value.status_code == 413
    assert error_of(raised.value)["code"] == "request_too_large"


async def test_the_rate_limit_is_a_rate_limit_error(
    sdk: openai.AsyncOpenAI, settings: Settings
) -> None:
    for _ in range(settings.questions_per_minute):
        await sdk.chat.completions.create(model=MODEL, messages=HELLO)
    with pytest.raises(openai.RateLimitError) as raised:
        await sdk.chat.completions.create(model=MODEL, messages=HELLO)

    assert int(raised.value.response.headers["Retry-After"]) >= 1
    error = error_of(raised.value)
    assert error["type"] == "requests"
    assert error["code"] == "rate_limit_exceeded"


async def test_one_call_too_many_at_once_is_a_rate_limit_error(
    sdk: openai.AsyncOpenAI, fake_upstream: FakeUpstream
) -> None:
    fake_upstream.gate = asyncio.Event()
    first = asyncio.create_task(
        sdk.chat.completions.create(model=MODEL, messages=HELLO)
    )
    while not fake_upstream.requests:
        assert not first.done(), first
        await asyncio.sleep(0.02)
    with pytest.raises(openai.RateLimitError) as raised:
        await sdk.chat.completions.create(model=MODEL, messages=HELLO)
    fake_upstream.gate.set()

    assert (await first).choices[0].message.content == "You asked: Hello"
    assert "at once" in error_of(raised.value)["message"]
    assert error_of(raised.value)["code"] == "rate_limit_exceeded"


async def test_the_daily_quota_is_insufficient_quota(
    sdk: openai.AsyncOpenAI,
    settings: Settings,
    client: httpx.AsyncClient,
    user_headers: dict[str, str],
    fake_upstream: FakeUpstream,
) -> None:
    settings.daily_token_quota = 100
    with pytest.raises(openai.RateLimitError) as raised:
        await sdk.chat.completions.create(model=MODEL, messages=HELLO, max_tokens=500)

    assert int(raised.value.response.headers["Retry-After"]) >= 1
    error = error_of(raised.value)
    assert error["type"] == "insufficient_quota"
    assert error["code"] == "insufficient_quota"
    assert fake_upstream.requests == []
    assert await history(client, user_headers) == []


@pytest.mark.parametrize(
    ("mode", "status", "code"),
    [
        pytest.param("status_500", 502, "upstream_error", id="502"),
        pytest.param("hang", 504, "upstream_timeout", id="504"),
    ],
)
async def test_upstream_failures_are_5xx_and_stored_as_failed(
    sdk: openai.AsyncOpenAI,
    client: httpx.AsyncClient,
    user_headers: dict[str, str],
    fake_upstream: FakeUpstream,
    mode: str,
    status: int,
    code: str,
) -> None:
    fake_upstream.mode = mode
    with pytest.raises(openai.APIStatusError) as raised:
        await sdk.chat.completions.create(model=MODEL, messages=HELLO)

    assert raised.value.status_code == status
    error = error_of(raised.value)
    assert error["type"] == "server_error"
    assert error["code"] == code
    [question] = await history(client, user_headers)
    assert question["status"] == "failed"
    assert f"question {question['id']} was stored as failed" in error["message"]


async def test_an_open_circuit_is_503_with_retry_after(
    sdk: openai.AsyncOpenAI, fake_upstream: FakeUpstream
) -> None:
    fake_upstream.mode = "status_500"
    with pytest.raises(openai.InternalServerError):  # opens the circuit
        await sdk.chat.completions.create(model=MODEL, messages=HELLO)
    with pytest.raises(openai.APIStatusError) as raised:
        await sdk.chat.completions.create(model=MODEL, messages=HELLO)

    assert raised.value.status_code == 503
    assert int(raised.value.response.headers["Retry-After"]) >= 1
    error = error_of(raised.value)
    assert error["type"] == "server_error"
    assert error["code"] == "service_unavailable"
    assert len(fake_upstream.requests) == 1


async def test_a_stream_failing_midway_raises_in_the_sdk_and_is_stored(
    sdk: openai.AsyncOpenAI,
    client: httpx.AsyncClient,
    user_headers: dict[str, str],
    fake_upstream: FakeUpstream,
) -> None:
    fake_upstream.mode = "cut_stream"
    stream = await sdk.chat.completions.create(model=MODEL, messages=HELLO, stream=True)
    received: list[str | None] = []

    async def read() -> None:
        async for chunk in stream:
            received.append(chunk.choices[0].delta.content)

    with pytest.raises(openai.APIError, match="closed the connection mid-answer"):
        await read()

    assert "".join(text or "" for text in received) == "You asked:"
    [question] = await history(client, user_headers)
    assert question["status"] == "failed"
    assert question["answer"] == "You asked:"


async def test_the_schema_documents_400_not_422_under_v1(
    client: httpx.AsyncClient,
) -> None:
    paths = (await client.get("/openapi.json")).json()["paths"]
    chat = paths["/v1/chat/completions"]["post"]["responses"]
    assert "400" in chat
    assert "422" not in chat
    assert all(
        "422" not in operation["responses"]
        for path, operations in paths.items()
        if path.startswith("/v1/")
        for operation in operations.values()
    )
    # The other routes keep FastAPI's 422.
    assert "422" in paths["/questions"]["post"]["responses"]
