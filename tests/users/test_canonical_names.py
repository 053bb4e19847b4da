"""One canonical form (NFKC + casefold) for usernames and emails, on both databases.

The attack: PostgreSQL's `lower()` folds "İ" (U+0130) to "i" where Python does not,
so `VİCTİM` found `victim` while its login throttle key was another account's; and
a fullwidth "ｂ" made `ｂob@example.com` a second address beside `bob@example.com`.
"""

from typing import Any

import httpx
import pytest

from askgate.auth.service import BAD_CREDENTIALS
from askgate.config import Settings
from askgate.db import Database
from askgate.users.service import EMAIL_TAKEN, USERNAME_TAKEN
from tests.factories import Account, auth_headers, create_user
from tests.postgres_server import (
    BACKENDS,
    postgres_server,
    postgres_url,
    with_database,
)

__all__ = ["postgres_server", "postgres_url"]  # fixtures used through `with_database`

PASSWORD = "a long enough passphrase"
DOTTED_VICTIM = "V\u0130CT\u0130M"  # "VİCTİM": PostgreSQL's lower() gives "victim"
FULLWIDTH_BOB = "\uff42ob@example.com"  # "ｂob@example.com"
PER_ACCOUNT = 3


@pytest.fixture(params=BACKENDS)
def settings(settings: Settings, request: pytest.FixtureRequest) -> Settings:
    settings.login_failures_per_account = PER_ACCOUNT
    return with_database(settings, request)


async def register(client: httpx.AsyncClient, **body: Any) -> httpx.Response:
    return await client.post("/auth/register", json={"password": PASSWORD, **body})


async def log_in(
    client: httpx.AsyncClient, username: str, password: str
) -> httpx.Response:
    return await client.post(
        "/auth/token", data={"username": username, "password": password}
    )


async def test_a_dotted_capital_i_is_not_the_plain_name(
    client: httpx.AsyncClient, db: Database
) -> None:
    victim = await create_user(db, username="victim")

    response = await log_in(client, DOTTED_VICTIM, victim.password)

    assert response.status_code == 401, response.text
    assert response.json() == {"detail": BAD_CREDENTIALS}


async def test_a_dotted_capital_i_gets_no_guesses_past_the_lockout(
    client: httpx.AsyncClient, db: Database
) -> None:
    victim = await create_user(db, username="victim")
    for _ in range(PER_ACCOUNT):
        assert (await log_in(client, "victim", "wrong guess")).status_code == 401
    assert (await log_in(client, "victim", victim.password)).status_code == 429

    # Whatever the throttle says of this other name, it does not reach victim.
    response = await log_in(client, DOTTED_VICTIM, victim.password)

    assert response.status_code in (401, 429), response.text
    assert "access_token" not in response.text


@pytest.mark.parametrize("typed", ["VICTIM", "\uff56\uff49\uff43\uff54\uff49\uff4d"])
async def test_case_and_width_variants_log_in_as_the_one_account(
    client: httpx.AsyncClient, db: Database, typed: str
) -> None:
    victim = await create_user(db, username="victim")

    response = await log_in(client, typed, victim.password)

    assert response.status_code == 200, response.text
    me = await client.get(
        "/users/me",
        headers={"Authorization": f"Bearer {response.json()['access_token']}"},
    )
    assert me.json()["id"] == victim.id


async def test_a_fullwidth_email_is_the_same_address(client: httpx.AsyncClient) -> None:
    first = await register(client, username="bob", email="bob@example.com")
    assert first.status_code == 201, first.text

    response = await register(client, username="bob2", email=FULLWIDTH_BOB)

    assert response.status_code == 409, response.text
    assert response.json() == {"detail": EMAIL_TAKEN}


async def test_the_email_is_kept_as_typed(client: httpx.AsyncClient) -> None:
    response = await register(client, username="bob", email=FULLWIDTH_BOB)

    assert response.status_code == 201, response.text
    assert response.json()["email"] == FULLWIDTH_BOB


async def test_a_username_differing_in_case_is_taken_and_kept_as_typed(
    client: httpx.AsyncClient,
) -> None:
    first = await register(client, username="Bob")
    assert first.json()["username"] == "Bob"

    response = await register(client, username="bob")

    assert response.status_code == 409, response.text
    assert response.json() == {"detail": USERNAME_TAKEN}


async def test_an_email_too_long_once_normalized_is_refused(
    client: httpx.AsyncClient,
) -> None:
    # A valid address of 92 characters whose canonical form has 1,452 (each
    # U+FDFA is 18 characters once normalized): it would not fit its column.
    response = await register(client, username="long", email="\ufdfa" * 80 + "@x.io")

    assert response.status_code == 422, response.text
    assert response.json()["detail"][0]["loc"] == ["body", "email"]


@pytest.mark.parametrize(
    ("change", "detail"),
    [
        ({"email": FULLWIDTH_BOB}, EMAIL_TAKEN),
        ({"email": "BOB@example.com"}, EMAIL_TAKEN),
        ({"username": "BOB"}, USERNAME_TAKEN),
    ],
)
async def test_changing_to_a_taken_name_is_a_conflict(
    client: httpx.AsyncClient,
    user: Account,
    user_headers: dict[str, str],
    change: dict[str, str],
    detail: str,
) -> None:
    assert (await register(client, username="bob", email="bob@example.com")).is_success

    response = await client.patch("/users/me", json=change, headers=user_headers)

    assert response.status_code == 409, response.text
    assert response.json() == {"detail": detail}


async def test_renaming_oneself_changes_the_login_name(
    client: httpx.AsyncClient, user: Account, user_headers: dict[str, str]
) -> None:
    renamed = await client.patch(
        "/users/me",
        json={"username": "Renamed", "email": "\uff32@example.com"},
        headers=user_headers,
    )
    assert renamed.status_code == 200, renamed.text
    assert renamed.json()["username"] == "Renamed"

    assert (await log_in(client, "RENAMED", user.password)).status_code == 200
    assert (await log_in(client, user.username, user.password)).status_code == 401
    # The new address is the one now taken, in its canonical form.
    taken = await register(client, username="other", email="r@EXAMPLE.com")
    assert taken.json() == {"detail": EMAIL_TAKEN}


async def test_changing_only_the_case_of_ones_own_name_is_allowed(
    client: httpx.AsyncClient, user: Account, user_headers: dict[str, str]
) -> None:
    response = await client.patch(
        "/users/me", json={"username": user.username.upper()}, headers=user_headers
    )

    assert response.status_code == 200, response.text
    assert response.json()["username"] == user.username.upper()


async def test_admin_search_ignores_case_and_width(
    client: httpx.AsyncClient, db: Database, admin: Account
) -> None:
    for name in ("Alice", "malice.b", "bob"):
        await create_user(db, username=name)
    headers = await auth_headers(client, admin)

    for q in ("aLi", "\uff41\uff4c\uff49"):  # "ａｌｉ"
        response = await client.get("/users", params={"q": q}, headers=headers)
        assert response.status_code == 200, response.text
        names = [item["username"] for item in response.json()]
        assert names == ["malice.b", "Alice"], q
