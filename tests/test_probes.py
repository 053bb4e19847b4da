"""The probes (/health/live, /health/ready) and what /health tells whom: cheap
checks for anyone, the per-upstream detail (which calls every upstream) for an
admin only."""

import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx
import pytest
from fastapi import FastAPI

from askgate.app import create_app
from askgate.config import Settings, UpstreamConfig
from askgate.db import Database, create_engine
from askgate.llm.resilience import CircuitState
from askgate.runtime import Runtime
from tests.factories import auth_headers, create_user
from tests.fake_upstream import FakeUpstream
from tests.redis_server import redis_server, redis_url

__all__ = ["redis_server", "redis_url"]  # fixtures used through getfixturevalue

READY = {
    "status": "ready",
    "database": "ok",
    "redis": "not_configured",
    "llm": "ok",
    "failing": [],
}


@asynccontextmanager
async def serving(
    settings: Settings,
) -> AsyncIterator[tuple[FastAPI, httpx.AsyncClient]]:
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as c:
            yield app, c


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port  # nothing listens there once the socket is closed


async def test_live_answers_200_and_is_never_cached(client: httpx.AsyncClient) -> None:
    response = await client.get("/health/live")

    assert response.status_code == 200
    assert response.json() == {"status": "ok"}
    assert response.headers["Cache-Control"] == "no-store"


async def test_ready_answers_200_when_everything_answers(
    client: httpx.AsyncClient, fake_upstream: FakeUpstream
) -> None:
    response = await client.get("/health/ready")

    assert response.status_code == 200
    assert response.json() == READY
    assert response.headers["Cache-Control"] == "no-store"
    assert fake_upstream.requests == []
    assert fake_upstream.model_lists == 0


