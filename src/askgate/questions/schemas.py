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
    model: Annotated[str, Field(strict=True, min_length=1, max_length=200)] | None = (
        Field(
            default=None,
            description="The model to ask, by name; the default model (the first "
            "of ASKGATE_MODELS_FILE) when omitted. An unknown name is a 404 that "
            "lists the models.",
        )
    )
    stream: StrictBool = Field(
        default=False, description="Answer as server-sent events instead of JSON"
    )

    model_config = {
        "json_schema_extra": {
            "examples": [
                {"content": "What is the capital of France?", "max_tokens": 64},
                {"content": "Write a haiku about SQLite.", "stream": True},
                {"content": "Summarise RFC 9110 in one line.", "model": "fast"},
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
    model: str = Field(description="The name of the model asked")
    upstream_model: str | None = Field(
        default=None,
        description="The model the upstream that answered reports (a fallback's "
        "when a fallback answered); null when no upstream answered",
    )
    status: QuestionStatus
    error: str | None = Field(description="Why the question failed, if it did")
    tool_calls: list[dict[str, Any]] | None = Field(
        default=None,
        description="The tool calls the model answered with (OpenAI API only)",
    )
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
                    "upstream_model": "smollm2-135m-instruct",
                    "status": "answered",
                    "error": None,
                    "tool_calls": None,
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
            upstream_model=row["upstream_model"],
            status=row["status"],
            error=row["error"],
            tool_calls=row["tool_calls"],
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
            upstream_model=question.upstream_model,
            status=question.status,
            error=question.error,
            tool_calls=question.tool_calls,
            usage=UsageRead(
                prompt_tokens=question.prompt_tokens,
                completion_tokens=question.completion_tokens,
            ),
            latency_ms=question.latency_ms,
            created_at=question.created_at,
        )


class QuestionDetail(QuestionRead):
    """One question with the whole conversation an OpenAI API call sent (lists
    leave it out: it can be long)."""

    messages: list[dict[str, Any]] | None = Field(
        default=None,
        description="The messages of a call to POST /v1/chat/completions, as "
        "stored (`content` holds its last user message); null for POST /questions",
    )

    @classmethod
    def of(cls, question: Question) -> "QuestionDetail":
        return cls(**dict(QuestionRead.of(question)), messages=question.messages)
