"""Operations: health, request ids, timing headers, the access log, the offline
docs and the OpenAPI description."""

import logging
import re
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import select

from askgate.db import Database
from askgate.users.models import Role, User
from tests.factories import Account, login
from tests.fake_upstream import FakeUpstream

REQUEST_ID = "X-Request-ID"
PROCESS_TIME = "X-Process-Time-ms"
ACCESS_LOGGER = "askgate.access"
HTTP_METHODS = {"get", "put", "post", "delete", "patch", "options", "head", "trace"}


async def test_health_is_ok_while_the_upstream_answers(
    client: httpx.AsyncClient, admin_headers: dict[str, str]
) -> None:
    response = await client.get("/health", headers=admin_headers)

    assert response.status_code == 200
    assert response.json() == {
        "status": "ok",
        "database": "ok",
        "llm": "ok",
        "circuit": "closed",
        "upstreams": [{"model": "fake-model", "circuit": "closed", "in_flight": 0}],
    }


async def test_health_is_degraded_when_the_upstream_is_down(
    client: httpx.AsyncClient,
    fake_upstream: FakeUpstream,
    admin_headers: dict[str, str],
) -> None:
    await fake_upstream.stop()

    response = await client.get("/health", headers=admin_headers)

    assert response.status_code == 200
    assert response.json() == {
        "status": "degraded",
        "database": "ok",
        "llm": "unreachable",
        "circuit": "closed",
        "upstreams": [{"model": "fake-model", "circuit": "closed", "in_flight": 0}],
    }


# One request per kind of outcome: success, unknown route, bad body, no token.
OUTCOMES = [
    pytest.param("GET", "/health", None, 200, id="200"),
    pytest.param("GET", "/no/such/route", None, 404, id="404"),
    pytest.param("POST", "/auth/register", {"username": "x"}, 422, id="422"),
    pytest.param("GET", "/users/me", None, 401, id="401"),
]


def _assert_process_time(response: httpx.Response) -> None:
    value = float(response.headers[PROCESS_TIME])
    assert value >= 0


@pytest.mark.parametrize(("method", "path", "body", "expected"), OUTCOMES)
async def test_every_response_gets_a_generated_request_id_and_timing(
    client: httpx.AsyncClient,
    method: str,
    path: str,
    body: dict[str, Any] | None,
    expected: int,
) -> None:
    first = await client.request(method, path, json=body)
    second = await client.request(method, path, json=body)

    assert first.status_code == second.status_code == expected
    assert re.fullmatch(r"[A-Za-z0-9._:-]{1,128}", first.headers[REQUEST_ID])
    assert first.headers[REQUEST_ID] != second.headers[REQUEST_ID]
    _assert_process_time(first)


@pytest.mark.parametrize(("method", "path", "body", "expected"), OUTCOMES)
async def test_a_valid_incoming_request_id_is_echoed(
    client: httpx.AsyncClient,
    method: str,
    path: str,
    body: dict[str, Any] | None,
    expected: int,
) -> None:
    request_id = "trace-42.abc:DEF_9"

    response = await client.request(
        method, path, json=body, headers={REQUEST_ID: request_id}
    )

    assert response.status_code == expected
    assert response.headers[REQUEST_ID] == request_id
    _assert_process_time(response)


@pytest.mark.parametrize(
    "request_id",
    [
        pytest.param("has spaces in it", id="spaces"),
        pytest.param("a" * 500, id="500-chars"),
        pytest.param("id\u00e9", id="non-ascii"),
        pytest.param("", id="empty"),
    ],
)
async def test_an_invalid_incoming_request_id_is_replaced(
    client: httpx.AsyncClient, caplog: pytest.LogCaptureFixture, request_id: str
) -> None:
    caplog.set_level(logging.INFO, logger=ACCESS_LOGGER)

    response = await client.get(
        "/health", headers=[(REQUEST_ID.encode(), request_id.encode())]
    )

    generated = response.headers[REQUEST_ID]
    assert generated != request_id
    assert re.fullmatch(r"[A-Za-z0-9._:-]{1,128}", generated)
    (record,) = _access_records(caplog)
    assert f" request_id={generated} " in record.getMessage()


async def test_an_unexpected_error_still_gets_a_request_id_and_a_log_line(
    app: FastAPI, caplog: pytest.LogCaptureFixture
) -> None:
    async def crash() -> None:
        raise RuntimeError("simulated bug")

    app.add_api_route("/crash", crash, include_in_schema=False)
    caplog.set_level(logging.INFO, logger=ACCESS_LOGGER)
    # The error is re-raised to the server (which logs it) after the response.
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as c:
        response = await c.get("/crash", headers={REQUEST_ID: "crash-1"})

    assert response.status_code == 500
    assert response.json() == {"detail": "Internal server error"}
    assert "simulated bug" not in response.text
    assert response.headers[REQUEST_ID] == "crash-1"
    _assert_process_time(response)
    (record,) = _access_records(caplog)
    assert record.getMessage().startswith("GET /crash 500 ")
    assert "request_id=crash-1 " in record.getMessage()


def _access_records(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == ACCESS_LOGGER]


