"""Input built to break the parser, the validator or the error handler: every
answer is a 4xx with a `detail`, never a 500, and never echoes a secret; bodies
over ASKGATE_MAX_BODY_BYTES get a 413 without being read whole. Every test runs
on SQLite and on a real PostgreSQL server, which rejects more than SQLite does
(NUL characters, integers beyond 64 bits)."""

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from askgate.app import create_app
from askgate.config import Settings
from askgate.db import Database
from tests.fake_upstream import FakeUpstream
from tests.postgres_server import (
    BACKENDS,
    postgres_server,
    postgres_url,
    with_database,
)

__all__ = ["postgres_server", "postgres_url"]  # fixtures used through `with_database`

SECRET = "Sup3r-S3cret-Passw0rd"
JSON = {"Content-Type": "application/json"}
FORM = {"Content-Type": "application/x-www-form-urlencoded"}


@pytest.fixture(params=BACKENDS)
def settings(settings: Settings, request: pytest.FixtureRequest) -> Settings:
    return with_database(settings, request)


async def test_runs_on_the_requested_database(
    db: Database, request: pytest.FixtureRequest
) -> None:
    backend = request.node.callspec.params["settings"]

    assert db.engine.dialect.name == backend


def assert_error(response: httpx.Response, status: int | None = None) -> Any:
    """A client error with a JSON `detail`; returns the detail."""
    if status is None:
        assert 400 <= response.status_code < 500, response.text
    else:
        assert response.status_code == status, response.text
    body = response.json()
    assert "detail" in body
    return body["detail"]


def assert_clean_validation_error(response: httpx.Response) -> None:
    detail = assert_error(response, 422)
    assert isinstance(detail, list)
    assert detail
    for error in detail:
        assert "input" not in error
        assert {"type", "loc", "msg"} <= set(error)


# --- secrets are never echoed ---------------------------------------------------


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        pytest.param(
            "POST",
            "/auth/register",
            {"username": "victim", "password": SECRET + "x" * 130},
            id="register-password-too-long",
        ),
        pytest.param(
            "POST",
            "/auth/register",
            {"username": "victim", "password": SECRET + "\x00tail"},
            id="register-password-nul",
        ),
        pytest.param(
            "POST",
            "/auth/register",
            {"username": "victim", "password": SECRET[:7]},
            id="register-password-too-short",
        ),
        pytest.param(
            "POST",
            "/auth/register",
            {"username": "victim", "password": [SECRET]},
            id="register-password-list",
        ),
        pytest.param(
            "POST",
            "/auth/register",
            {"username": "victim", "password": {"p": SECRET}},
            id="register-password-object",
        ),
        pytest.param(
            "POST",
            "/auth/register",
            {"username": "x", "password": SECRET},
            id="register-valid-password-bad-username",
        ),
        pytest.param(
            "POST",
            "/auth/register",
            {"username": "victim", "password": SECRET, "role": "admin"},
            id="register-valid-password-extra-field",
        ),
        pytest.param(
            "PATCH",
            "/users/me",
            {"password": SECRET + "y" * 130, "current_password": "whatever1"},
            id="me-password-too-long",
        ),
        pytest.param(
            "PATCH",
            "/users/me",
            {"password": "a long new password", "current_password": SECRET * 10},
            id="me-current-password-too-long",
        ),
        pytest.param(
            "PATCH",
            "/users/me",
            {"password": "a long new password", "current_password": SECRET + "\x00"},
            id="me-current-password-nul",
        ),
        pytest.param(
            "PATCH",
            "/users/me",
            {"password": "a long new password", "current_password": [SECRET]},
            id="me-current-password-list",
        ),
        pytest.param(
            "POST",
            "/auth/refresh",
            {"refresh_token": 918273645546372819},
            id="refresh-token-int",
        ),
        pytest.param(
            "POST",
            "/auth/refresh",
            {"refresh_token": [SECRET]},
            id="refresh-token-list",
        ),
        pytest.param(
            "POST",
            "/auth/refresh",
            {"refresh_token": SECRET * 30},
            id="refresh-token-too-long",
        ),
        pytest.param(
            "POST",
            "/auth/refresh",
            {"refresh_token": SECRET + "\x00"},
            id="refresh-token-nul",
        ),
        pytest.param(
            "POST",
            "/auth/logout",
            {"refresh_token": {"nested": SECRET}},
            id="logout-token-object",
        ),
        pytest.param(
            "POST",
            "/auth/logout",
            {"refresh_token": SECRET, "extra": 1},
            id="logout-extra-field",
        ),
    ],
)
async def test_validation_errors_never_echo_secrets(
    client: httpx.AsyncClient,
    user_headers: dict[str, str],
    method: str,
    path: str,
    body: dict[str, Any],
) -> None:
    response = await client.request(method, path, json=body, headers=user_headers)

    assert_clean_validation_error(response)
    assert SECRET[:7] not in response.text
    assert "918273645546372819" not in response.text


