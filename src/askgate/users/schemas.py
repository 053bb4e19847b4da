from datetime import datetime
from typing import Annotated

from pydantic import AfterValidator, EmailStr, Field, StringConstraints, ValidationError
from pydantic_core import ErrorDetails

from askgate.auth.passwords import reject_common_password
from askgate.config import Settings
from askgate.schemas import InputSchema, Schema, Storable
from askgate.users.models import Role
from askgate.users.names import canonical

USERNAME_PATTERN = r"^[A-Za-z0-9_.-]+$"
EMAIL_MAX = 320
PASSWORD_MIN, PASSWORD_MAX = 8, 128
MAX_DAILY_TOKEN_QUOTA = 10**12

Username = Annotated[
    str,
    StringConstraints(min_length=3, max_length=32, pattern=USERNAME_PATTERN),
    Field(description="3–32 characters from `A-Z a-z 0-9 _ . -`, unique ignoring case"),
]


def _canonical_fits(email: str) -> str:
    # NFKC can make a valid address 18 times longer (U+FDFA): bounded here so
    # that its canonical form always fits a unique index on either database.
    if len(canonical(email)) > EMAIL_MAX:
        raise ValueError(f"is over {EMAIL_MAX} characters once normalized")
    return email


Email = Annotated[
    EmailStr,
    AfterValidator(_canonical_fits),
    Field(description="Unique ignoring case and Unicode compatibility forms"),
]
Password = Annotated[
    str,
    StringConstraints(min_length=PASSWORD_MIN, max_length=PASSWORD_MAX),
    Storable,
    AfterValidator(reject_common_password),
    Field(description="8–128 characters, not one of the most common passwords"),
]


class UserRead(Schema):
    id: int
    username: str
    email: str | None
    role: Role
    is_active: bool
    created_at: datetime

    model_config = {
        "json_schema_extra": {
            "examples": [
                {
                    "id": 2,
                    "username": "alice",
                    "email": "alice@example.com",
                    "role": "user",
                    "is_active": True,
                    "created_at": "2026-11-25T13:00:00Z",
                }
            ]
        }
    }


class AdminUserRead(UserRead):
    """What admins see of an account: also its quota override."""

    daily_token_quota: int | None = Field(
        description="Tokens per UTC day for this user; 0: unlimited; "
        "null: ASKGATE_DAILY_TOKEN_QUOTA applies"
    )

    model_config = {
        "json_schema_extra": {
            "examples": [
                {
                    "id": 3,
                    "username": "bob",
                    "email": None,
                    "role": "user",
                    "is_active": True,
                    "created_at": "2026-11-25T13:00:00Z",
                    "daily_token_quota": 20000,
                }
            ]
        }
    }


class UserCreate(InputSchema):
    """Self-registration: no role here, so registration can never make an admin."""

    username: Username
    password: Password
    email: Email | None = None

    model_config = {
        "json_schema_extra": {
            "examples": [
                {
                    "username": "alice",
                    "password": "correct horse battery",
                    "email": "alice@example.com",
                }
            ]
        }
    }


class UserUpdateMe(InputSchema):
    """Every field is optional; `email: null` removes the address."""

    username: Username | None = None
    email: Email | None = None
    password: Password | None = None
    current_password: (
        Annotated[str, StringConstraints(max_length=PASSWORD_MAX), Storable] | None
    ) = None

    model_config = {
        "json_schema_extra": {
            "examples": [
                {"email": "alice@example.org"},
                {
                    "password": "a new long passphrase",
                    "current_password": "correct horse battery",
                },
            ]
        }
    }


class AdminUserCreate(UserCreate):
    role: Role = Role.USER
    is_active: bool = True

    model_config = {
        "json_schema_extra": {
            "examples": [
                {
                    "username": "bob",
                    "password": "another long passphrase",
                    "role": "admin",
                }
            ]
        }
    }


class AdminUserUpdate(InputSchema):
    role: Role | None = None
    is_active: bool | None = None
    daily_token_quota: (
        Annotated[int, Field(strict=True, ge=0, le=MAX_DAILY_TOKEN_QUOTA)] | None
    ) = Field(
        default=None,
        description="Tokens per UTC day for this user; 0: unlimited; "
        "null: back to ASKGATE_DAILY_TOKEN_QUOTA",
    )

    model_config = {
        "json_schema_extra": {
            "examples": [
                {"role": "admin"},
                {"is_active": False},
                {"daily_token_quota": 20000},
            ]
        }
    }


ADMIN_SETTINGS = {
    "username": "ASKGATE_ADMIN_USERNAME",
    "password": "ASKGATE_ADMIN_PASSWORD",
}


def admin_from_settings(settings: Settings) -> AdminUserCreate | None:
    """The first admin that ASKGATE_ADMIN_USERNAME and ASKGATE_ADMIN_PASSWORD
    describe, checked as `askgate create-admin` checks its input; None if unset.

    Otherwise a ValueError with one line per bad setting, naming it and never
    repeating its value, for startup to stop on.
    """
    if settings.admin_username is None or settings.admin_password is None:
        return None
    try:
        return AdminUserCreate(
            username=settings.admin_username,
            password=settings.admin_password.get_secret_value(),
            role=Role.ADMIN,
        )
    except ValidationError as exc:
        errors = exc.errors(include_input=False, include_url=False)
        lines = [f"{ADMIN_SETTINGS[str(e['loc'][0])]}: {_reason(e)}" for e in errors]
        raise ValueError("\n".join(lines)) from None


def _reason(error: ErrorDetails) -> str:
    # A validator's own message, without pydantic's "Value error, " before it.
    if error["type"] == "value_error" and "ctx" in error:
        return str(error["ctx"]["error"])
    return error["msg"]
