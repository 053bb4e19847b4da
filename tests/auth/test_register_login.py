"""POST /auth/register and POST /auth/token (the OAuth2 password form)."""

from datetime import datetime
from typing import Any

import httpx
import jwt
import pytest

from askgate.auth import security
from askgate.auth.service import BAD_CREDENTIALS
from askgate.config import Settings
from askgate.db import Database
from askgate.users.service import EMAIL_TAKEN, USERNAME_TAKEN
from tests.conftest import TEST_SECRET_KEY
from tests.factories import Account, create_user

PASSWORD = "a long enough passphrase"
USER_FIELDS = {"id", "username", "email", "role", "is_active", "created_at"}


async def register(client: httpx.AsyncClient, **body: Any) -> httpx.Response:
    return await client.post("/auth/register", json=body)


async def log_in(
    client: httpx.AsyncClient, username: str, password: str
) -> httpx.Response:
    return await client.post(
        "/auth/token", data={"username": username, "password": password}
    )


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


# --- registration -------------------------------------------------------------


async def test_register_returns_the_public_user_only(client: httpx.AsyncClient) -> None:
    response = await register(
        client, username="alice", password=PASSWORD, email="alice@example.com"
    )

    assert response.status_code == 201, response.text
    body = response.json()
    assert set(body) == USER_FIELDS
    assert body["username"] == "alice"
    assert body["email"] == "alice@example.com"
    assert body["role"] == "user"
    assert body["is_active"] is True
    assert isinstance(body["id"], int)
    assert datetime.fromisoformat(body["created_at"]).tzinfo is not None
    assert PASSWORD not in response.text
    assert "password" not in response.text
    assert "$argon2" not in response.text


async def test_registered_user_can_log_in_and_read_itself(
    client: httpx.AsyncClient,
) -> None:
    created = (await register(client, username="bob.b-1_", password=PASSWORD)).json()

    login = await log_in(client, "bob.b-1_", PASSWORD)
    assert login.status_code == 200, login.text
    me = await client.get("/users/me", headers=bearer(login.json()["access_token"]))

    assert me.status_code == 200
    assert me.json() == created
    assert created["email"] is None
    assert "$argon2" not in me.text


async def test_registration_never_grants_admin(client: httpx.AsyncClient) -> None:
    await register(client, username="mallory", password=PASSWORD)
    token = (await log_in(client, "mallory", PASSWORD)).json()["access_token"]

    response = await client.get("/users", headers=bearer(token))

    assert response.status_code == 403
    assert response.json()["detail"] == "Administrator role required"


@pytest.mark.parametrize(
    "extra",
    [
        {"role": "admin"},
        {"is_admin": True},
        {"is_active": False},
        {"id": 1},
        {"password_hash": "$argon2id$v=19$m=65536,t=3,p=4$x$y"},
    ],
    ids=["role", "is_admin", "is_active", "id", "password_hash"],
)
async def test_unknown_fields_are_rejected_and_create_nothing(
    client: httpx.AsyncClient, extra: dict[str, Any]
) -> None:
    response = await register(client, username="eve", password=PASSWORD, **extra)

    assert response.status_code == 422
    [error] = response.json()["detail"]
    assert error["type"] == "extra_forbidden"
    assert error["loc"] == ["body", next(iter(extra))]
    # Nothing was stored: the name is still free and a clean attempt is a plain user.
    retry = await register(client, username="eve", password=PASSWORD)
    assert retry.status_code == 201, retry.text
    assert retry.json()["role"] == "user"
    assert retry.json()["is_active"] is True


@pytest.mark.parametrize("username", ["abc", "a" * 32, "A.b_c-9", "..._", "123"])
async def test_valid_usernames(client: httpx.AsyncClient, username: str) -> None:
    response = await register(client, username=username, password=PASSWORD)

    assert response.status_code == 201, response.text
    assert response.json()["username"] == username