@pytest.mark.parametrize(
    "form",
    [
        {"username": "victim", "password": SECRET * 10},
        {"username": "victim", "password": SECRET + "\x00"},
        {"username": "victim\x00", "password": SECRET},
        {"username": "v" * 200, "password": SECRET},
        {"username": "victim", "password": SECRET, "grant_type": "implicit"},
    ],
    ids=["too-long", "password-nul", "username-nul", "long-username", "grant-type"],
)
async def test_login_form_errors_never_echo_the_password(
    client: httpx.AsyncClient, form: dict[str, str]
) -> None:
    response = await client.post("/auth/token", data=form)

    assert_clean_validation_error(response)
    assert SECRET[:7] not in response.text


# --- strings that cannot be stored ------------------------------------------------


@pytest.mark.parametrize(
    ("method", "path", "raw"),
    [
        pytest.param(
            "POST",
            "/auth/register",
            b'{"username":"ab\\ud800c","password":"a long enough pass"}',
            id="register-username",
        ),
        pytest.param(
            "POST",
            "/auth/register",
            b'{"username":"surrogate","password":"a long \\udfff pass"}',
            id="register-password",
        ),
        pytest.param(
            "POST",
            "/auth/register",
            b'{"username":"surrogate","password":"a long enough pass",'
            b'"email":"a\\ud800@example.com"}',
            id="register-email",
        ),
        pytest.param(
            "POST",
            "/auth/register",
            b'{"username":"surrogate","password":"a long enough pass","\\ud800":1}',
            id="register-key",
        ),
        pytest.param(
            "POST",
            "/auth/refresh",
            b'{"refresh_token":"\\ud800"}',
            id="refresh-token",
        ),
        pytest.param(
            "PATCH",
            "/users/me",
            b'{"current_password":"\\udc00\\ud800","password":"a long new password"}',
            id="me-current-password",
        ),
        pytest.param(
            "POST",
            "/questions",
            b'{"content":"why \\udc00?"}',
            id="question-content",
        ),
        pytest.param(
            "POST",
            "/questions",
            b'{"content":"\\ud83d"}',
            id="question-half-emoji",
        ),
    ],
)
async def test_lone_surrogates_are_rejected(
    client: httpx.AsyncClient,
    user_headers: dict[str, str],
    fake_upstream: FakeUpstream,
    method: str,
    path: str,
    raw: bytes,
) -> None:
    response = await client.request(
        method, path, content=raw, headers={**user_headers, **JSON}
    )

    assert_clean_validation_error(response)
    assert fake_upstream.requests == []


async def test_lone_surrogate_registration_stores_nothing(
    client: httpx.AsyncClient,
) -> None:
    raw = b'{"username":"surrogate","password":"a long \\udfff pass"}'
    rejected = await client.post("/auth/register", content=raw, headers=JSON)
    assert rejected.status_code == 422

    created = await client.post(
        "/auth/register",
        json={"username": "surrogate", "password": "a long enough pass"},
    )
    assert created.status_code == 201


