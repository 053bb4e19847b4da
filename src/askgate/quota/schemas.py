from datetime import date, datetime

from pydantic import Field

from askgate.schemas import Schema


class TokenUsageRead(Schema):
    day: date = Field(description="Today, in UTC")
    used_tokens: int = Field(description="Spent by today's finished questions")
    reserved_tokens: int = Field(
        description="Held by questions still being answered, until they finish "
        "(only under a quota: without one, a question reserves nothing). What a "
        "crashed askgate process held stops counting once it is older than the "
        "longest a question can run"
    )
    quota: int | None = Field(description="Tokens per UTC day; null: unlimited")
    remaining: int | None = Field(
        description="What a new question may still use today; null: unlimited"
    )
    resets_at: datetime = Field(description="The next 00:00 UTC")

    model_config = {
        "json_schema_extra": {
            "examples": [
                {
                    "day": "2026-11-25",
                    "used_tokens": 1840,
                    "reserved_tokens": 320,
                    "quota": 50000,
                    "remaining": 47840,
                    "resets_at": "2026-11-26T00:00:00Z",
                }
            ]
        }
    }
