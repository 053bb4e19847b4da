"""Browser hardening headers on every response, a CSP the docs can live with,
no server banner, and CORS closed unless ASKGATE_CORS_ORIGINS opens it."""

from collections.abc import AsyncIterator

import httpx
import pytest
from fastapi import FastAPI

from askgate.app import create_app
from askgate.config import Settings

STRICT_CSP = "default-src 'none'; frame-ancestors 'none'; base-uri 'none'"
ORIGIN = "https://chat.example.com"


def assert_hardened(response: httpx.Response) -> None:
    headers = response.headers
    assert headers["x-content-type-options"] == "nosniff"
    assert headers["referrer-policy"] == "no-referrer"
    assert headers["x-frame-options"] == "DENY"
    assert "frame-ancestors 'none'" in headers["content-security-policy"]
    assert "server" not in headers
    assert "x-powered-by" not in headers


@pytest.mark.parametrize(
    ("method", "path", "status"),
    [
        ("GET", "/health", 200),
        ("GET", "/openapi.json", 200),
        ("GET", "/users/me", 401),
        ("GET", "/nowhere", 404),
        ("DELETE", "/health", 405),
        ("POST", "/auth/register", 422),
    ],
)
async def test_api_responses_carry_the_strict_policy(
    client: httpx.AsyncClient, method: str, path: str, status: int
) -> None:
    response = await client.request(method, path)

    assert response.status_code == status
    assert_hardened(response)
    assert response.headers["content-security-policy"] == STRICT_CSP


async def test_authenticated_and_error_responses_too(
    client: httpx.AsyncClient, user_headers: dict[str, str]
) -> None:
    ok = await client.get("/users/me", headers=user_headers)
    too_large = await client.post(
        "/questions", content=b"x" * (70 * 1024), headers=user_headers
    )

    for response in (ok, too_large):
        assert_hardened(response)
        assert response.headers["content-security-policy"] == STRICT_CSP
    assert too_large.status_code == 413


async def test_an_unexpected_error_is_hardened(app: FastAPI) -> None:
    async def boom() -> None:
        raise RuntimeError("boom")

    app.add_api_route("/boom", boom)
    # raise_app_exceptions=False: the client sees the 500, as a browser would.
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
        response = await client.get("/boom")

    assert response.status_code == 500
    assert_hardened(response)


@pytest.mark.parametrize(
    "path",
    [
        "/docs",
        "/redoc",
        "/docs/oauth2-redirect",
        "/static-offline-docs/swagger-ui-bundle.js",
        "/static-offline-docs/redoc.standalone.js",
    ],
)
async def test_docs_get_a_policy_that_lets_them_run(
    client: httpx.AsyncClient, path: str
) -> None:
    response = await client.get(path)

    assert response.status_code == 200
    assert_hardened(response)
    csp = response.headers["content-security-policy"]
    directives = dict(part.strip().split(" ", 1) for part in csp.split(";"))
    assert directives["default-src"] == "'none'"
    assert "'self'" in directives["script-src"]
    assert "'self'" in directives["style-src"]
    assert "'self'" in directives["connect-src"]  # fetches /openapi.json
    assert "blob:" in directives["worker-src"]  # ReDoc's search worker
    assert "*" not in csp
    assert "unsafe-eval" not in csp


async def test_docs_policy_stays_on_the_docs(client: httpx.AsyncClient) -> None:
    response = await client.get("/docsx")

    assert response.headers["content-security-policy"] == STRICT_CSP


# --- CORS -------------------------------------------------------------------------


async def preflight(client: httpx.AsyncClient, path: str) -> httpx.Response:
    return await client.options(
        path,
        headers={
            "Origin": ORIGIN,
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "authorization, content-type",
        },
    )


async def test_cors_is_closed_by_default(client: httpx.AsyncClient) -> None:
    response = await client.get("/health", headers={"Origin": ORIGIN})
    answer = await preflight(client, "/questions")

    assert response.status_code == 200
    assert "access-control-allow-origin" not in response.headers
    assert "access-control-allow-origin" not in answer.headers
    assert answer.status_code == 405


@pytest.fixture
async def cors_client(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    settings.cors_origins = [ORIGIN]
    application = create_app(settings)
    async with application.router.lifespan_context(application):
        transport = httpx.ASGITransport(app=application)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as c:
            yield c


async def test_configured_origins_may_call_the_api(
    cors_client: httpx.AsyncClient,
) -> None:
    answer = await preflight(cors_client, "/questions")
    response = await cors_client.get("/health", headers={"Origin": ORIGIN})

    assert answer.status_code == 200
    assert answer.headers["access-control-allow-origin"] == ORIGIN
    assert "POST" in answer.headers["access-control-allow-methods"]
    allowed_headers = answer.headers["access-control-allow-headers"].lower()
    assert "authorization" in allowed_headers
    assert_hardened(answer)
    assert response.headers["access-control-allow-origin"] == ORIGIN
    exposed = {
        name.strip().lower()
        for name in response.headers["access-control-expose-headers"].split(",")
    }
    assert {
        "x-request-id",
        "x-process-time-ms",
        "x-total-count",
        "retry-after",
        "x-ratelimit-limit",
        "x-ratelimit-remaining",
        "x-ratelimit-reset",
    } <= exposed
    assert "access-control-allow-credentials" not in response.headers


async def test_other_origins_stay_out(cors_client: httpx.AsyncClient) -> None:
    response = await cors_client.options(
        "/questions",
        headers={
            "Origin": "https://evil.example",
            "Access-Control-Request-Method": "POST",
        },
    )
    plain = await cors_client.get("/health", headers={"Origin": "https://evil.example"})

    assert response.status_code == 400
    assert "access-control-allow-origin" not in response.headers
    assert "access-control-allow-origin" not in plain.headers


# --- over a real socket -----------------------------------------------------------


async def test_no_server_banner_from_uvicorn(server_url: str) -> None:
    async with httpx.AsyncClient(base_url=server_url) as client:
        response = await client.get("/health")

    assert response.status_code == 200
    assert_hardened(response)