@pytest.mark.parametrize(
    "content", ["\x00", "before\x00after", "   \x00   "], ids=["nul", "inner", "padded"]
)
async def test_nul_in_question_content(
    client: httpx.AsyncClient,
    user_headers: dict[str, str],
    fake_upstream: FakeUpstream,
    content: str,
) -> None:
    response = await client.post(
        "/questions", json={"content": content}, headers=user_headers
    )

    assert_clean_validation_error(response)
    assert fake_upstream.requests == []
    history = await client.get("/questions/me", headers=user_headers)
    assert history.json() == []


@pytest.mark.parametrize(
    "raw",
    [
        b'{"content":"hi","temperature":NaN}',
        b'{"content":"hi","temperature":Infinity}',
        b'{"content":"hi","temperature":-Infinity}',
        b'{"content":"hi","temperature":1e999}',
        b'{"content":"hi","max_tokens":NaN}',
        b'{"content":"hi","max_tokens":Infinity}',
        b'{"content":"hi","max_tokens":1e999}',
    ],
    ids=lambda raw: raw.decode().split(":")[-1].rstrip("}"),
)
async def test_non_finite_numbers(
    client: httpx.AsyncClient,
    user_headers: dict[str, str],
    fake_upstream: FakeUpstream,
    raw: bytes,
) -> None:
    response = await client.post(
        "/questions", content=raw, headers={**user_headers, **JSON}
    )

    assert_clean_validation_error(response)
    assert "NaN" not in response.text.replace('"NaN"', "")
    assert fake_upstream.requests == []


# --- malformed bodies -------------------------------------------------------------


def nested(depth: int, kind: str) -> bytes:
    if kind == "array":
        return b"[" * depth + b"]" * depth
    if kind == "object":
        return b'{"a":' * depth + b"1" + b"}" * depth
    inner = b"[" * depth + b"]" * depth
    return b'{"username":' + inner + b',"password":"a long enough pass"}'


@pytest.mark.parametrize("depth", [500, 100_000])
@pytest.mark.parametrize("kind", ["array", "object", "in-field"])
@pytest.mark.parametrize("path", ["/auth/register", "/questions", "/auth/refresh"])
async def test_deeply_nested_json(
    client: httpx.AsyncClient,
    user_headers: dict[str, str],
    fake_upstream: FakeUpstream,
    path: str,
    kind: str,
    depth: int,
) -> None:
    response = await client.post(
        path, content=nested(depth, kind), headers={**user_headers, **JSON}
    )

    assert_error(response)
    assert fake_upstream.requests == []


@pytest.mark.parametrize(
    "raw",
    [
        b'{"username": ',
        b"{username: 'alice'}",
        b'{"username":"alice","password":"a long enough pass",}',
        b"\xff\xfe{}",
        b'{"username":"\xff\xfe","password":"a long enough pass"}',
        b"null",
        b"[]",
        b'"just a string"',
        b"12",
    ],
    ids=[
        "truncated",
        "js-object",
        "trailing-comma",
        "bom-ish-bytes",
        "invalid-utf8",
        "null",
        "array",
        "string",
        "number",
    ],
)
async def test_malformed_json_bodies(client: httpx.AsyncClient, raw: bytes) -> None:
    response = await client.post("/auth/register", content=raw, headers=JSON)

    assert_error(response)
    assert response.status_code in (400, 422)


async def test_invalid_json_is_a_validation_error(client: httpx.AsyncClient) -> None:
    response = await client.post(
        "/auth/register", content=b'{"username": "alice",', headers=JSON
    )

    detail = assert_error(response, 422)
    assert detail[0]["type"] == "json_invalid"


@pytest.mark.parametrize(
    "content_type",
    ["text/plain", "application/xml", "application/x-www-form-urlencoded"],
)
async def test_wrong_content_type_on_a_json_endpoint(
    client: httpx.AsyncClient, content_type: str
) -> None:
    body = b'{"username":"alice","password":"a long enough pass"}'

    response = await client.post(
        "/auth/register", content=body, headers={"Content-Type": content_type}
    )

    assert_error(response)
    assert response.status_code in (415, 422)
    # Nothing was registered from the misread body.
    login = await client.post(
        "/auth/token", data={"username": "alice", "password": "a long enough pass"}
    )
    assert login.status_code == 401


