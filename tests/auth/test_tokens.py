"""Access tokens (JWT checks), refresh-token rotation and reuse, logout, and
every way a login ends: password change, deletion, deactivation, demotion."""

import asyncio
import base64
import json
import time
from datetime import timedelta
from typing import Any

import httpx
import jwt
import pytest
from sqlalchemy import update

from askgate.auth.cache import INVALID_TOKEN
from askgate.auth.models import AuthSession
from askgate.auth.service import BAD_REFRESH_TOKEN, REUSED_REFRESH_TOKEN
from askgate.db import Database, utcnow
from askgate.users.models import Role
from tests.conftest import TEST_SECRET_KEY
from tests.factories import Account, create_user, login

REQUIRED_CLAIMS = ["sub", "type", "iss", "aud", "iat", "exp", "jti", "sid"]


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def unverified_claims(token: str) -> dict[str, Any]:
    claims: dict[str, Any] = jwt.decode(token, options={"verify_signature": False})
    return claims


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def unsigned_token(claims: dict[str, Any], alg: str) -> str:
    header = b64(json.dumps({"alg": alg, "typ": "JWT"}).encode())
    return f"{header}.{b64(json.dumps(claims).encode())}."


def sign(
    claims: dict[str, Any], *, key: str = TEST_SECRET_KEY, alg: str = "HS256"
) -> str:
    return jwt.encode(claims, key, algorithm=alg)


async def me_status(client: httpx.AsyncClient, token: str) -> int:
    return (await client.get("/users/me", headers=bearer(token))).status_code


async def assert_rejected(client: httpx.AsyncClient, token: str) -> None:
    response = await client.get("/users/me", headers=bearer(token))
    assert response.status_code == 401, response.text
    assert response.json() == {"detail": INVALID_TOKEN}
    assert response.headers["WWW-Authenticate"] == "Bearer"


async def refresh(client: httpx.AsyncClient, refresh_token: str) -> httpx.Response:
    return await client.post("/auth/refresh", json={"refresh_token": refresh_token})


@pytest.fixture
async def tokens(client: httpx.AsyncClient, user: Account) -> dict[str, str]:
    return await login(client, user)


@pytest.fixture
def claims(tokens: dict[str, str]) -> dict[str, Any]:
    """The claims of a real, live access token, to re-sign with one thing changed."""
    return unverified_claims(tokens["access_token"])


# --- the access token itself ----------------------------------------------------


async def test_issued_token_has_the_documented_claims(
    tokens: dict[str, str], user: Account
) -> None:
    header = jwt.get_unverified_header(tokens["access_token"])
    claims = jwt.decode(
        tokens["access_token"],
        TEST_SECRET_KEY,
        algorithms=["HS256"],
        audience="askgate",
        issuer="askgate",
        options={"require": REQUIRED_CLAIMS},
    )

    assert header["alg"] == "HS256"
    assert set(claims) == set(REQUIRED_CLAIMS)
    assert claims["sub"] == str(user.id)
    assert claims["type"] == "access"
    assert claims["iss"] == claims["aud"] == "askgate"
    assert isinstance(claims["jti"], str)
    assert isinstance(claims["sid"], str)


async def test_resigned_valid_claims_are_accepted(
    client: httpx.AsyncClient, claims: dict[str, Any]
) -> None:
    # Anchors the forgery tests below: only the one changed thing makes them fail.
    assert await me_status(client, sign(claims)) == 200


async def test_expired_within_leeway_is_accepted(
    client: httpx.AsyncClient, claims: dict[str, Any]
) -> None:
    now = int(time.time())
    token = sign({**claims, "iat": now - 900, "exp": now - 10})

    assert await me_status(client, token) == 200


async def test_expired_beyond_leeway_is_rejected(
    client: httpx.AsyncClient, claims: dict[str, Any]
) -> None:
    now = int(time.time())
    await assert_rejected(client, sign({**claims, "iat": now - 960, "exp": now - 60}))


