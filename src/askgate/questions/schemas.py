from datetime import datetime
from typing import Annotated, Any

from pydantic import Field, StrictBool, StringConstraints

from askgate.questions.models import Question, QuestionStatus
from askgate.schemas import InputSchema, Schema, Storable

CONTENT_MAX = 8000
MAX_TOKENS_LIMIT = 16384


class QuestionCreate(InputSchema):
    content: Annotated[
        str,
        StringConstraints(strip_whitespace=True, min_length=1, max_length=CONTENT_MAX),
        Storable,
        Field(description="The question: 1–8000 characters after trimming"),
    ]
    # strict: `"temperature": false` or `"max_tokens": "5"` is an error, not 0 or 5.
    max_tokens: Annotated[int, Field(strict=True, ge=1, le=MAX_TOKENS_LIMIT)] | None = (
        Field(
            default=None,
            description="Upper bound on the answer's length; "
            "ASKGATE_LLM_DEFAULT_MAX_TOKENS when omitted",
        )
    )
    temperature: Annotated[float, Field(strict=True, ge=0, le=2)] | None = None
    stream: StrictBool = Field(
        default=False, description="Answer as server-sent events instead of JSON"
    )

    model_config = {
        "json_schema_extra": {
            "examples": [
                {"content": "What is the capital of France?", "max_tokens": 64},
                {"content": "Write a haiku about SQLite.", "stream": True},
            ]
        }
    }


class UsageRead(Schema):
    prompt_tokens: int | None
    completion_tokens: int | None


class QuestionRead(Schema):
    id: int
    user_id: int
    api_key_id: int | None = Field(
        description="The API key that asked; null when asked with a login or "
        "when that key has been revoked since"
    )
    content: str
    answer: str | None
    model: str
    status: QuestionStatus
    error: str | None = Field(description="Why the question failed, if it did")
    usage: UsageRead
    latency_ms: int
    created_at: datetime

    model_config = {
        "json_schema_extra": {
            "examples": [
                {
                    "id": 7,
                    "user_id": 2,
                    "api_key_id": None,
                    "content": "What is the capital of France?",
                    "answer": "The capital of France is Paris.",
                    "model": "smollm2-135m-instruct",
                    "status": "answered",
                    "error": None,
                    "usage": {"prompt_tokens": 36, "completion_tokens": 8},
                    "latency_ms": 412,
                    "created_at": "2026-11-25T13:05:00Z",
                }
            ]
        }
    }

    @classmethod
    def stored(cls, question_id: int, row: dict[str, Any]) -> "QuestionRead":
        """A question just written from `row` (its columns): no validation, the
        values are askgate's own."""
        return cls.model_construct(
            id=question_id,
            user_id=row["user_id"],
            api_key_id=row["api_key_id"],
            content=row["content"],
            answer=row["answer"],
            model=row["model"],
            status=row["status"],
            error=row["error"],
            usage=UsageRead.model_construct(
                prompt_tokens=row["prompt_tokens"],
                completion_tokens=row["completion_tokens"],
            ),
            latency_ms=row["latency_ms"],
            created_at=row["created_at"],
        )

    @classmethod
    def of(cls, question: Question) -> "QuestionRead":
        return cls(
            id=question.id,
            user_id=question.user_id,
            api_key_id=question.api_key_id,
            content=question.content,
            answer=question.answer,
            model=question.model,
            status=question.status,
            error=question.error,
            usage=UsageRead(
                prompt_tokens=question.prompt_tokens,
                completion_tokens=question.completion_tokens,
            ),
            latency_ms=question.latency_ms,
            created_at=question.created_at,
        )
