"""GET /metrics in one process: known traffic, then the exact numbers it must add.

The registry is the process's (every app of the test session counts into it), so
each test compares a scrape before with one after. `askgate serve --workers 2`
is tested in tests/test_serve_metrics.py.
"""

import asyncio
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from pydantic import SecretStr, ValidationError

from askgate.app import create_app
from askgate.config import Settings
from askgate.metrics import MULTIPROC_ENV, multiprocess_dir
from tests.factories import Account, auth_headers, create_user
from tests.fake_upstream import MODEL, FakeUpstream
from tests.metrics_scrape import delta, scrape

METRICS_TOKEN = "metrics-token-0123456789-abcdef"
USAGE = {"prompt_tokens": 7, "completion_tokens": 11, "total_tokens": 18}
QUESTION = "What is the secret question text?"
HTTP = "askgate_http_requests_total"
QUESTIONS = "askgate_questions_total"
REFUSALS = "askgate_refusals_total"


@asynccontextmanager
async def serving(
    settings: Settings,
) -> AsyncIterator[tuple[FastAPI, httpx.AsyncClient]]:
    """An app of these settings and a client of it (for settings a test changes)."""
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as c:
            yield app, c


async def ask(
    client: httpx.AsyncClient, headers: dict[str, str], **body: Any
) -> httpx.Response:
    return await client.post(
        "/questions", json={"content": QUESTION, **body}, headers=headers
    )


async def test_known_traffic_adds_exact_numbers(
    client: httpx.AsyncClient,
    user: Account,
    user_headers: dict[str, str],
    fake_upstream: FakeUpstream,
) -> None:
    fake_upstream.usage = USAGE
    before = await scrape(client)

    plain = [await ask(client, user_headers) for _ in range(2)]
    streamed = await ask(client, user_headers, stream=True)
    fake_upstream.mode = "status_400"  # neither retried nor a circuit failure
    failed = await ask(client, user_headers)
    fake_upstream.mode = "ok"
    chat = await client.post(
        "/v1/chat/completions",
        json={"model": MODEL, "messages": [{"role": "user", "content": QUESTION}]},
        headers=user_headers,
    )
    unknown = await client.get(f"/no/such/{user.username}")
    one = await client.get(f"/questions/{plain[0].json()['id']}", headers=user_headers)
    wrong = [
        await client.post(
            "/auth/token", data={"username": user.username, "password": "wrong!"}
        )
        for _ in range(2)
    ]
    after = await scrape(client)

    assert [r.status_code for r in plain] == [201, 201]
    assert (streamed.status_code, failed.status_code, chat.status_code) == (
        200,
        502,
        200,
    )
    assert (unknown.status_code, one.status_code) == (404, 200)
    assert [r.status_code for r in wrong] == [401, 401]
    assert len(fake_upstream.requests) == 5

    def d(name: str, **labels: str) -> float:
        return delta(before, after, name, **labels)

    assert d("askgate_questions_total", model=MODEL, status="answered") == 4
    assert d("askgate_questions_total", model=MODEL, status="failed") == 1
    assert d("askgate_questions_total", model=MODEL, status="cancelled") == 0
    # The failed question's upstream reported nothing: 4 answers' usage.
    assert d("askgate_prompt_tokens_total", model=MODEL) == 4 * 7
    assert d("askgate_completion_tokens_total", model=MODEL) == 4 * 11
    assert d(HTTP, route="/questions", method="POST", status="201") == 2
    assert d(HTTP, route="/questions", method="POST", status="200") == 1
    assert d(HTTP, route="/questions", method="POST", status="502") == 1
    assert d(HTTP, route="/v1/chat/completions", method="POST", status="200") == 1
    assert d(HTTP, route="unmatched", method="GET", status="404") == 1
    assert d(HTTP, route="/questions/{question_id}", method="GET", status="200") == 1
    assert d(HTTP, route="/auth/token", method="POST", status="401") == 2
    duration = "askgate_http_request_duration_seconds_count"
    assert d(duration, route="/questions", method="POST") == 4
    upstream = "askgate_upstream_request_duration_seconds_count"
    assert d(upstream, model=MODEL) == 5
    assert d("askgate_upstream_time_to_first_token_seconds_count", model=MODEL) == 1
    assert d("askgate_login_failures_total") == 2
    assert after.value("askgate_upstream_in_flight", model=MODEL) == 0
    assert after.value("askgate_upstream_queued", model=MODEL) == 0
    assert after.value("askgate_upstream_circuit_open", model=MODEL) == 0
    # No label holds a username, a user id, a raw path or a question.
    labels = after.askgate_labels()
    assert set(labels) == {"route", "method", "status", "model", "kind", "le"}
    assert str(user.id) not in labels["route"] | labels["model"] | labels["kind"]
    assert user.username not in after.text
    assert QUESTION not in after.text
    assert "/no/such" not in after.text


