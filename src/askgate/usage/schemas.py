from datetime import date
from typing import Annotated

from pydantic import Field

from askgate.schemas import Schema

Day = Annotated[date, Field(description="The UTC day the questions were asked on")]
Model = Annotated[str, Field(description="The public name of the model asked")]
UserId = Annotated[int, Field(description="The user's id")]
Username = Annotated[str, Field(description="The user's name")]
Questions = Annotated[
    int, Field(description="Questions stored: answered, failed and cancelled")
]
Failed = Annotated[int, Field(description="Of those, the failed ones")]
PromptTokens = Annotated[int, Field(description="Prompt tokens recorded")]
CompletionTokens = Annotated[int, Field(description="Completion tokens recorded")]
TotalTokens = Annotated[int, Field(description="prompt_tokens + completion_tokens")]


class UsageDayRead(Schema):
    """The caller's questions to one model on one UTC day."""

    day: Day
    model: Model
    questions: Questions
    failed: Failed
    prompt_tokens: PromptTokens
    completion_tokens: CompletionTokens
    total_tokens: TotalTokens

    model_config = {
        "json_schema_extra": {
            "examples": [
                {
                    "day": "2026-12-01",
                    "model": "default",
                    "questions": 12,
                    "failed": 1,
                    "prompt_tokens": 840,
                    "completion_tokens": 2310,
                    "total_tokens": 3150,
                }
            ]
        }
    }


class AdminUsageDayRead(Schema):
    """One user's questions to one model on one UTC day."""

    day: Day
    user_id: UserId
    username: Username
    model: Model
    questions: Questions
    failed: Failed
    prompt_tokens: PromptTokens
    completion_tokens: CompletionTokens
    total_tokens: TotalTokens

    model_config = {
        "json_schema_extra": {
            "examples": [
                {
                    "day": "2026-12-01",
                    "user_id": 7,
                    "username": "alice",
                    "model": "default",
                    "questions": 12,
                    "failed": 1,
                    "prompt_tokens": 840,
                    "completion_tokens": 2310,
                    "total_tokens": 3150,
                }
            ]
        }
    }


class LeaderboardEntry(Schema):
    """One user's totals over the leaderboard's days, all models together."""

    user_id: UserId
    username: Username
    questions: Questions
    failed: Failed
    prompt_tokens: PromptTokens
    completion_tokens: CompletionTokens
    total_tokens: TotalTokens

    model_config = {
        "json_schema_extra": {
            "examples": [
                {
                    "user_id": 7,
                    "username": "alice",
                    "questions": 310,
                    "failed": 4,
                    "prompt_tokens": 21840,
                    "completion_tokens": 60210,
                    "total_tokens": 82050,
                }
            ]
        }
    }
