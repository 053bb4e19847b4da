"""Password policy: length 8–128, no composition rules, not a common password
(compared after NFKC normalisation and case folding), and nothing is hashed
before the length is checked."""

from typing import Annotated, Any

import httpx
import pytest
from pydantic import AfterValidator, TypeAdapter, ValidationError

from askgate.auth import passwords, security
from tests.factories import PASSWORD, Account

JSON = {"Content-Type": "application/json"}


@pytest.mark.parametrize(
    "password",
    [
        "password",
        "PASSWORD",
        "Password1",
        "  password  ",
        "ｐａｓｓｗｏｒｄ",  # fullwidth: NFKC folds it to "password"
        "ＰＡＳＳＷＯＲＤ",
        "qwertyuiop",
        "iloveyou",
    ],
)
def test_common_passwords_are_recognised(password: str) -> None:
    assert passwords.is_common(password)


@pytest.mark.parametrize(
    "password",
    [
        PASSWORD,
        "correct horse battery",
        "a long admin passphrase",
        "a long enough pass",
        "a long new password",
        "another long passphrase",
        "a new long passphrase",
        "Sup3r-S3cret-Passw0rd",
        "passwordpasswordpassword!",
        "ÅÄÖ-sång-och-dans",
    ],
)
def test_uncommon_passwords_pass(password: str) -> None:
    assert not passwords.is_common(password)
    assert passwords.reject_common_password(password) == password


def test_the_shipped_list_is_complete() -> None:
    common = passwords.common_passwords()

    assert len(common) == 19_640
    assert all(item == item.casefold().strip() for item in common)
    assert passwords.common_passwords() is common  # loaded once


def test_validator_message_says_why() -> None:
    adapter = TypeAdapter(
        Annotated[str, AfterValidator(passwords.reject_common_password)]
    )

    with pytest.raises(ValidationError) as caught:
        adapter.validate_python("Password123")

    assert "common" in caught.value.errors()[0]["msg"]


# --- over HTTP (the validator is applied to users.schemas.Password) --------------


def assert_common_password_rejected(response: httpx.Response) -> None:
    assert response.status_code == 422, response.text
    detail = response.json()["detail"]
    assert any("common" in error["msg"] for error in detail), detail
    assert [error["loc"][-1] for error in detail] == ["password"]


@pytest.mark.parametrize(
    "password", ["password123", "ＰａｓｓＷｏｒｄ１２３", "Iloveyou"]
)
async def test_register_rejects_a_common_password(
    client: httpx.AsyncClient, password: str
) -> None:
    response = await client.post(
        "/auth/register", json={"username": "newcomer", "password": password}
    )

    assert_common_password_rejected(response)
    login = await client.post(
        "/auth/token", data={"username": "newcomer", "password": password}
    )
    assert login.status_code == 401


async def test_register_accepts_a_passphrase_without_composition_rules(
    client: httpx.AsyncClient,
) -> None:
    response = await client.post(
        "/auth/register",
        json={"username": "newcomer", "password": "all lower case words"},
    )

    assert response.status_code == 201, response.text


async def test_password_change_rejects_a_common_password(
    client: httpx.AsyncClient, user: Account, user_headers: dict[str, str]
) -> None:
    response = await client.patch(
        "/users/me",
        json={"password": "1234567890", "current_password": user.password},
        headers=user_headers,
    )

    assert_common_password_rejected(response)
    still_valid = await client.get("/users/me", headers=user_headers)
    assert still_valid.status_code == 200


async def test_admin_cannot_create_a_user_with_a_common_password(
    client: httpx.AsyncClient, admin_headers: dict[str, str]
) -> None:
    response = await client.post(
        "/users",
        json={"username": "created", "password": "sunshine1"},
        headers=admin_headers,
    )

    assert_common_password_rejected(response)


# --- nothing is hashed before the length is checked ------------------------------


@pytest.fixture
def hashing_calls(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every Argon2 hash or verify the app runs from now on."""
    calls: list[str] = []
    hasher = security._password_hash
    original_hash, original_verify = hasher.hash, hasher.verify

    def counting_hash(password: str | bytes, **kwargs: Any) -> str:
        calls.append("hash")
        return original_hash(password, **kwargs)

    def counting_verify(password: str | bytes, hash: str | bytes) -> bool:
        calls.append("verify")
        return original_verify(password, hash)

    monkeypatch.setattr(hasher, "hash", counting_hash)
    monkeypatch.setattr(hasher, "verify", counting_verify)
    return calls


LONG = "x" * 129
HUGE = "x" * 200_000  # over ASKGATE_MAX_BODY_BYTES as well


@pytest.mark.parametrize("password", [LONG, HUGE], ids=["129-chars", "200k-chars"])
async def test_long_passwords_are_rejected_before_any_hashing(
    client: httpx.AsyncClient,
    user: Account,
    user_headers: dict[str, str],
    hashing_calls: list[str],
    password: str,
) -> None:
    register = await client.post(
        "/auth/register", json={"username": "newcomer", "password": password}
    )
    login = await client.post(
        "/auth/token", data={"username": user.username, "password": password}
    )
    change = await client.patch(
        "/users/me",
        json={"password": "a fine new passphrase", "current_password": password},
        headers=user_headers,
    )
    new_password = await client.patch(
        "/users/me",
        json={"password": password, "current_password": user.password},
        headers=user_headers,
    )

    expected = 413 if password is HUGE else 422
    for response in (register, login, change, new_password):
        assert response.status_code == expected, response.text
        assert "detail" in response.json()
    assert hashing_calls == []


async def test_the_hashing_probe_sees_a_normal_login(
    client: httpx.AsyncClient, user: Account, hashing_calls: list[str]
) -> None:
    response = await client.post(
        "/auth/token", data={"username": user.username, "password": user.password}
    )

    assert response.status_code == 200
    assert hashing_calls == ["verify"]