@pytest.mark.parametrize(
    "username",
    [
        "",
        "ab",
        "a" * 33,
        "has space",
        "tab\tname",
        "abc\n",
        "émile",
        "ａｂｃ",  # fullwidth letters
        "a/b/c",
        "a@b.c",
        "name;drop",
        "name\x00x",
    ],
    ids=repr,
)
async def test_invalid_usernames(client: httpx.AsyncClient, username: str) -> None:
    response = await register(client, username=username, password=PASSWORD)

    assert response.status_code == 422, response.text
    assert response.json()["detail"][0]["loc"] == ["body", "username"]


@pytest.mark.parametrize("length", [8, 128])
async def test_password_length_bounds_accepted(
    client: httpx.AsyncClient, length: int
) -> None:
    password = ("pässword" * 20)[:length]
    response = await register(client, username="carol", password=password)

    assert response.status_code == 201, response.text
    assert (await log_in(client, "carol", password)).status_code == 200


@pytest.mark.parametrize(
    "password", ["", "x" * 7, "x" * 129], ids=["empty", "7-chars", "129-chars"]
)
async def test_password_length_bounds_rejected(
    client: httpx.AsyncClient, password: str
) -> None:
    response = await register(client, username="carol", password=password)

    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"] == ["body", "password"]


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"username": "dave"},
        {"password": PASSWORD},
        {"username": None, "password": PASSWORD},
        {"username": 12345, "password": PASSWORD},
        {"username": "dave", "password": 123456789},
    ],
    ids=["empty", "no-password", "no-username", "null", "int-name", "int-password"],
)
async def test_missing_or_mistyped_fields(
    client: httpx.AsyncClient, body: dict[str, Any]
) -> None:
    response = await client.post("/auth/register", json=body)

    assert response.status_code == 422
    assert response.json()["detail"]


@pytest.mark.parametrize(
    "email",
    ["not-an-email", "a@", "@example.com", "a b@example.com", "a@@example.com", ""],
)
async def test_invalid_email(client: httpx.AsyncClient, email: str) -> None:
    response = await register(client, username="erin", password=PASSWORD, email=email)

    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"][:2] == ["body", "email"]


@pytest.mark.parametrize("taken", ["frank", "FRANK", "Frank"])
async def test_username_taken_ignoring_case(
    client: httpx.AsyncClient, taken: str
) -> None:
    assert (await register(client, username="frank", password=PASSWORD)).is_success

    response = await register(client, username=taken, password=PASSWORD)

    assert response.status_code == 409
    assert response.json() == {"detail": USERNAME_TAKEN}


async def test_username_of_existing_factory_user_is_taken(
    client: httpx.AsyncClient, user: Account
) -> None:
    response = await register(client, username=user.username.upper(), password=PASSWORD)

    assert response.status_code == 409
    assert response.json() == {"detail": USERNAME_TAKEN}


@pytest.mark.parametrize(
    "taken", ["grace@example.com", "GRACE@EXAMPLE.COM", "Grace@Example.com"]
)
async def test_email_taken_ignoring_case(client: httpx.AsyncClient, taken: str) -> None:
    first = await register(
        client, username="grace", password=PASSWORD, email="grace@example.com"
    )
    assert first.status_code == 201

    response = await register(client, username="grace2", password=PASSWORD, email=taken)

    assert response.status_code == 409
    assert response.json() == {"detail": EMAIL_TAKEN}
    # The failed attempt did not create its user either.
    assert (await log_in(client, "grace2", PASSWORD)).status_code == 401


async def test_many_users_without_email(client: httpx.AsyncClient) -> None:
    for name in ("nomail1", "nomail2"):
        response = await register(client, username=name, password=PASSWORD)
        assert response.status_code == 201, response.text
        assert response.json()["email"] is None


# --- login ----------------------------------------------------------------------


async def test_login_returns_a_bearer_pair(
    client: httpx.AsyncClient, user: Account, settings: Settings
) -> None:
    response = await log_in(client, user.username, user.password)

    assert response.status_code == 200, response.text
    body = response.json()
    assert set(body) == {"access_token", "refresh_token", "token_type", "expires_in"}
    assert body["token_type"] == "bearer"
    assert body["expires_in"] == settings.access_token_expire_minutes * 60
    assert body["refresh_token"] != body["access_token"]
    claims = jwt.decode(
        body["access_token"],
        TEST_SECRET_KEY,
        algorithms=["HS256"],
        audience="askgate",
        issuer="askgate",
    )
    assert claims["sub"] == str(user.id)
    assert claims["type"] == "access"
    assert claims["exp"] - claims["iat"] == body["expires_in"]
    assert jwt.get_unverified_header(body["access_token"])["alg"] == "HS256"


