"""Asking the LLM and keeping every question.

No database session is open while the LLM works: a short write transaction
reserves the question's tokens from the daily quota first (askgate.quota), and
another stores the question and settles its tokens once the answer (or the
failure) is known. A failed or cancelled question is stored too, with whatever
part of the answer arrived, and pays for what the upstream reported or delivered.
"""

import asyncio
import time
from collections.abc import AsyncGenerator, Awaitable, Sequence
from contextlib import aclosing
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, TypeVar

import anyio
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from askgate.config import Settings
from askgate.db import Database, utcnow
from askgate.errors import UpstreamFailed, UpstreamTimedOut, UpstreamUnavailable
from askgate.llm.errors import (
    UpstreamBusy,
    UpstreamError,
    UpstreamTimeout,
    retry_after_header,
)
from askgate.llm.types import ChatClient, ChatParams, Delta, StreamEnd, Usage
from askgate.questions.models import Question, QuestionStatus
from askgate.questions.schemas import QuestionCreate, QuestionRead
from askgate.quota import service as quota

CLIENT_LEFT = "The client disconnected before the answer was complete"
INTERNAL_ERROR = "askgate failed while answering; see its logs"
T = TypeVar("T")
_background: set[asyncio.Future[Any]] = set()


@dataclass
class _Attempt:
    """One question in flight, until it is stored."""

    user_id: int
    content: str
    model: str
    reservation: quota.Reservation
    created_at: datetime = field(default_factory=utcnow)
    started: float = field(default_factory=time.monotonic)
    parts: list[str] = field(default_factory=list)

    async def store(
        self,
        db: Database,
        status: QuestionStatus,
        *,
        error: str | None = None,
        usage: Usage | None = None,
        model: str | None = None,
        unreported_completion: int | None = None,
    ) -> Question:
        """Store the question and settle its tokens in one transaction.

        An answer whose length the upstream did not report costs
        `unreported_completion`, by default one token per delta that arrived.
        """
        question = Question(
            user_id=self.user_id,
            content=self.content,
            answer="".join(self.parts) if self.parts else None,
            model=model or self.model,
            status=status,
            error=error,
            prompt_tokens=usage.prompt_tokens if usage else None,
            completion_tokens=usage.completion_tokens if usage else None,
            latency_ms=round((time.monotonic() - self.started) * 1000),
            created_at=self.created_at,
        )
        tokens = quota.spent(
            usage,
            unreported_completion=(
                len(self.parts)
                if unreported_completion is None
                else unreported_completion
            ),
        )
        async with db.write() as session:
            session.add(question)
            await quota.settle(
                session=session, reservation=self.reservation, tokens=tokens
            )
        return question

    async def store_interrupted(self, db: Database, exc: BaseException) -> Question:
        """Keep what arrived when the work stopped for a reason other than the
        upstream: the client leaving (cancelled) or a bug here (failed)."""
        if isinstance(exc, asyncio.CancelledError | GeneratorExit):
            return await self.store(db, QuestionStatus.CANCELLED, error=CLIENT_LEFT)
        return await self.store(db, QuestionStatus.FAILED, error=INTERNAL_ERROR)


async def _despite_cancellation(work: Awaitable[T]) -> T:
    """Finish `work` even though the caller is being cancelled.

    The shielded scope covers cancellation by a task group (the client left);
    asyncio.shield covers a plain task.cancel(), letting the work finish in the
    background while the cancellation goes on.
    """
    task = asyncio.ensure_future(work)
    _background.add(task)
    task.add_done_callback(_background.discard)
    with anyio.CancelScope(shield=True):
        result = await asyncio.shield(task)
    return result


def _params(data: QuestionCreate, settings: Settings) -> ChatParams:
    return ChatParams(
        content=data.content,
        max_tokens=data.max_tokens or settings.llm_default_max_tokens,
        temperature=data.temperature,
    )


async def _begin(
    db: Database,
    llm: ChatClient,
    settings: Settings,
    user_id: int,
    data: QuestionCreate,
) -> tuple[ChatParams, _Attempt]:
    """The upstream call's parameters, and the attempt holding the most the
    question can cost from the quota; raises QuotaExceeded (429) instead."""
    params = _params(data, settings)
    bound = quota.prompt_bound(params.content, settings.llm_system_prompt)
    async with db.write() as session:
        reservation = await quota.reserve(
            session=session,
            user_id=user_id,
            tokens=params.max_tokens + bound,
            default_quota=settings.daily_token_quota,
        )
    attempt = _Attempt(
        user_id=user_id,
        content=data.content,
        model=llm.model,
        reservation=reservation,
    )
    return params, attempt