async def test_empty_body_on_a_json_endpoint(client: httpx.AsyncClient) -> None:
    response = await client.post("/auth/register", content=b"", headers=JSON)

    assert_clean_validation_error(response)


# --- path and query parameters ----------------------------------------------------


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/users/abc"),
        ("GET", "/users/1.5"),
        ("GET", "/users/0"),
        ("GET", "/users/-1"),
        ("GET", "/users/99999999999999999999999"),
        ("GET", "/users/1e3"),
        ("GET", "/users/%00"),
        ("PATCH", "/users/abc"),
        ("DELETE", "/users/abc"),
        ("GET", "/questions/abc"),
        ("GET", "/questions/0"),
        ("GET", "/questions/-5"),
        ("GET", "/questions/99999999999999999999999"),
        ("DELETE", "/questions/abc"),
    ],
)
async def test_non_integer_or_out_of_range_ids(
    client: httpx.AsyncClient, admin_headers: dict[str, str], method: str, path: str
) -> None:
    kwargs: dict[str, Any] = {"headers": admin_headers}
    if method == "PATCH":
        kwargs["json"] = {"role": "user"}

    response = await client.request(method, path, **kwargs)

    assert_clean_validation_error(response)
    assert response.json()["detail"][0]["loc"][0] == "path"


@pytest.mark.parametrize(
    "query",
    [
        "limit=-1",
        "limit=0",
        "limit=101",
        "limit=1000000000000000000000000000000",
        "limit=abc",
        "limit=1.5",
        "offset=-1",
        "offset=99999999999999999999",
        "offset=abc",
        "q=%00",
        "q=" + "a" * 33,
    ],
)
async def test_user_list_query_bounds(
    client: httpx.AsyncClient, admin_headers: dict[str, str], query: str
) -> None:
    response = await client.get(f"/users?{query}", headers=admin_headers)

    assert_clean_validation_error(response)
    assert response.json()["detail"][0]["loc"][0] == "query"


@pytest.mark.parametrize(
    "path",
    [
        "/questions/me?limit=0",
        "/questions/me?limit=-5",
        "/questions/me?limit=101",
        "/questions/me?limit=99999999999999999999",
        "/questions/me?before_id=0",
        "/questions/me?before_id=-1",
        "/questions/me?before_id=99999999999999999999",
        "/questions?limit=-1",
        "/questions?offset=-1",
        "/questions?offset=99999999999999999999",
        "/questions?user_id=abc",
        "/questions?user_id=0",
    ],
)
async def test_question_list_query_bounds(
    client: httpx.AsyncClient, admin_headers: dict[str, str], path: str
) -> None:
    response = await client.get(path, headers=admin_headers)

    assert_clean_validation_error(response)
    assert response.json()["detail"][0]["loc"][0] == "query"


# --- the login form -----------------------------------------------------------------


@pytest.mark.parametrize(
    "form",
    [
        b"username=%ED%A0%80abc&password=a+long+enough+pass",
        b"username=alice&password=%ED%A0%80%ED%B0%80xyzxyz",
        b"username=%FF%FE&password=%FFa+long+enough+pass",
        b"username=\xff\xfe&password=\xed\xa0\x80long+enough",
        b"username=%00&password=a+long+enough+pass",
        b"username=alice&password=%00a+long+enough+pass",
        b"username=alice&username=bob&password=a+long+enough+pass",
        b"%%%%&&&===",
        b"username",
    ],
    ids=[
        "surrogate-username",
        "surrogate-password",
        "ff-bytes",
        "raw-bytes",
        "nul-username",
        "nul-password",
        "repeated-field",
        "percent-soup",
        "bare-key",
    ],
)
async def test_login_form_with_undecodable_bytes(
    client: httpx.AsyncClient, form: bytes
) -> None:
    response = await client.post("/auth/token", content=form, headers=FORM)

    assert_error(response)
    assert response.status_code in (401, 422)
    assert "access_token" not in response.text


