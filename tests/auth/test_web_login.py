"""The web page's login (askgate.auth.cookies): with `X-Askgate-Web: 1` the refresh
token lives only in an HttpOnly, SameSite=Strict cookie on /auth; without the
header, API clients see exactly what they saw before, and the cookie is ignored."""

from collections.abc import AsyncIterator
from http.cookies import SimpleCookie

import httpx
import pytest
from fastapi import FastAPI

from askgate.app import create_app
from askgate.auth.cookies import CROSS_SITE, NO_COOKIE, REFRESH_COOKIE
from askgate.config import Settings
from tests.factories import Account, create_user

WEB = {"X-Askgate-Web": "1"}
WEEK = 7 * 24 * 60 * 60


def _credentials(account: Account) -> dict[str, str]:
    return {"username": account.username, "password": account.password}


def _set_cookie(response: httpx.Response) -> SimpleCookie:
    headers = response.headers.get_list("set-cookie")
    assert len(headers) == 1, headers
    cookie: SimpleCookie = SimpleCookie()
    cookie.load(headers[0])
    assert list(cookie) == [REFRESH_COOKIE]
    return cookie


def _sending(client: httpx.AsyncClient, value: str) -> dict[str, str]:
    """Headers that send `value` as the cookie (instead of what the jar holds)."""
    client.cookies.clear()
    return {**WEB, "Cookie": f"{REFRESH_COOKIE}={value}"}


async def _web_login(client: httpx.AsyncClient, account: Account) -> httpx.Response:
    response = await client.post("/auth/token", data=_credentials(account), headers=WEB)
    assert response.status_code == 200, response.text
    return response


async def test_web_login_puts_the_refresh_token_in_a_strict_httponly_cookie(
    client: httpx.AsyncClient, user: Account
) -> None:
    response = await _web_login(client, user)

    body = response.json()
    assert body["refresh_token"] is None
    assert body["token_type"] == "bearer"
    assert body["expires_in"] == 15 * 60
    assert response.headers["cache-control"] == "no-store"
    morsel = _set_cookie(response)[REFRESH_COOKIE]
    assert len(morsel.value) > 20
    assert morsel["httponly"] is True
    assert morsel["samesite"] == "strict"
    assert morsel["path"] == "/auth"
    assert morsel["max-age"] == str(WEEK)
    assert not morsel["secure"]  # plain HTTP here; see the HTTPS tests
    me = await client.get(
        "/users/me", headers={"Authorization": f"Bearer {body['access_token']}"}
    )
    assert me.status_code == 200
    assert me.json()["username"] == user.username


async def test_the_cookie_rotates_once_and_a_reused_one_ends_the_login(
    client: httpx.AsyncClient, user: Account
) -> None:
    first = _set_cookie(await _web_login(client, user))[REFRESH_COOKIE].value

    rotated = await client.post("/auth/refresh", headers=WEB)
    assert rotated.status_code == 200, rotated.text
    assert rotated.json()["refresh_token"] is None
    assert rotated.headers["cache-control"] == "no-store"
    second = _set_cookie(rotated)[REFRESH_COOKIE].value
    assert second != first
    access = rotated.json()["access_token"]

    # The first cookie again (a stolen copy): theft detection ends the login and
    # the answer clears the browser's cookie.
    reused = await client.post("/auth/refresh", headers=_sending(client, first))
    assert reused.status_code == 401
    assert reused.headers["www-authenticate"] == "Bearer"
    cleared = _set_cookie(reused)[REFRESH_COOKIE]
    assert cleared.value == ""
    assert cleared["max-age"] == "0"
    assert cleared["path"] == "/auth"
    headers = {"Authorization": f"Bearer {access}"}
    assert (await client.get("/users/me", headers=headers)).status_code == 401
    again = await client.post("/auth/refresh", headers=_sending(client, second))
    assert again.status_code == 401


async def test_refresh_without_a_cookie_is_401(client: httpx.AsyncClient) -> None:
    response = await client.post("/auth/refresh", headers=WEB)
    assert response.status_code == 401
    assert response.json() == {"detail": NO_COOKIE}
    assert response.headers["www-authenticate"] == "Bearer"


async def test_api_clients_are_unchanged_and_never_use_the_cookie(
    client: httpx.AsyncClient, user: Account
) -> None:
    await _web_login(client, user)  # the client now holds a cookie

    # No header: the refresh token is in the JSON, no cookie is set...
    plain = await client.post("/auth/token", data=_credentials(user))
    assert plain.status_code == 200
    assert plain.json()["refresh_token"]
    assert "set-cookie" not in plain.headers
    # ...and the cookie is not read: a body is required, as before.
    missing = await client.post("/auth/refresh")
    assert missing.status_code == 422
    assert missing.json()["detail"][0]["loc"] == ["body"]
    assert (await client.post("/auth/logout")).status_code == 422
    rotated = await client.post(
        "/auth/refresh", json={"refresh_token": plain.json()["refresh_token"]}
    )
    assert rotated.status_code == 200
    assert rotated.json()["refresh_token"]
    assert "set-cookie" not in rotated.headers
    # The web login is untouched by all of this.
    assert (await client.post("/auth/refresh", headers=WEB)).status_code == 200