async def test_both_probes_answer_503_while_shutting_down(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    runtime.shutting_down = True

    live = await client.get("/health/live")
    ready = await client.get("/health/ready")

    assert live.status_code == ready.status_code == 503
    assert live.json() == {"status": "shutting_down"}
    assert ready.json() == {"status": "shutting_down", "failing": ["shutting_down"]}


async def test_ready_names_the_database_when_it_does_not_answer(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    working = runtime.db
    runtime.db = Database(
        create_engine(f"postgresql+asyncpg://askgate@127.0.0.1:{_closed_port()}/none")
    )
    try:
        response = await client.get("/health/ready")
        live = await client.get("/health/live")
        health = await client.get("/health")
    finally:
        await runtime.db.dispose()
        runtime.db = working

    assert response.status_code == 503
    assert response.json() == {**READY, "status": "not_ready", "database": "error"} | {
        "failing": ["database"]
    }
    assert live.status_code == 200  # liveness checks no dependency
    assert health.json() == {"status": "degraded", "database": "error", "llm": "ok"}


@pytest.mark.parametrize("up", [True, False], ids=["redis-up", "redis-down"])
async def test_ready_pings_redis_when_configured(
    settings: Settings, request: pytest.FixtureRequest, up: bool
) -> None:
    settings.redis_url = (
        request.getfixturevalue("redis_url")
        if up
        else f"redis://127.0.0.1:{_closed_port()}/0"
    )
    async with serving(settings) as (_, client):
        response = await client.get("/health/ready")

    if up:
        assert response.status_code == 200
        assert response.json() == {**READY, "redis": "ok"}
    else:
        assert response.status_code == 503
        assert response.json() == {
            **READY,
            "status": "not_ready",
            "redis": "error",
            "failing": ["redis"],
        }


async def test_ready_answers_503_once_every_circuit_is_open_without_asking_upstream(
    client: httpx.AsyncClient,
    user_headers: dict[str, str],
    fake_upstream: FakeUpstream,
) -> None:
    fake_upstream.mode = "status_500"
    for _ in range(5):  # llm_breaker_failures
        asked = await client.post(
            "/questions", json={"content": "Hi"}, headers=user_headers
        )
        assert asked.status_code == 502
    calls = len(fake_upstream.requests)

    response = await client.get("/health/ready")
    health = await client.get("/health")

    assert response.status_code == 503
    assert response.json() == {
        **READY,
        "status": "not_ready",
        "llm": "circuit_open",
        "failing": ["llm"],
    }
    assert health.json() == {
        "status": "degraded",
        "database": "ok",
        "llm": "unreachable",
    }
    assert len(fake_upstream.requests) == calls
    assert fake_upstream.model_lists == 0


async def test_ready_without_a_model_is_not_ready(settings: Settings) -> None:
    settings.llm_base_url = None
    settings.llm_model = None
    async with serving(settings) as (_, client):
        response = await client.get("/health/ready")
        health = await client.get("/health")

    assert response.status_code == 503
    assert response.json()["llm"] == "not_configured"
    assert response.json()["failing"] == ["llm"]
    assert health.json() == {
        "status": "degraded",
        "database": "ok",
        "llm": "not_configured",
    }


# --- /health: cheap for anyone, detailed for an admin ------------------------------


async def test_health_asks_no_upstream_for_anyone_but_an_admin(
    client: httpx.AsyncClient,
    user_headers: dict[str, str],
    fake_upstream: FakeUpstream,
) -> None:
    anonymous = await client.get("/health")
    user = await client.get("/health", headers=user_headers)
    invalid = await client.get("/health", headers={"Authorization": "Bearer nope"})

    for response in (anonymous, user, invalid):
        assert response.status_code == 200
        assert response.json() == {"status": "ok", "database": "ok", "llm": "ok"}
        assert response.headers["Cache-Control"] == "no-store"
    assert fake_upstream.model_lists == 0
    assert fake_upstream.requests == []


async def test_an_admin_gets_the_detail_from_one_call_per_upstream(
    client: httpx.AsyncClient,
    admin_headers: dict[str, str],
    fake_upstream: FakeUpstream,
) -> None:
    response = await client.get("/health", headers=admin_headers)

    assert response.status_code == 200
    assert set(response.json()) == {
        "status",
        "database",
        "llm",
        "circuit",
        "upstreams",
    }
    assert fake_upstream.model_lists == 1


async def test_anonymous_health_stays_ok_while_an_upstream_is_down_but_closed(
    client: httpx.AsyncClient,
    admin_headers: dict[str, str],
    fake_upstream: FakeUpstream,
) -> None:
    """Without a call, the breakers are all it knows: an upstream that stopped
    answering shows once questions have failed, not before."""
    await fake_upstream.stop()

    anonymous = await client.get("/health")
    admin = await client.get("/health", headers=admin_headers)

    assert anonymous.json()["llm"] == "ok"
    assert admin.json()["llm"] == "unreachable"


async def test_ready_stays_200_while_a_fallback_answers_for_an_open_circuit(
    settings: Settings,
    fake_upstream: FakeUpstream,
    second_upstream: FakeUpstream,
) -> None:
    """The primary's breaker open, its fallback's closed: questions are still
    answered, so the instance stays ready (taking every instance out of the
    balancer for one upstream's outage would stop logins and history too)."""
    settings = settings.model_copy(
        update={
            "llm_fallback_urls": [
                UpstreamConfig(base_url=second_upstream.base_url, model="backup")
            ],
            "llm_max_retries": 0,
        }
    )
    fake_upstream.mode = "status_503"
    async with serving(settings) as (app, client):
        headers = await auth_headers(client, await create_user(app.state.runtime.db))
        for _ in range(5):  # llm_breaker_failures
            asked = await client.post(
                "/questions", json={"content": "Hi"}, headers=headers
            )
            assert asked.status_code == 201, asked.text  # the fallback answered
        models = app.state.runtime.models
        assert models.default.upstream.breaker.state is CircuitState.OPEN
        response = await client.get("/health/ready")

    assert response.status_code == 200
    assert response.json() == READY