async def test_one_access_log_line_per_request(
    client: httpx.AsyncClient,
    user: Account,
    user_headers: dict[str, str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger=ACCESS_LOGGER)

    authenticated = await client.get("/users/me", headers=user_headers)
    anonymous = await client.get("/no/such/route")

    records = _access_records(caplog)
    assert len(records) == 2
    first, second = (record.getMessage() for record in records)
    assert re.fullmatch(
        rf"GET /users/me 200 \d+\.\dms "
        rf"request_id={authenticated.headers[REQUEST_ID]} user_id={user.id}",
        first,
    )
    assert re.fullmatch(
        rf"GET /no/such/route 404 \d+\.\dms "
        rf"request_id={anonymous.headers[REQUEST_ID]} user_id=-",
        second,
    )


async def test_the_access_log_escapes_newlines_in_the_path(
    client: httpx.AsyncClient, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger=ACCESS_LOGGER)

    await client.get("/forged%0AGET /health 200")

    (record,) = _access_records(caplog)
    assert "\n" not in record.getMessage()


async def test_no_log_record_holds_a_password_or_its_hash(
    client: httpx.AsyncClient, db: Database, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    password = "first secret passphrase"
    new_password = "second secret passphrase"

    registered = await client.post(
        "/auth/register", json={"username": "logcheck", "password": password}
    )
    assert registered.status_code == 201
    account = Account(
        id=registered.json()["id"],
        username="logcheck",
        password=password,
        role=Role.USER,
    )
    tokens = await login(client, account)
    headers = {"Authorization": f"Bearer {tokens['access_token']}"}
    failed = await client.post(
        "/auth/token", data={"username": "logcheck", "password": new_password}
    )
    assert failed.status_code == 401
    changed = await client.patch(
        "/users/me",
        json={"password": new_password, "current_password": password},
        headers=headers,
    )
    assert changed.status_code == 200
    async with db.read() as session:
        password_hash = await session.scalar(
            select(User.password_hash).where(User.username == "logcheck")
        )
    assert password_hash is not None

    assert caplog.records, "nothing was logged: the test would prove nothing"
    secrets = [password, new_password, password_hash, "$argon2"]
    for record in caplog.records:
        text = record.getMessage() + (record.exc_text or "")
        for secret in secrets:
            assert secret not in text, f"{record.name} logged a secret: {text!r}"


async def _static_references(client: httpx.AsyncClient, page: str) -> list[str]:
    response = await client.get(page)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    html = response.text
    assert "http://" not in html
    assert "https://" not in html
    return re.findall(r'(?:src|href|spec-url)="([^"]+)"', html)


@pytest.mark.parametrize(
    ("page", "script"),
    [("/docs", "swagger-ui-bundle.js"), ("/redoc", "redoc.standalone.js")],
)
async def test_docs_pages_load_their_assets_from_askgate_itself(
    client: httpx.AsyncClient, page: str, script: str
) -> None:
    references = await _static_references(client, page)

    assert any(ref.endswith(script) for ref in references), references
    for reference in references:
        assert reference.startswith("/"), reference
        asset = await client.get(reference)
        assert asset.status_code == 200, reference
        assert asset.content, reference


def _operations(app: FastAPI) -> list[tuple[str, str, dict[str, Any]]]:
    return [
        (method.upper(), path, operation)
        for path, item in app.openapi()["paths"].items()
        for method, operation in item.items()
        if method in HTTP_METHODS
    ]


# The probes answer their own body with their 503 (what fails, or shutting down).
PROBES = {("GET", "/health/live"), ("GET", "/health/ready")}
# /health always answers 200: a failing dependency shows in the body, not the status.
NO_ERROR_RESPONSES = {("GET", "/health")}


def test_every_operation_is_documented(app: FastAPI) -> None:
    operations = _operations(app)
    assert len(operations) >= 15

    for method, path, operation in operations:
        where = f"{method} {path}"
        assert operation.get("summary"), where
        assert operation.get("description"), where
        errors = {
            code: response
            for code, response in operation["responses"].items()
            if code.startswith(("4", "5")) and code != "422"
        }
        if (method, path) in NO_ERROR_RESPONSES:
            assert not errors, where
            continue
        if (method, path) in PROBES:
            assert set(errors) == {"503"}, where
            continue
        assert errors, f"{where} documents no error response"
        for code, response in errors.items():
            assert response.get("description"), f"{where} {code}"
            schema = response["content"]["application/json"]["schema"]
            # The OpenAI API answers in OpenAI's shape, the rest in FastAPI's.
            shape = "OpenAIError" if path.startswith("/v1/") else "ErrorDetail"
            assert schema == {"$ref": f"#/components/schemas/{shape}"}, where
        if operation.get("security"):
            assert "401" in errors, f"{where} needs a token but hides its 401"
        if "(admin)" in operation["summary"]:
            assert "403" in errors, f"{where} is admin-only but hides its 403"


LIST_ENDPOINTS = ["/users", "/questions", "/questions/me"]


def test_list_endpoints_are_documented_as_bare_arrays(app: FastAPI) -> None:
    paths = app.openapi()["paths"]
    for path in LIST_ENDPOINTS:
        ok = paths[path]["get"]["responses"]["200"]
        schema = ok["content"]["application/json"]["schema"]
        assert schema["type"] == "array", path


async def test_list_endpoints_return_bare_arrays(
    client: httpx.AsyncClient,
    user_headers: dict[str, str],
    admin_headers: dict[str, str],
) -> None:
    asked = await client.post(
        "/questions", json={"content": "Hello?"}, headers=user_headers
    )
    assert asked.status_code == 201

    for path, headers in [
        ("/users", admin_headers),
        ("/questions", admin_headers),
        ("/questions/me", user_headers),
    ]:
        response = await client.get(path, headers=headers)
        assert response.status_code == 200, path
        body = response.json()
        assert isinstance(body, list), path
        assert body, path
        assert all(isinstance(item, dict) and "id" in item for item in body), path
