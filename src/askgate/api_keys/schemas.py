from datetime import datetime
from typing import Annotated

from pydantic import Field, StringConstraints

from askgate.schemas import InputSchema, Schema, Storable

NAME_MAX = 100
EXPIRES_IN_DAYS_MAX = 3650


class ApiKeyCreate(InputSchema):
    name: Annotated[
        str,
        StringConstraints(strip_whitespace=True, min_length=1, max_length=NAME_MAX),
        Storable,
        Field(description="What the key is for, to recognize it later"),
    ]
    expires_in_days: (
        Annotated[int, Field(strict=True, ge=1, le=EXPIRES_IN_DAYS_MAX)] | None
    ) = Field(
        default=None, description="Days until the key stops working; never if omitted"
    )

    model_config = {
        "json_schema_extra": {
            "examples": [{"name": "laptop scripts", "expires_in_days": 90}]
        }
    }


class ApiKeyRead(Schema):
    id: int
    name: str
    prefix: str = Field(description="The key's first 8 characters, to recognize it")
    created_at: datetime
    last_used_at: datetime | None = Field(
        description="When the key last authenticated a request, to the minute"
    )
    expires_at: datetime | None = Field(description="null: never expires")


class ApiKeyCreated(ApiKeyRead):
    key: str = Field(
        description="The key, shown this once: askgate keeps only its SHA-256"
    )


class AdminApiKeyRead(ApiKeyRead):
    user_id: int