def _http_error(exc: UpstreamError, question: Question) -> Exception:
    detail = f"{exc.detail} (question {question.id} was stored as failed)"
    if isinstance(exc, UpstreamBusy):
        return UpstreamUnavailable(detail, headers=retry_after_header(exc))
    if isinstance(exc, UpstreamTimeout):
        return UpstreamTimedOut(detail)
    return UpstreamFailed(detail)


async def ask(
    *,
    db: Database,
    llm: ChatClient,
    settings: Settings,
    user_id: int,
    data: QuestionCreate,
) -> Question:
    params, attempt = await _begin(db, llm, settings, user_id, data)
    try:
        completion = await llm.complete(params)
    except UpstreamError as exc:
        question = await attempt.store(db, QuestionStatus.FAILED, error=exc.detail)
        raise _http_error(exc, question) from None
    except BaseException as exc:
        await _despite_cancellation(attempt.store_interrupted(db, exc))
        raise
    attempt.parts.append(completion.text)
    return await attempt.store(
        db,
        QuestionStatus.ANSWERED,
        usage=completion.usage,
        model=completion.model,
        # A JSON answer cannot be counted here: without usage, it keeps its
        # whole max_tokens.
        unreported_completion=params.max_tokens,
    )


async def ask_streaming(
    *,
    db: Database,
    llm: ChatClient,
    settings: Settings,
    user_id: int,
    data: QuestionCreate,
) -> AsyncGenerator[dict[str, Any]]:
    """Reserve the question's tokens, then return its SSE payloads.

    Awaited before the response starts, so a question over quota is a plain 429
    rather than a stream that fails.
    """
    params, attempt = await _begin(db, llm, settings, user_id, data)
    return _stream(db=db, llm=llm, params=params, attempt=attempt)


async def _stream(
    *, db: Database, llm: ChatClient, params: ChatParams, attempt: _Attempt
) -> AsyncGenerator[dict[str, Any]]:
    """SSE payloads: deltas, then one `done` (with the stored question) or `error`."""
    end = StreamEnd(model=llm.model, usage=Usage(None, None))
    try:
        # aclosing: if the client leaves between two deltas, the upstream
        # request is closed now, not whenever the generator is collected.
        async with aclosing(llm.stream(params)) as events:
            async for event in events:
                if isinstance(event, Delta):
                    attempt.parts.append(event.text)
                    yield {"type": "delta", "text": event.text}
                else:
                    end = event
    except UpstreamError as exc:
        question = await attempt.store(db, QuestionStatus.FAILED, error=exc.detail)
        yield {"type": "error", "detail": exc.detail, "question_id": question.id}
        return
    except BaseException as exc:  # the client left (cancelled, or closed at a yield)
        await _despite_cancellation(attempt.store_interrupted(db, exc))
        raise
    question = await attempt.store(
        db, QuestionStatus.ANSWERED, usage=end.usage, model=end.model
    )
    yield {
        "type": "done",
        "question": QuestionRead.of(question).model_dump(mode="json"),
    }


async def get_question(*, session: AsyncSession, question_id: int) -> Question | None:
    return await session.get(Question, question_id)


async def delete_question(*, session: AsyncSession, question: Question) -> None:
    await session.delete(question)


async def list_for_user(
    *, session: AsyncSession, user_id: int, limit: int, before_id: int | None
) -> Sequence[Question]:
    query = select(Question).where(Question.user_id == user_id)
    if before_id is not None:
        query = query.where(Question.id < before_id)
    rows = await session.scalars(query.order_by(Question.id.desc()).limit(limit))
    return rows.all()


async def list_all(
    *, session: AsyncSession, user_id: int | None, limit: int, offset: int
) -> tuple[Sequence[Question], int]:
    query = select(Question)
    if user_id is not None:
        query = query.where(Question.user_id == user_id)
    total = await session.scalar(select(func.count()).select_from(query.subquery()))
    rows = await session.scalars(
        query.order_by(Question.id.desc()).limit(limit).offset(offset)
    )
    return rows.all(), total or 0