async def test_login_form_as_multipart_with_binary_password(
    client: httpx.AsyncClient,
) -> None:
    response = await client.post(
        "/auth/token",
        data={"username": "alice"},
        files={"password": ("p.bin", b"\xff\x00\xed\xa0\x80", "application/x")},
    )

    assert_error(response)
    assert response.status_code in (401, 422)


# --- oversized bodies ---------------------------------------------------------------

LIMIT = 64 * 1024  # ASKGATE_MAX_BODY_BYTES' default
CHUNK = 16 * 1024


class Chunks:
    """A chunked request body (no Content-Length) that counts what was pulled."""

    def __init__(self, total: int) -> None:
        self.total = total
        self.pulled = 0

    async def __aiter__(self) -> AsyncIterator[bytes]:
        while self.pulled < self.total:
            self.pulled += CHUNK
            yield b" " * CHUNK


def assert_too_large(response: httpx.Response) -> None:
    detail = assert_error(response, 413)
    assert str(LIMIT) in detail
    assert response.headers["content-type"] == "application/json"
    assert "x-request-id" in response.headers


@pytest.mark.parametrize(
    ("path", "content_type"),
    [
        ("/auth/register", JSON),
        ("/questions", JSON),
        ("/auth/token", FORM),
        ("/nowhere", JSON),
    ],
)
async def test_declared_oversized_body_is_refused(
    client: httpx.AsyncClient,
    user_headers: dict[str, str],
    fake_upstream: FakeUpstream,
    path: str,
    content_type: dict[str, str],
) -> None:
    response = await client.post(
        path, content=b" " * (LIMIT + 1), headers={**user_headers, **content_type}
    )

    assert_too_large(response)
    assert fake_upstream.requests == []


async def test_chunked_oversized_body_is_cut_off_early(
    client: httpx.AsyncClient, user_headers: dict[str, str], fake_upstream: FakeUpstream
) -> None:
    body = Chunks(total=64 * 1024 * 1024)

    response = await client.post(
        "/questions", content=body, headers={**user_headers, **JSON}
    )

    assert_too_large(response)
    assert body.pulled <= LIMIT + 2 * CHUNK  # stopped at the limit, not at 64 MiB
    assert fake_upstream.requests == []


async def test_chunked_body_to_a_route_that_ignores_it(
    client: httpx.AsyncClient, user_headers: dict[str, str]
) -> None:
    response = await client.request(
        "GET", "/users/me", content=Chunks(total=LIMIT * 4), headers=user_headers
    )

    assert response.status_code == 200


async def test_chunked_body_within_the_limit_is_read_whole(
    client: httpx.AsyncClient,
) -> None:
    async def chunks() -> AsyncIterator[bytes]:
        yield b'{"username": "chunky", '
        yield b'"password": "a long enough pass"'
        yield b" " * (LIMIT - 100) + b"}"

    response = await client.post("/auth/register", content=chunks(), headers=JSON)

    assert response.status_code == 201, response.text


async def test_a_body_at_the_limit_is_accepted(client: httpx.AsyncClient) -> None:
    head = b'{"username": "exact", "password": "a long enough pass"'
    body = head + b" " * (LIMIT - len(head) - 1) + b"}"
    assert len(body) == LIMIT

    response = await client.post("/auth/register", content=body, headers=JSON)

    assert response.status_code == 201, response.text


@pytest.mark.parametrize("value", ["-1", "abc", "1e9", ""])
async def test_malformed_content_length_does_not_bypass_the_limit(
    client: httpx.AsyncClient, value: str
) -> None:
    # A lying Content-Length: bytes are counted whatever it says.
    response = await client.post(
        "/auth/register",
        content=Chunks(total=LIMIT * 2),
        headers={**JSON, "Content-Length": value},
    )

    assert_too_large(response)


async def test_the_limit_follows_the_setting(settings: Settings) -> None:
    settings.max_body_bytes = 2048
    application = create_app(settings)
    async with application.router.lifespan_context(application):
        transport = httpx.ASGITransport(app=application)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as c:
            response = await c.post("/auth/register", content=b" " * 2049, headers=JSON)

    assert assert_error(response, 413) == (
        "Request body too large: the limit is 2048 bytes"
    )