async def test_tampered_signature(
    client: httpx.AsyncClient, tokens: dict[str, str]
) -> None:
    header, payload, signature = tokens["access_token"].split(".")
    # Flip a character in the middle: the last one may only carry padding bits.
    middle = len(signature) // 2
    flipped = "A" if signature[middle] != "A" else "B"
    forged = signature[:middle] + flipped + signature[middle + 1 :]

    await assert_rejected(client, f"{header}.{payload}.{forged}")


async def test_tampered_payload_with_original_signature(
    client: httpx.AsyncClient, db: Database, tokens: dict[str, str]
) -> None:
    other = await create_user(db, role=Role.ADMIN)
    header, _, signature = tokens["access_token"].split(".")
    claims = unverified_claims(tokens["access_token"])
    payload = b64(json.dumps({**claims, "sub": str(other.id)}).encode())

    await assert_rejected(client, f"{header}.{payload}.{signature}")


@pytest.mark.parametrize("alg", ["none", "None", "NONE"])
async def test_unsigned_token(
    client: httpx.AsyncClient, claims: dict[str, Any], alg: str
) -> None:
    await assert_rejected(client, unsigned_token(claims, alg))


async def test_alg_none_header_with_a_valid_signature(
    client: httpx.AsyncClient, tokens: dict[str, str]
) -> None:
    _, payload, signature = tokens["access_token"].split(".")
    header = b64(json.dumps({"alg": "none", "typ": "JWT"}).encode())

    await assert_rejected(client, f"{header}.{payload}.{signature}")


# The test key is long enough for HS256 only; the forger does not care.
@pytest.mark.filterwarnings("ignore::jwt.warnings.InsecureKeyLengthWarning")
@pytest.mark.parametrize("alg", ["HS384", "HS512"])
async def test_other_hmac_algorithm_with_the_right_key(
    client: httpx.AsyncClient, claims: dict[str, Any], alg: str
) -> None:
    await assert_rejected(client, sign(claims, alg=alg))


async def test_wrong_key(client: httpx.AsyncClient, claims: dict[str, Any]) -> None:
    await assert_rejected(client, sign(claims, key=TEST_SECRET_KEY + "-other"))


@pytest.mark.parametrize("claim", REQUIRED_CLAIMS)
async def test_missing_claim(
    client: httpx.AsyncClient, claims: dict[str, Any], claim: str
) -> None:
    del claims[claim]

    await assert_rejected(client, sign(claims))


@pytest.mark.parametrize(
    ("claim", "value"),
    [
        ("iss", "someone-else"),
        ("iss", ""),
        ("aud", "someone-else"),
        ("aud", ["other"]),
        ("type", "refresh"),
        ("type", "ACCESS"),
        ("type", ""),
        ("sub", "abc"),
        ("sub", "-1"),
        ("sub", " 1"),
        ("sub", ""),
        ("sub", "0"),
        ("sub", "１"),  # a fullwidth digit: str.isdecimal accepts it
        ("sub", str(2**63)),
        ("sub", "9" * 30),
        ("sub", 1),
        ("sid", 123),
        ("sid", "no-such-login"),
        ("exp", "tomorrow"),
    ],
    ids=repr,
)
async def test_wrong_claim_value(
    client: httpx.AsyncClient, claims: dict[str, Any], claim: str, value: Any
) -> None:
    await assert_rejected(client, sign({**claims, claim: value}))


async def test_sid_of_another_users_login(
    client: httpx.AsyncClient, db: Database, claims: dict[str, Any]
) -> None:
    other = await create_user(db, role=Role.ADMIN)
    other_sid = unverified_claims((await login(client, other))["access_token"])["sid"]

    await assert_rejected(client, sign({**claims, "sid": other_sid}))
    await assert_rejected(client, sign({**claims, "sub": str(other.id)}))


async def test_refresh_token_is_not_an_access_token(
    client: httpx.AsyncClient, tokens: dict[str, str]
) -> None:
    await assert_rejected(client, tokens["refresh_token"])


