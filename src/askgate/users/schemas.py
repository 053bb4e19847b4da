from datetime import datetime
from typing import Annotated

from pydantic import EmailStr, Field, StringConstraints

from askgate.schemas import InputSchema, Schema, Storable
from askgate.users.models import Role

USERNAME_PATTERN = r"^[A-Za-z0-9_.-]+$"
PASSWORD_MIN, PASSWORD_MAX = 8, 128

Username = Annotated[
    str,
    StringConstraints(min_length=3, max_length=32, pattern=USERNAME_PATTERN),
    Field(description="3–32 characters from `A-Z a-z 0-9 _ . -`, unique ignoring case"),
]
Password = Annotated[
    str,
    StringConstraints(min_length=PASSWORD_MIN, max_length=PASSWORD_MAX),
    Storable,
    Field(description="8–128 characters"),
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


class UserCreate(InputSchema):
    """Self-registration: no role here, so registration can never make an admin."""

    username: Username
    password: Password
    email: EmailStr | None = None

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
    email: EmailStr | None = None
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

    model_config = {
        "json_schema_extra": {"examples": [{"role": "admin"}, {"is_active": False}]}
    }
