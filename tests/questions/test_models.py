"""Several models: questions routed by `model` to each model's upstream, each
with its own circuit breaker and fallbacks, and the model's name stored."""

import asyncio
import json
import logging
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from fastapi import FastAPI

from askgate.config import Settings
from askgate.runtime import Runtime
from tests.fake_upstream import FakeUpstream, answer_for

ALPHA_KEY = "sk-alpha-secret-0123456789"
BETA_KEY = "sk-beta-secret-0123456789"
BETA_LIMIT = 32


def models_file(
    directory: Path, suffix: str, alpha: FakeUpstream, beta: FakeUpstream
) -> Path:
    """alpha (the default) falls back to beta; beta has no fallback and a limit."""
    data = {
        "models": [
            {
                "name": "alpha",
                "base_url": alpha.base_url,
                "api_key": ALPHA_KEY,
                "model": "alpha-upstream",
                "fallbacks": ["beta"],
            },
            {
                "name": "beta",
                "base_url": beta.base_url,
                "api_key_env": "ASKGATE_TEST_BETA_KEY",
                "model": "beta-upstream",
                "max_tokens_limit": BETA_LIMIT,
            },
        ]
    }
    path = directory / f"models{suffix}"
    path.write_text(json.dumps(data) if suffix == ".json" else yaml.safe_dump(data))
    return path


@pytest.fixture(params=[".yaml", ".json"])
def settings(
    request: pytest.FixtureRequest,
    settings: Settings,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    fake_upstream: FakeUpstream,
    second_upstream: FakeUpstream,
) -> Settings:
    monkeypatch.setenv("ASKGATE_TEST_BETA_KEY", BETA_KEY)
    fake_upstream.model = "alpha-upstream"
    second_upstream.model = "beta-upstream"
    suffix: str = request.param
    return settings.model_copy(
        update={
            "llm_base_url": None,
            "llm_model": None,
            "models_file": models_file(
                tmp_path, suffix, fake_upstream, second_upstream
            ),
            "llm_max_retries": 0,
            "llm_breaker_failures": 2,
            "llm_max_concurrency": 1,
            "llm_queue_timeout": 0.2,
            "questions_per_minute": 10_000,
        }
    )


async def ask(
    client: httpx.AsyncClient, headers: dict[str, str], **body: Any
) -> httpx.Response:
    return await client.post(
        "/questions", json={"content": "Hello there", **body}, headers=headers
    )


async def test_each_model_is_asked_through_its_own_upstream(
    client: httpx.AsyncClient,
    user_headers: dict[str, str],
    fake_upstream: FakeUpstream,
    second_upstream: FakeUpstream,
) -> None:
    default = await ask(client, user_headers)
    alpha = await ask(client, user_headers, model="alpha")
    beta = await ask(client, user_headers, model="beta")

    for response in (default, alpha, beta):
        assert response.status_code == 201, response.text
        assert response.json()["answer"] == answer_for("Hello there")
    assert [r["model"] for r in fake_upstream.requests] == ["alpha-upstream"] * 2
    assert [h["Authorization"] for h in fake_upstream.headers] == [
        f"Bearer {ALPHA_KEY}"
    ] * 2
    assert [r["model"] for r in second_upstream.requests] == ["beta-upstream"]
    assert [h["Authorization"] for h in second_upstream.headers] == [
        f"Bearer {BETA_KEY}"
    ]
    assert [(r.json()["model"], r.json()["upstream_model"]) for r in (alpha, beta)] == [
        ("alpha", "alpha-upstream"),
        ("beta", "beta-upstream"),
    ]