@pytest.mark.parametrize(
    "authorization",
    [
        None,
        "",
        "Bearer",
        "Bearer ",
        "Basic dXNlcjpwYXNzd29yZA==",
        "Bearer a.b.c",
        "Bearer not-a-jwt",
        "Bearer " + "A" * 10_000,
    ],
    ids=["absent", "empty", "bare", "bare-space", "basic", "abc", "garbage", "huge"],
)
async def test_missing_or_malformed_authorization(
    client: httpx.AsyncClient, authorization: str | None
) -> None:
    headers = {} if authorization is None else {"Authorization": authorization}

    response = await client.get("/users/me", headers=headers)

    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"] == "Bearer"
    assert isinstance(response.json()["detail"], str)


async def test_non_ascii_authorization_header(client: httpx.AsyncClient) -> None:
    response = await client.get(
        "/users/me", headers=[(b"Authorization", b"Bearer \xff\xfe.\xed\xa0\x80.x")]
    )

    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"] == "Bearer"


# --- refresh-token rotation -----------------------------------------------------


async def test_refresh_rotates_within_the_same_login(
    client: httpx.AsyncClient, tokens: dict[str, str], user: Account
) -> None:
    response = await refresh(client, tokens["refresh_token"])

    assert response.status_code == 200, response.text
    pair = response.json()
    assert pair["token_type"] == "bearer"
    assert pair["refresh_token"] != tokens["refresh_token"]
    new_claims = unverified_claims(pair["access_token"])
    old_claims = unverified_claims(tokens["access_token"])
    assert new_claims["sid"] == old_claims["sid"]
    assert new_claims["jti"] != old_claims["jti"]
    assert new_claims["sub"] == str(user.id)
    assert await me_status(client, pair["access_token"]) == 200
    # The successor rotates in turn.
    assert (await refresh(client, pair["refresh_token"])).status_code == 200


async def test_refresh_token_reuse_revokes_the_login(
    client: httpx.AsyncClient, user: Account, tokens: dict[str, str]
) -> None:
    other_login = await login(client, user)
    successor = (await refresh(client, tokens["refresh_token"])).json()

    reuse = await refresh(client, tokens["refresh_token"])

    assert reuse.status_code == 401
    assert reuse.json() == {"detail": REUSED_REFRESH_TOKEN}
    assert reuse.headers["WWW-Authenticate"] == "Bearer"
    # The whole family is gone: the successor pair and the original access token.
    successor_refresh = await refresh(client, successor["refresh_token"])
    assert successor_refresh.status_code == 401
    assert successor_refresh.json() == {"detail": BAD_REFRESH_TOKEN}
    await assert_rejected(client, successor["access_token"])
    await assert_rejected(client, tokens["access_token"])
    # Another login of the same user is untouched.
    assert await me_status(client, other_login["access_token"]) == 200
    assert (await refresh(client, other_login["refresh_token"])).status_code == 200


async def test_concurrent_use_of_one_refresh_token(
    client: httpx.AsyncClient, tokens: dict[str, str]
) -> None:
    responses = await asyncio.gather(
        refresh(client, tokens["refresh_token"]),
        refresh(client, tokens["refresh_token"]),
    )

    statuses = sorted(response.status_code for response in responses)
    assert statuses == [200, 401]
    [winner] = [r.json() for r in responses if r.status_code == 200]
    # The loser counts as a reuse: the winner's new tokens are revoked too.
    assert (await refresh(client, winner["refresh_token"])).status_code == 401
    await assert_rejected(client, winner["access_token"])


@pytest.mark.parametrize(
    "token", ["unknown-token", "x" * 512, "eyJhbGciOiJIUzI1NiJ9.e30.x"]
)
async def test_refresh_with_unknown_token(
    client: httpx.AsyncClient, tokens: dict[str, str], token: str
) -> None:
    response = await refresh(client, token)

    assert response.status_code == 401
    assert response.json() == {"detail": BAD_REFRESH_TOKEN}
    assert response.headers["WWW-Authenticate"] == "Bearer"
    # A guess does not disturb the real login.
    assert (await refresh(client, tokens["refresh_token"])).status_code == 200


