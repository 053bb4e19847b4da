"""Client addresses, questions per user, registrations per address; the store."""

import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from askgate.app import create_app
from askgate.client_ip import parse_trusted_proxies, resolve_client_ip
from askgate.config import Settings
from askgate.throttle import STORE_DOWN
from tests.factories import Account, auth_headers
from tests.redis_server import BACKENDS, redis_server, redis_url, with_backend

__all__ = ["redis_server", "redis_url"]  # fixtures used through `with_backend`

QUESTIONS = 3
REGISTRATIONS = 3
PASSWORD = "a long enough passphrase"
RATE_HEADERS = ["X-RateLimit-Limit", "X-RateLimit-Remaining", "X-RateLimit-Reset"]


@pytest.fixture(params=BACKENDS)
def settings(settings: Settings, request: pytest.FixtureRequest) -> Settings:
    settings.questions_per_minute = QUESTIONS
    settings.registrations_per_hour = REGISTRATIONS
    return with_backend(settings, request)


def client_at(app: FastAPI, ip: str) -> httpx.AsyncClient:
    transport = httpx.ASGITransport(app=app, client=(ip, 40000))
    return httpx.AsyncClient(transport=transport, base_url="http://test")


@asynccontextmanager
async def running(settings: Settings) -> AsyncIterator[FastAPI]:
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        yield app


# --- client address -----------------------------------------------------------

TRUSTED = parse_trusted_proxies(["10.0.0.0/8", "127.0.0.1", "fd00::/8"])


@pytest.mark.parametrize(
    ("peer", "forwarded", "expected"),
    [
        ("203.0.113.5", [], "203.0.113.5"),
        # Untrusted peer: whatever it claims is ignored.
        ("203.0.113.5", ["198.51.100.1"], "203.0.113.5"),
        # Trusted proxy: the right-most address that is not a proxy.
        ("127.0.0.1", ["198.51.100.1"], "198.51.100.1"),
        ("10.0.0.2", ["1.1.1.1, 198.51.100.1, 10.0.0.3"], "198.51.100.1"),
        ("10.0.0.2", ["1.1.1.1", "198.51.100.1,10.0.0.3"], "198.51.100.1"),
        # Only proxies in the chain: the farthest one is the best we know.
        ("10.0.0.2", ["10.0.0.4, 10.0.0.3"], "10.0.0.4"),
        # Garbage stops the walk at the last address a proxy vouched for.
        ("10.0.0.2", ["198.51.100.1, not-an-ip, 10.0.0.3"], "10.0.0.3"),
        ("10.0.0.2", ["198.51.100.1:5555"], "198.51.100.1"),
        ("10.0.0.2", ["[2001:db8::7]:443"], "2001:db8::7"),
        ("fd00::1", ["2001:db8::7"], "2001:db8::7"),
        ("::ffff:203.0.113.5", [], "203.0.113.5"),
        ("10.0.0.2", [""], "10.0.0.2"),
        (None, ["198.51.100.1"], "unknown"),
    ],
)
def test_client_ip(peer: str | None, forwarded: list[str], expected: str) -> None:
    assert resolve_client_ip(peer, forwarded, TRUSTED) == expected


def test_forwarded_for_is_ignored_without_trusted_proxies() -> None:
    assert resolve_client_ip("127.0.0.1", ["198.51.100.1"], ()) == "127.0.0.1"


def test_invalid_trusted_proxy_names_the_setting() -> None:
    with pytest.raises(ValueError, match=r"ASKGATE_TRUSTED_PROXIES: 'proxy\.local'"):
        parse_trusted_proxies(["10.0.0.0/8", "proxy.local"])


# --- questions ----------------------------------------------------------------


async def ask(
    client: httpx.AsyncClient, headers: dict[str, str], **body: Any
) -> httpx.Response:
    return await client.post(
        "/questions", json={"content": "Rate me?", **body}, headers=headers
    )


def rate_headers(response: httpx.Response) -> dict[str, int]:
    return {name: int(response.headers[name]) for name in RATE_HEADERS}


async def test_questions_are_limited_per_user_with_headers(
    client: httpx.AsyncClient, user_headers: dict[str, str]
) -> None:
    answered = [await ask(client, user_headers) for _ in range(QUESTIONS)]
    refused = await ask(client, user_headers)

    assert [r.status_code for r in answered] == [201] * QUESTIONS
    assert [rate_headers(r)["X-RateLimit-Remaining"] for r in answered] == [2, 1, 0]
    assert {rate_headers(r)["X-RateLimit-Limit"] for r in answered} == {QUESTIONS}
    assert refused.status_code == 429, refused.text
    retry_after = int(refused.headers["Retry-After"])
    assert 1 <= retry_after <= 60
    assert refused.json() == {
        "detail": (
            f"Too many questions: at most {QUESTIONS} per minute. "
            f"Try again in {retry_after} seconds."
        )
    }
    limits = rate_headers(refused)
    assert limits["X-RateLimit-Remaining"] == 0
    assert limits["X-RateLimit-Reset"] == rate_headers(answered[0])["X-RateLimit-Reset"]
    # The refused question was never asked, so it is not stored either.
    history = await client.get("/questions/me?limit=10", headers=user_headers)
    assert len(history.json()) == QUESTIONS