async def test_every_question_records_the_name_of_the_model_asked(
    client: httpx.AsyncClient,
    user_headers: dict[str, str],
    admin_headers: dict[str, str],
    fake_upstream: FakeUpstream,
) -> None:
    await ask(client, user_headers)
    streamed = await ask(client, user_headers, model="beta", stream=True)
    fake_upstream.mode = "status_400"  # refused: no fallback, stored as failed
    failed = await ask(client, user_headers, model="alpha")

    assert streamed.status_code == 200
    assert failed.status_code == 502
    mine = (await client.get("/questions/me?limit=10", headers=user_headers)).json()
    every = (await client.get("/questions", headers=admin_headers)).json()
    for listing in (mine, every):
        assert [(q["model"], q["upstream_model"], q["status"]) for q in listing] == [
            ("alpha", None, "failed"),
            ("beta", "beta-upstream", "answered"),
            ("alpha", "alpha-upstream", "answered"),
        ]
    one = await client.get(f"/questions/{mine[1]['id']}", headers=user_headers)
    assert one.json()["model"] == "beta"


async def test_an_unknown_model_is_a_404_listing_the_models(
    client: httpx.AsyncClient,
    user_headers: dict[str, str],
    fake_upstream: FakeUpstream,
    second_upstream: FakeUpstream,
) -> None:
    for stream in (False, True):
        response = await ask(client, user_headers, model="gamma", stream=stream)

        assert response.status_code == 404, response.text
        assert response.json() == {
            "detail": "No model is named 'gamma'; the models are: alpha, beta"
        }
    assert fake_upstream.requests == second_upstream.requests == []
    history = await client.get("/questions/me", headers=user_headers)
    assert history.json() == []


async def test_max_tokens_above_the_models_limit_is_a_400(
    client: httpx.AsyncClient,
    user_headers: dict[str, str],
    second_upstream: FakeUpstream,
) -> None:
    over = await ask(client, user_headers, model="beta", max_tokens=BETA_LIMIT + 1)
    at = await ask(client, user_headers, model="beta", max_tokens=BETA_LIMIT)
    omitted = await ask(client, user_headers, model="beta")
    unlimited = await ask(client, user_headers, model="alpha", max_tokens=1000)

    assert over.status_code == 400, over.text
    assert over.json()["detail"] == (
        f"max_tokens is {BETA_LIMIT + 1}; model 'beta' allows at most {BETA_LIMIT}"
    )
    assert (at.status_code, omitted.status_code, unlimited.status_code) == (
        201,
        201,
        201,
    )
    # The default (ASKGATE_LLM_DEFAULT_MAX_TOKENS, 256) is lowered to the limit.
    assert [r["max_tokens"] for r in second_upstream.requests] == [BETA_LIMIT] * 2


async def test_one_models_open_circuit_leaves_the_other_answering(
    client: httpx.AsyncClient,
    user_headers: dict[str, str],
    admin_headers: dict[str, str],
    fake_upstream: FakeUpstream,
    second_upstream: FakeUpstream,
) -> None:
    second_upstream.mode = "status_500"  # not retried, not a cause to fall back
    for _ in range(2):  # llm_breaker_failures
        assert (await ask(client, user_headers, model="beta")).status_code == 502

    refused = await ask(client, user_headers, model="beta")
    answered = await ask(client, user_headers, model="alpha")
    health = (await client.get("/health", headers=admin_headers)).json()
    anonymous = (await client.get("/health")).json()

    assert refused.status_code == 503, refused.text
    assert "circuit open" in refused.json()["detail"]
    assert len(second_upstream.requests) == 2
    assert answered.status_code == 201, answered.text
    assert len(fake_upstream.requests) == 1
    assert health["circuit"] == "closed"  # the default model's
    assert health["status"] == "degraded"  # one model's own upstream is open
    assert health["upstreams"] == [
        {"model": "alpha", "circuit": "closed", "in_flight": 0},
        {"model": "beta", "circuit": "open", "in_flight": 0},
    ]
    # Without a token, from the breakers alone: beta has no fallback, so no way.
    assert anonymous == {"status": "degraded", "database": "ok", "llm": "unreachable"}