@pytest.mark.parametrize(
    "headers",
    [
        {"Origin": "https://evil.example"},
        {"Origin": "null"},
        {"Origin": "http://test.evil.example"},
        {"Origin": "http://evil.example:80"},
        {"Origin": "not a url"},
        {"Sec-Fetch-Site": "cross-site"},
    ],
)
async def test_cross_site_requests_cannot_use_the_cookie(
    client: httpx.AsyncClient, user: Account, headers: dict[str, str]
) -> None:
    await _web_login(client, user)
    cross = {**WEB, **headers}

    for path in ("/auth/refresh", "/auth/logout"):
        refused = await client.post(path, headers=cross)
        assert refused.status_code == 403, path
        assert refused.json() == {"detail": CROSS_SITE}
        assert "set-cookie" not in refused.headers
    login = await client.post("/auth/token", data=_credentials(user), headers=cross)
    assert login.status_code == 403
    assert "set-cookie" not in login.headers
    # Nothing was used up or revoked: the page itself still refreshes (a proxy
    # may have dropped the port from Host: the host name is what counts).
    same_site = {**WEB, "Origin": "http://test", "Sec-Fetch-Site": "same-origin"}
    assert (await client.post("/auth/refresh", headers=same_site)).status_code == 200
    with_port = {**WEB, "Origin": "https://TEST:8443"}
    assert (await client.post("/auth/refresh", headers=with_port)).status_code == 200


async def test_web_logout_revokes_the_login_and_clears_the_cookie(
    client: httpx.AsyncClient, user: Account
) -> None:
    login = await _web_login(client, user)
    cookie = _set_cookie(login)[REFRESH_COOKIE].value
    headers = {"Authorization": f"Bearer {login.json()['access_token']}"}

    out = await client.post("/auth/logout", headers=WEB)
    assert out.status_code == 204
    cleared = _set_cookie(out)[REFRESH_COOKIE]
    assert (cleared.value, cleared["max-age"]) == ("", "0")
    assert (await client.get("/users/me", headers=headers)).status_code == 401
    revoked = await client.post("/auth/refresh", headers=_sending(client, cookie))
    assert revoked.status_code == 401

    # Signing out again, or with no cookie at all, is not an error.
    assert (await client.post("/auth/logout", headers=WEB)).status_code == 204
    client.cookies.clear()
    assert (await client.post("/auth/logout", headers=WEB)).status_code == 204


async def test_a_refresh_cookie_too_long_or_unknown_is_401(
    client: httpx.AsyncClient,
) -> None:
    for value in ("x" * 513, "not-a-token"):
        response = await client.post("/auth/refresh", headers=_sending(client, value))
        assert response.status_code == 401
        assert _set_cookie(response)[REFRESH_COOKIE]["max-age"] == "0"


@pytest.fixture
async def behind_proxy(settings: Settings) -> AsyncIterator[FastAPI]:
    application = create_app(
        settings.model_copy(update={"trusted_proxies": ["127.0.0.1"]})
    )
    async with application.router.lifespan_context(application):
        yield application


async def _secure(app: FastAPI, base_url: str, headers: dict[str, str]) -> bool:
    account = await create_user(app.state.runtime.db)
    transport = httpx.ASGITransport(app=app, client=("127.0.0.1", 5000))
    async with httpx.AsyncClient(transport=transport, base_url=base_url) as client:
        response = await client.post(
            "/auth/token", data=_credentials(account), headers={**WEB, **headers}
        )
    assert response.status_code == 200, response.text
    return bool(_set_cookie(response)[REFRESH_COOKIE]["secure"])


async def test_the_cookie_is_secure_over_https(app: FastAPI) -> None:
    assert await _secure(app, "https://test", {})
    # The client's own X-Forwarded-Proto is not believed...
    assert not await _secure(app, "http://test", {"X-Forwarded-Proto": "https"})


async def test_the_cookie_is_secure_behind_a_trusted_https_proxy(
    behind_proxy: FastAPI,
) -> None:
    assert await _secure(behind_proxy, "http://test", {"X-Forwarded-Proto": "https"})
    assert not await _secure(behind_proxy, "http://test", {"X-Forwarded-Proto": "http"})