async def test_access_token_is_not_a_refresh_token(
    client: httpx.AsyncClient, tokens: dict[str, str]
) -> None:
    response = await refresh(client, tokens["access_token"])

    assert response.status_code == 401
    assert await me_status(client, tokens["access_token"]) == 200


async def test_expired_login_ends_refresh_and_access(
    client: httpx.AsyncClient, db: Database, tokens: dict[str, str]
) -> None:
    async with db.write() as session:
        await session.execute(
            update(AuthSession).values(expires_at=utcnow() - timedelta(seconds=1))
        )

    response = await refresh(client, tokens["refresh_token"])

    assert response.status_code == 401
    assert response.json() == {"detail": BAD_REFRESH_TOKEN}
    await assert_rejected(client, tokens["access_token"])


# --- logout ---------------------------------------------------------------------


async def test_logout_revokes_the_login_only(
    client: httpx.AsyncClient, user: Account, tokens: dict[str, str]
) -> None:
    other_login = await login(client, user)

    response = await client.post(
        "/auth/logout", json={"refresh_token": tokens["refresh_token"]}
    )

    assert response.status_code == 204
    assert response.content == b""
    assert (await refresh(client, tokens["refresh_token"])).status_code == 401
    await assert_rejected(client, tokens["access_token"])
    assert await me_status(client, other_login["access_token"]) == 200
    assert (await refresh(client, other_login["refresh_token"])).status_code == 200


async def test_logout_after_rotation_ends_the_new_tokens(
    client: httpx.AsyncClient, tokens: dict[str, str]
) -> None:
    pair = (await refresh(client, tokens["refresh_token"])).json()

    response = await client.post(
        "/auth/logout", json={"refresh_token": pair["refresh_token"]}
    )

    assert response.status_code == 204
    await assert_rejected(client, pair["access_token"])
    await assert_rejected(client, tokens["access_token"])
    assert (await refresh(client, pair["refresh_token"])).status_code == 401


@pytest.mark.parametrize("token", ["unknown-token", "access-token"])
async def test_logout_with_unknown_token(
    client: httpx.AsyncClient, tokens: dict[str, str], token: str
) -> None:
    value = tokens["access_token"] if token == "access-token" else token

    response = await client.post("/auth/logout", json={"refresh_token": value})

    assert response.status_code == 401
    assert response.json() == {"detail": BAD_REFRESH_TOKEN}
    assert response.headers["WWW-Authenticate"] == "Bearer"
    assert await me_status(client, tokens["access_token"]) == 200


@pytest.mark.parametrize("path", ["/auth/refresh", "/auth/logout"])
@pytest.mark.parametrize(
    "body",
    [{}, {"refresh_token": ""}, {"refresh_token": None}, {"token": "x"}],
    ids=["empty", "blank", "null", "wrong-field"],
)
async def test_refresh_and_logout_validate_the_body(
    client: httpx.AsyncClient, path: str, body: dict[str, Any]
) -> None:
    response = await client.post(path, json=body)

    assert response.status_code == 422
    assert response.json()["detail"]


# --- account changes end logins -------------------------------------------------


async def test_password_change_ends_every_login(
    client: httpx.AsyncClient, user: Account, tokens: dict[str, str]
) -> None:
    other_login = await login(client, user)
    new_password = "a brand new passphrase"

    response = await client.patch(
        "/users/me",
        json={"password": new_password, "current_password": user.password},
        headers=bearer(tokens["access_token"]),
    )

    assert response.status_code == 200, response.text
    for pair in (tokens, other_login):
        await assert_rejected(client, pair["access_token"])
        assert (await refresh(client, pair["refresh_token"])).status_code == 401
    old = await client.post(
        "/auth/token", data={"username": user.username, "password": user.password}
    )
    assert old.status_code == 401
    fresh = await client.post(
        "/auth/token", data={"username": user.username, "password": new_password}
    )
    assert fresh.status_code == 200
    assert await me_status(client, fresh.json()["access_token"]) == 200