async def test_a_busy_model_leaves_the_others_slots_free(
    client: httpx.AsyncClient,
    user_headers: dict[str, str],
    fake_upstream: FakeUpstream,
    second_upstream: FakeUpstream,
) -> None:
    """llm_max_concurrency (1 here) counts per model: beta's one question in
    flight turns the next beta question away, not an alpha one."""
    second_upstream.gate = asyncio.Event()
    held = asyncio.create_task(ask(client, user_headers, model="beta"))
    while not second_upstream.requests:
        await asyncio.sleep(0.01)

    alpha = await ask(client, user_headers, model="alpha")
    beta = await ask(client, user_headers, model="beta")
    second_upstream.gate.set()

    assert alpha.status_code == 201, alpha.text
    assert beta.status_code == 503, beta.text
    assert "Too many questions in flight" in beta.json()["detail"]
    assert (await held).status_code == 201
    assert len(fake_upstream.requests) == len(second_upstream.requests) == 1


async def test_a_model_falls_back_to_its_own_fallbacks_only(
    client: httpx.AsyncClient,
    user_headers: dict[str, str],
    fake_upstream: FakeUpstream,
    second_upstream: FakeUpstream,
) -> None:
    fake_upstream.mode = "status_503"
    rescued = await ask(client, user_headers, model="alpha")
    fake_upstream.mode = "ok"
    second_upstream.mode = "status_503"
    not_rescued = await ask(client, user_headers, model="beta")

    assert rescued.status_code == 201, rescued.text
    assert (rescued.json()["model"], rescued.json()["upstream_model"]) == (
        "alpha",
        "beta-upstream",
    )
    assert [r["model"] for r in second_upstream.requests] == ["beta-upstream"] * 2
    assert not_rescued.status_code == 502, not_rescued.text
    assert [r["model"] for r in fake_upstream.requests] == ["alpha-upstream"]


async def test_a_fallback_counts_towards_its_own_models_breaker(
    client: httpx.AsyncClient,
    user_headers: dict[str, str],
    fake_upstream: FakeUpstream,
    second_upstream: FakeUpstream,
) -> None:
    """One upstream, one breaker: beta failing as alpha's fallback opens beta."""
    fake_upstream.mode = second_upstream.mode = "status_503"
    for _ in range(2):
        assert (await ask(client, user_headers, model="alpha")).status_code == 502

    fake_upstream.mode = second_upstream.mode = "ok"
    beta = await ask(client, user_headers, model="beta")

    assert beta.status_code == 503, beta.text
    assert "circuit open" in beta.json()["detail"]


async def test_no_api_key_in_logs_health_or_answers(
    app: FastAPI,
    client: httpx.AsyncClient,
    user_headers: dict[str, str],
    fake_upstream: FakeUpstream,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    responses = [
        await ask(client, user_headers),
        await ask(client, user_headers, model="beta", stream=True),
        await ask(client, user_headers, model="nope"),
    ]
    fake_upstream.mode = "status_500"
    responses.append(await ask(client, user_headers))
    responses.append(await client.get("/health"))
    responses.append(await client.get("/questions/me", headers=user_headers))

    runtime: Runtime = app.state.runtime
    for key in (ALPHA_KEY, BETA_KEY):
        for response in responses:
            assert key not in response.text
            assert key not in str(response.headers)
        assert key not in caplog.text
        assert key not in repr(runtime.models)


async def test_a_failed_stream_keeps_the_models_name_and_no_upstream_model(
    client: httpx.AsyncClient,
    user_headers: dict[str, str],
    second_upstream: FakeUpstream,
) -> None:
    """No upstream finished the stream, so none is named as having answered."""
    second_upstream.mode = "status_500"  # beta has no fallback
    response = await ask(client, user_headers, model="beta", stream=True)

    assert response.status_code == 200
    assert '"type":"error"' in response.text.replace(" ", "")
    history = await client.get("/questions/me", headers=user_headers)
    assert [(q["model"], q["upstream_model"], q["status"]) for q in history.json()] == [
        ("beta", None, "failed")
    ]
