"""Responses that carry a token are never stored by a cache (RFC 6749 §5.1)."""

import httpx

from tests.factories import Account, login

NO_STORE = {"cache-control": "no-store", "pragma": "no-cache"}


def _caching_headers(response: httpx.Response) -> dict[str, str | None]:
    return {name: response.headers.get(name) for name in NO_STORE}


async def test_login_and_refresh_responses_are_not_stored(
    client: httpx.AsyncClient, user: Account
) -> None:
    logged_in = await client.post(
        "/auth/token", data={"username": user.username, "password": user.password}
    )
    assert logged_in.status_code == 200
    assert _caching_headers(logged_in) == NO_STORE

    refreshed = await client.post(
        "/auth/refresh", json={"refresh_token": logged_in.json()["refresh_token"]}
    )
    assert refreshed.status_code == 200
    assert _caching_headers(refreshed) == NO_STORE


async def test_other_responses_are_left_to_the_route(
    client: httpx.AsyncClient, user: Account
) -> None:
    tokens = await login(client, user)
    me = await client.get(
        "/users/me", headers={"Authorization": f"Bearer {tokens['access_token']}"}
    )
    assert me.status_code == 200
    assert "cache-control" not in me.headers