async def test_each_login_is_a_separate_session(
    client: httpx.AsyncClient, user: Account
) -> None:
    first = (await log_in(client, user.username, user.password)).json()
    second = (await log_in(client, user.username, user.password)).json()

    claims = [
        jwt.decode(pair["access_token"], options={"verify_signature": False})
        for pair in (first, second)
    ]
    assert claims[0]["sid"] != claims[1]["sid"]
    assert claims[0]["jti"] != claims[1]["jti"]
    assert first["refresh_token"] != second["refresh_token"]


async def test_login_username_ignores_case(
    client: httpx.AsyncClient, user: Account
) -> None:
    response = await log_in(client, user.username.upper(), user.password)

    assert response.status_code == 200, response.text
    me = await client.get("/users/me", headers=bearer(response.json()["access_token"]))
    assert me.json()["id"] == user.id


async def test_login_accepts_grant_type_password(
    client: httpx.AsyncClient, user: Account
) -> None:
    response = await client.post(
        "/auth/token",
        data={
            "grant_type": "password",
            "username": user.username,
            "password": user.password,
        },
    )

    assert response.status_code == 200, response.text


@pytest.mark.parametrize("case", ["wrong-password", "unknown-user", "inactive-user"])
async def test_login_failures_are_indistinguishable(
    client: httpx.AsyncClient, db: Database, user: Account, case: str
) -> None:
    inactive = await create_user(db, is_active=False)
    username, password = {
        "wrong-password": (user.username, user.password + "!"),
        "unknown-user": ("nobody-here", user.password),
        "inactive-user": (inactive.username, inactive.password),
    }[case]

    response = await log_in(client, username, password)

    assert response.status_code == 401
    assert response.json() == {"detail": BAD_CREDENTIALS}
    assert response.headers["WWW-Authenticate"] == "Bearer"
    assert "access_token" not in response.text


async def test_unknown_user_still_verifies_a_hash(
    client: httpx.AsyncClient, user: Account, monkeypatch: pytest.MonkeyPatch
) -> None:
    verified: list[str | bytes] = []
    real_verify = security._password_hash.verify

    def spy(password: str | bytes, hash: str | bytes) -> bool:
        verified.append(hash)
        return real_verify(password, hash)

    monkeypatch.setattr(security._password_hash, "verify", spy)

    assert (await log_in(client, "nobody-here", "whatever123")).status_code == 401
    assert verified == [security._DUMMY_HASH]

    verified.clear()
    assert (await log_in(client, user.username, "wrong-password")).status_code == 401
    assert len(verified) == 1
    assert verified[0] != security._DUMMY_HASH


@pytest.mark.parametrize(
    "form",
    [
        {"username": "someone"},
        {"password": PASSWORD},
        {"username": "", "password": PASSWORD},
        {"username": "someone", "password": ""},
        {"username": "someone", "password": "x" * 129},
        {"username": "s" * 129, "password": PASSWORD},
        {"username": "someone", "password": PASSWORD, "grant_type": "client_creds"},
    ],
    ids=[
        "no-password",
        "no-username",
        "empty-username",
        "empty-password",
        "long-password",
        "long-username",
        "bad-grant-type",
    ],
)
async def test_login_form_validation(
    client: httpx.AsyncClient, form: dict[str, str]
) -> None:
    response = await client.post("/auth/token", data=form)

    assert response.status_code == 422
    assert response.json()["detail"]


async def test_login_with_json_instead_of_a_form(
    client: httpx.AsyncClient, user: Account
) -> None:
    response = await client.post(
        "/auth/token", json={"username": user.username, "password": user.password}
    )

    assert response.status_code == 422
    assert "access_token" not in response.text
