from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import JSON, Enum, ForeignKey, Index, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from askgate.db import Base, UTCDateTime, utcnow


class QuestionStatus(StrEnum):
    ANSWERED = "answered"
    FAILED = "failed"
    CANCELLED = "cancelled"


class Question(Base):
    __tablename__ = "questions"
    __table_args__ = (
        Index("ix_questions_user_id_id", "user_id", "id"),
        # The history's filters (askgate.questions.history): a status or a
        # model walked newest first without reading the other questions, and
        # a time window's first and last ids.
        Index("ix_questions_user_id_status_id", "user_id", "status", "id"),
        Index("ix_questions_user_id_model_id", "user_id", "model", "id"),
        Index("ix_questions_user_id_created_at_id", "user_id", "created_at", "id"),
        # Revoking a key sets its questions' api_key_id to null: found by index.
        Index("ix_questions_api_key_id", "api_key_id"),
        {"sqlite_autoincrement": True},
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    # The personal API key that asked; null when asked with a login (or when
    # the key was revoked since).
    api_key_id: Mapped[int | None] = mapped_column(
        ForeignKey("api_keys.id", ondelete="SET NULL")
    )
    content: Mapped[str] = mapped_column(Text)
    answer: Mapped[str | None] = mapped_column(Text)
    # What `q` searches (askgate.questions.history.searchable): the question and
    # the answer in canonical form, folded in Python so that every backend
    # matches the same way.
    # Deferred: written with the question, only ever read by the database.
    search_text: Mapped[str] = mapped_column(
        Text, deferred=True, deferred_raiseload=True
    )
    # The public name of the model asked (askgate.llm.registry); what the
    # upstream that answered reported as its model, None if none answered.
    model: Mapped[str] = mapped_column(String(200))
    upstream_model: Mapped[str | None] = mapped_column(String(200))
    status: Mapped[QuestionStatus] = mapped_column(
        Enum(
            QuestionStatus,
            native_enum=False,
            length=16,
            create_constraint=True,
            name="question_status",
            values_callable=lambda values: [value.value for value in values],
        )
    )
    error: Mapped[str | None] = mapped_column(Text)
    # A question asked through the OpenAI API (/v1) keeps its whole conversation
    # here, `content` holding its last user message; None for POST /questions.
    messages: Mapped[list[dict[str, Any]] | None] = mapped_column(JSON)
    # The tool calls the model answered with (OpenAI's shape), if any.
    tool_calls: Mapped[list[dict[str, Any]] | None] = mapped_column(JSON)
    prompt_tokens: Mapped[int | None]
    completion_tokens: Mapped[int | None]
    latency_ms: Mapped[int]
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