async def test_an_unknown_method_is_one_label(client: httpx.AsyncClient) -> None:
    before = await scrape(client)

    for method in ("BREW", "PROPFIND"):
        response = await client.request(method, "/health")
        assert response.status_code == 405

    after = await scrape(client)
    assert (
        delta(before, after, HTTP, route="/health", method="other", status="405") == 2
    )
    assert "BREW" not in after.text


async def test_questions_cancelled_by_their_client_are_counted(
    server_url: str,
    client: httpx.AsyncClient,
    user_headers: dict[str, str],
    fake_upstream: FakeUpstream,
) -> None:
    fake_upstream.mode = "slow_stream"
    before = await scrape(client)

    async with (
        httpx.AsyncClient(base_url=server_url) as real_client,
        real_client.stream(
            "POST",
            "/questions",
            json={"content": "Count forever", "stream": True},
            headers=user_headers,
        ) as response,
    ):
        assert response.status_code == 200
        lines = response.aiter_lines()
        async with asyncio.timeout(5):
            async for line in lines:
                if line.startswith("data:"):
                    break  # one delta arrived; leave

    async with asyncio.timeout(5):  # a bound against hanging, not a speed
        while True:
            after = await scrape(client)
            cancelled = delta(
                before,
                after,
                "askgate_questions_total",
                model=MODEL,
                status="cancelled",
            )
            if cancelled:
                break
            await asyncio.sleep(0.05)
    assert cancelled == 1
    assert (
        delta(before, after, "askgate_questions_total", model=MODEL, status="answered")
        == 0
    )


async def test_refusals_are_counted_by_kind(settings: Settings) -> None:
    settings.questions_per_minute = 1
    settings.registrations_per_hour = 1
    settings.login_failures_per_account = 1
    async with serving(settings) as (app, client):
        user = await create_user(app.state.runtime.db)
        headers = await auth_headers(client, user)
        before = await scrape(client)
        asked = [await ask(client, headers) for _ in range(2)]
        registered = [
            await client.post(
                "/auth/register",
                json={"username": f"newcomer{i}", "password": "a long passphrase"},
            )
            for i in range(2)
        ]
        logins = [
            await client.post(
                "/auth/token", data={"username": "nobody", "password": "wrong!"}
            )
            for _ in range(2)
        ]
        after = await scrape(client)

    assert [r.status_code for r in asked] == [201, 429]
    assert [r.status_code for r in registered] == [201, 429]
    assert [r.status_code for r in logins] == [401, 429]

    def refused(kind: str) -> float:
        return delta(before, after, "askgate_refusals_total", kind=kind)

    assert refused("questions_per_minute") == 1
    assert refused("registrations") == 1
    assert refused("login") == 1
    assert refused("quota") == 0
    assert delta(before, after, "askgate_login_failures_total") == 1