async def test_question_limit_is_per_user(
    client: httpx.AsyncClient,
    user_headers: dict[str, str],
    admin_headers: dict[str, str],
) -> None:
    for _ in range(QUESTIONS):
        assert (await ask(client, user_headers)).status_code == 201
    assert (await ask(client, user_headers)).status_code == 429

    assert (await ask(client, admin_headers)).status_code == 201


async def test_streamed_answers_carry_the_rate_headers(
    client: httpx.AsyncClient, user_headers: dict[str, str]
) -> None:
    response = await ask(client, user_headers, stream=True)

    assert response.status_code == 200, response.text
    assert rate_headers(response)["X-RateLimit-Remaining"] == QUESTIONS - 1


async def test_unauthenticated_questions_are_401_not_counted(
    client: httpx.AsyncClient, user_headers: dict[str, str]
) -> None:
    for _ in range(QUESTIONS + 1):
        assert (await ask(client, {})).status_code == 401

    response = await ask(client, user_headers)
    assert response.status_code == 201
    assert rate_headers(response)["X-RateLimit-Remaining"] == QUESTIONS - 1


async def test_workers_share_counters_only_through_redis(
    settings: Settings, user: Account
) -> None:
    async with (
        running(settings) as one,
        running(settings) as two,
        client_at(one, "192.0.2.1") as c1,
        client_at(two, "192.0.2.1") as c2,
    ):
        headers = await auth_headers(c1, user)
        for _ in range(QUESTIONS):
            assert (await ask(c1, headers)).status_code == 201

        on_other_worker = await ask(c2, headers)

    # In process, each worker (app) counts on its own; Redis is shared.
    expected = 429 if settings.redis_url else 201
    assert on_other_worker.status_code == expected, on_other_worker.text


# --- registration -------------------------------------------------------------


async def register(
    client: httpx.AsyncClient, username: str, headers: dict[str, str] | None = None
) -> httpx.Response:
    return await client.post(
        "/auth/register",
        json={"username": username, "password": PASSWORD},
        headers=headers,
    )


async def test_registrations_are_limited_per_address(app: FastAPI) -> None:
    async with client_at(app, "203.0.113.20") as spammer:
        for n in range(REGISTRATIONS):
            assert (await register(spammer, f"spam{n}")).status_code == 201
        refused = await register(spammer, "spam-more")
        spoofed = await register(
            spammer, "spam-spoof", headers={"X-Forwarded-For": "198.51.100.77"}
        )

    assert refused.status_code == 429, refused.text
    retry_after = int(refused.headers["Retry-After"])
    assert 1 <= retry_after <= 3600
    assert refused.json() == {
        "detail": (
            f"Too many registrations from this address: at most {REGISTRATIONS} "
            f"per hour. Try again in {retry_after} seconds."
        )
    }
    assert spoofed.status_code == 429
    async with client_at(app, "203.0.113.21") as neighbour:
        assert (await register(neighbour, "neighbour")).status_code == 201
        # The refused attempts created nothing.
        assert (await register(neighbour, "spam-more")).status_code == 201


async def test_refused_registration_attempts_count_too(app: FastAPI) -> None:
    async with client_at(app, "203.0.113.30") as prober:
        for _ in range(REGISTRATIONS):
            await register(prober, "taken-name")  # 201, then 409s

        assert (await register(prober, "fresh-name")).status_code == 429


# --- the store ----------------------------------------------------------------


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port  # nothing listens there once the socket is closed


async def test_unreachable_redis_answers_503_never_unlimited(
    settings: Settings,
) -> None:
    settings.redis_url = f"redis://127.0.0.1:{_closed_port()}/0"
    async with running(settings) as app, client_at(app, "192.0.2.2") as client:
        login = await client.post(
            "/auth/token", data={"username": "anyone", "password": "whatever"}
        )
        registration = await register(client, "someone")

    for response in (login, registration):
        assert response.status_code == 503, response.text
        assert response.json() == {"detail": STORE_DOWN}


async def test_redis_url_with_another_scheme_stops_startup(settings: Settings) -> None:
    settings.redis_url = "http://127.0.0.1:6379"
    with pytest.raises(ValueError, match="ASKGATE_REDIS_URL"):
        async with running(settings):
            pass


# --- OpenAPI ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("post", "/auth/token"),
        ("post", "/auth/register"),
        ("post", "/questions"),
        ("patch", "/users/me"),
    ],
)
def test_limited_routes_document_429(app: FastAPI, method: str, path: str) -> None:
    responses = app.openapi()["paths"][path][method]["responses"]

    documented = responses["429"]
    assert documented["description"]
    assert "Retry-After" in documented["headers"]
    schema = documented["content"]["application/json"]["schema"]
    assert schema == {"$ref": "#/components/schemas/ErrorDetail"}


def test_questions_document_the_rate_headers(app: FastAPI) -> None:
    responses = app.openapi()["paths"]["/questions"]["post"]["responses"]

    for code in ("200", "201", "429"):
        assert set(RATE_HEADERS) <= set(responses[code]["headers"]), code
    assert responses["201"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/QuestionRead"
    }
