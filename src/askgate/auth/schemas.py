from typing import Annotated, Literal

from pydantic import Field, StringConstraints

from askgate.schemas import InputSchema, Schema, Storable


class TokenPair(Schema):
    access_token: str
    refresh_token: str | None = Field(
        description="One-time refresh token; null when it was set as the web "
        "page's cookie instead (header X-Askgate-Web: 1)"
    )
    token_type: Literal["bearer"] = "bearer"
    expires_in: int = Field(description="Seconds until the access token expires")

    model_config = {
        "json_schema_extra": {
            "examples": [
                {
                    "access_token": "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9...",
                    "refresh_token": "Vd2V5k3Yq4m7...",
                    "token_type": "bearer",
                    "expires_in": 900,
                }
            ]
        }
    }


class RefreshRequest(InputSchema):
    refresh_token: Annotated[
        str, StringConstraints(min_length=1, max_length=512), Storable
    ]

    model_config = {
        "json_schema_extra": {"examples": [{"refresh_token": "Vd2V5k3Yq4m7..."}]}
    }