async def test_quota_refusals_are_counted(settings: Settings) -> None:
    settings.daily_token_quota = 10  # less than any question's reservation
    async with serving(settings) as (app, client):
        user = await create_user(app.state.runtime.db)
        headers = await auth_headers(client, user)
        before = await scrape(client)
        refused = await ask(client, headers)
        after = await scrape(client)

    assert refused.status_code == 429, refused.text
    assert delta(before, after, "askgate_refusals_total", kind="quota") == 1
    assert (
        delta(before, after, "askgate_refusals_total", kind="questions_per_minute") == 0
    )


async def test_questions_in_flight_and_queued_are_gauges(
    settings: Settings, fake_upstream: FakeUpstream
) -> None:
    settings.llm_max_concurrency = 1
    fake_upstream.gate = asyncio.Event()
    async with serving(settings) as (app, client):
        user = await create_user(app.state.runtime.db)
        headers = await auth_headers(client, user)
        first = asyncio.create_task(ask(client, headers))
        second = asyncio.create_task(ask(client, headers))
        async with asyncio.timeout(10):  # a bound against hanging, not a speed
            while True:
                during = await scrape(client)
                if during.value("askgate_upstream_queued", model=MODEL) == 1:
                    break
                await asyncio.sleep(0.02)
        fake_upstream.gate.set()
        answers = await asyncio.gather(first, second)
        after = await scrape(client)

    assert [a.status_code for a in answers] == [201, 201]
    assert during.value("askgate_upstream_in_flight", model=MODEL) == 1
    assert after.value("askgate_upstream_in_flight", model=MODEL) == 0
    assert after.value("askgate_upstream_queued", model=MODEL) == 0


async def test_an_open_circuit_shows(
    client: httpx.AsyncClient,
    user_headers: dict[str, str],
    fake_upstream: FakeUpstream,
) -> None:
    before = await scrape(client)
    fake_upstream.mode = "status_500"
    for _ in range(5):  # llm_breaker_failures
        assert (await ask(client, user_headers)).status_code == 502

    after = await scrape(client)
    assert before.value("askgate_upstream_circuit_open", model=MODEL) == 0
    assert after.value("askgate_upstream_circuit_open", model=MODEL) == 1


# --- the metrics token ----------------------------------------------------------


@pytest.mark.parametrize(
    "authorization",
    [
        pytest.param(None, id="none"),
        pytest.param("Bearer wrong-token", id="wrong"),
        pytest.param(f"Basic {METRICS_TOKEN}", id="other-scheme"),
        pytest.param("Bearer ", id="empty"),
        pytest.param(f"Bearer {METRICS_TOKEN}x", id="longer"),
    ],
)
async def test_with_a_metrics_token_set_it_is_required(
    settings: Settings, authorization: str | None
) -> None:
    settings.metrics_token = SecretStr(METRICS_TOKEN)
    headers = {"Authorization": authorization} if authorization else {}
    async with serving(settings) as (_, client):
        refused = await client.get("/metrics", headers=headers)
        allowed = await scrape(
            client, headers={"Authorization": f"Bearer {METRICS_TOKEN}"}
        )

    assert refused.status_code == 401
    assert refused.headers["WWW-Authenticate"] == "Bearer"
    assert METRICS_TOKEN not in refused.text
    assert METRICS_TOKEN not in allowed.text
    assert "askgate_http_requests_total{" in allowed.text


async def test_an_empty_metrics_token_is_refused_at_startup() -> None:
    with pytest.raises(ValidationError, match="metrics_token"):
        Settings(_env_file=None, metrics_token="  ")


async def test_metrics_are_never_cached(client: httpx.AsyncClient) -> None:
    response = await client.get("/metrics")

    assert response.headers["Cache-Control"] == "no-store"


def test_serve_gives_several_workers_a_fresh_directory_and_removes_it() -> None:
    assert MULTIPROC_ENV not in os.environ
    with multiprocess_dir(1):
        assert MULTIPROC_ENV not in os.environ
    with multiprocess_dir(2):
        path = os.environ[MULTIPROC_ENV]
        assert os.listdir(path) == []
    assert not os.path.exists(path)
    assert MULTIPROC_ENV not in os.environ