async def test_wrong_current_password_changes_nothing(
    client: httpx.AsyncClient, user: Account, tokens: dict[str, str]
) -> None:
    response = await client.patch(
        "/users/me",
        json={"password": "a brand new passphrase", "current_password": "wrong!!!"},
        headers=bearer(tokens["access_token"]),
    )

    assert response.status_code == 400
    assert await me_status(client, tokens["access_token"]) == 200
    assert (await login(client, user))["access_token"]


async def test_account_deletion_ends_its_tokens(
    client: httpx.AsyncClient, tokens: dict[str, str]
) -> None:
    response = await client.delete("/users/me", headers=bearer(tokens["access_token"]))

    assert response.status_code == 204
    await assert_rejected(client, tokens["access_token"])
    assert (await refresh(client, tokens["refresh_token"])).status_code == 401


async def test_deleted_users_token_never_names_a_later_account(
    client: httpx.AsyncClient, user: Account, tokens: dict[str, str]
) -> None:
    # `user` is the newest row: SQLite without AUTOINCREMENT would reuse its id.
    assert (
        await client.delete("/users/me", headers=bearer(tokens["access_token"]))
    ).status_code == 204

    created = await client.post(
        "/auth/register",
        json={"username": "newcomer", "password": "a long enough passphrase"},
    )

    assert created.status_code == 201
    assert created.json()["id"] > user.id
    await assert_rejected(client, tokens["access_token"])
    # Even a token re-signed with the old id and login names nobody.
    await assert_rejected(client, sign(unverified_claims(tokens["access_token"])))


async def test_deactivation_ends_logins_even_after_reactivation(
    client: httpx.AsyncClient,
    user: Account,
    tokens: dict[str, str],
    admin_headers: dict[str, str],
) -> None:
    response = await client.patch(
        f"/users/{user.id}", json={"is_active": False}, headers=admin_headers
    )

    assert response.status_code == 200, response.text
    assert response.json()["is_active"] is False
    await assert_rejected(client, tokens["access_token"])
    assert (await refresh(client, tokens["refresh_token"])).status_code == 401

    reactivated = await client.patch(
        f"/users/{user.id}", json={"is_active": True}, headers=admin_headers
    )
    assert reactivated.status_code == 200
    await assert_rejected(client, tokens["access_token"])
    assert await me_status(client, (await login(client, user))["access_token"]) == 200


async def test_demotion_takes_effect_on_the_old_token(
    client: httpx.AsyncClient, db: Database, admin_headers: dict[str, str]
) -> None:
    second_admin = await create_user(db, role=Role.ADMIN)
    old_token = (await login(client, second_admin))["access_token"]
    assert (await client.get("/users", headers=bearer(old_token))).status_code == 200

    demoted = await client.patch(
        f"/users/{second_admin.id}", json={"role": "user"}, headers=admin_headers
    )

    assert demoted.status_code == 200, demoted.text
    response = await client.get("/users", headers=bearer(old_token))
    assert response.status_code == 403
    assert response.json() == {"detail": "Administrator role required"}
    me = await client.get("/users/me", headers=bearer(old_token))
    assert me.status_code == 200
    assert me.json()["role"] == "user"


async def test_promotion_takes_effect_on_the_old_token(
    client: httpx.AsyncClient,
    user: Account,
    tokens: dict[str, str],
    admin_headers: dict[str, str],
) -> None:
    before = await client.get("/users", headers=bearer(tokens["access_token"]))
    assert before.status_code == 403

    promoted = await client.patch(
        f"/users/{user.id}", json={"role": "admin"}, headers=admin_headers
    )

    assert promoted.status_code == 200
    after = await client.get("/users", headers=bearer(tokens["access_token"]))
    assert after.status_code == 200
