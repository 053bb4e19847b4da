"""Asking the LLM and keeping every question.

What one plain question costs, besides the upstream call: the caller check (a
shared read of the auth epoch, askgate.auth.cache; with an API key, at most one
queued last-use write a minute, askgate.api_keys.last_used), and a share of one
group-committed write transaction that locks its user's row, stores the question
and counts its tokens (askgate.questions.ledger). Under a daily quota, also a
share of one group-committed transaction that reserves its tokens before the call.

No database session is open while the LLM works. A failed or cancelled question
is stored too, with whatever part of the answer arrived, and pays for what the
upstream reported or delivered (`_Attempt.cost`). Whatever fails while storing,
the client gets a 502 or an `error` event, and the question is stored as failed
or at least its reservation released (`_Attempt._salvage`).
"""

import logging
import time
from collections.abc import AsyncGenerator, Sequence
from contextlib import aclosing
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from askgate.auth.cache import Caller
from askgate.config import Settings
from askgate.db import utcnow
from askgate.errors import (
    DomainError,
    UpstreamFailed,
    UpstreamTimedOut,
    UpstreamUnavailable,
)
from askgate.llm.errors import (
    UpstreamBusy,
    UpstreamError,
    UpstreamTimeout,
    retry_after_header,
)
from askgate.llm.types import ChatClient, ChatParams, Delta, StreamEnd, Usage
from askgate.questions.ledger import AccountDeleted, Ledger
from askgate.questions.models import Question, QuestionStatus
from askgate.questions.schemas import QuestionCreate, QuestionRead
from askgate.quota import service as quota

logger = logging.getLogger("askgate.questions")

CLIENT_LEFT = "The client disconnected before the answer was complete"
INTERNAL_ERROR = "askgate failed while answering; see its logs"
STORE_FAILED = "askgate could not store the answer; see its logs"
NO_USAGE = Usage(None, None)


class StoreFailed(UpstreamFailed):
    """The answer could not be stored (a 502, or a stream's `error` event)."""


@dataclass
class _Attempt:
    """One question in flight, until it is stored."""

    user_id: int
    api_key_id: int | None  # the key that asked; None: a login
    content: str
    model: str
    max_tokens: int
    prompt_estimate: int  # at most what the prompt costs (quota.prompt_bound)
    streaming: bool
    reservation: quota.Reservation | None  # None: no quota applies
    created_at: datetime = field(default_factory=utcnow)
    started: float = field(default_factory=time.monotonic)
    parts: list[str] = field(default_factory=list)

    def cost(self, status: QuestionStatus, usage: Usage) -> int:
        """What the question is charged: what the upstream reported, and an
        estimate that errs high (quota.token_bound) for what it did not.

        A plain question whose client left keeps its whole bound (its
        reservation): the upstream received it and may have answered in full.
        A stream pays for its prompt and the text delivered so far. A failure
        before any answer arrived costs nothing.
        """
        if status is QuestionStatus.CANCELLED and not self.streaming:
            return self.prompt_estimate + self.max_tokens
        if status is QuestionStatus.FAILED and not self.parts:
            return quota.spent(usage, prompt_estimate=0, answer_estimate=0)
        # The upstream was told to stop at max_tokens.
        answer = min(quota.token_bound("".join(self.parts)), self.max_tokens)
        return quota.spent(
            usage, prompt_estimate=self.prompt_estimate, answer_estimate=answer
        )

    def _settlement(self, cost: int) -> quota.Settlement:
        reservation = self.reservation
        return quota.Settlement(
            user_id=self.user_id,
            day=reservation.day if reservation else self.created_at.date(),
            cost=cost,
            reserved=reservation.tokens if reservation else 0,
        )

    async def store(
        self,
        ledger: Ledger,
        status: QuestionStatus,
        *,
        error: str | None = None,
        usage: Usage = NO_USAGE,
        model: str | None = None,
    ) -> QuestionRead:
        """Store the question and settle its tokens in one transaction.

        Raises AccountDeleted (the question went with its user) or StoreFailed
        (see `_salvage`). Once submitted, the write completes even if this call
        is cancelled.
        """
        row = {
            "user_id": self.user_id,
            "api_key_id": self.api_key_id,
            "content": self.content,
            "answer": "".join(self.parts) if self.parts else None,
            "model": model or self.model,
            "status": status,
            "error": error,
            "prompt_tokens": usage.prompt_tokens,
            "completion_tokens": usage.completion_tokens,
            "latency_ms": round((time.monotonic() - self.started) * 1000),
            "created_at": self.created_at,
        }
        settlement = self._settlement(self.cost(status, usage))
        try:
            question_id = await ledger.store(row, settlement)
        except AccountDeleted:
            raise
        except Exception:
            logger.exception("Storing a question of user %d failed", self.user_id)
            raise await self._salvage(ledger, row, settlement) from None
        return QuestionRead.stored(question_id, row)

    async def _salvage(
        self, ledger: Ledger, row: dict[str, Any], settlement: quota.Settlement
    ) -> DomainError:
        """After a failed store: the question stored as failed, without the
        upstream's numbers; failing that, its tokens settled alone, so that its
        reservation is not held all day. Returns the error to answer."""
        failed = {
            **row,
            "status": QuestionStatus.FAILED,
            "error": STORE_FAILED,
            "prompt_tokens": None,
            "completion_tokens": None,
        }
        try:
            question_id = await ledger.store(failed, settlement)
            return StoreFailed(
                f"{STORE_FAILED} (question {question_id} was stored as failed)"
            )
        except AccountDeleted as exc:
            return exc
        except Exception:
            logger.exception("Storing the question as failed failed too")
        try:
            await ledger.settle(settlement)
        except Exception:
            logger.exception(
                "Settling the question's tokens failed: its reservation is "
                "released with its day"
            )
        return StoreFailed(f"{STORE_FAILED} (the question was not kept)")

    async def store_interrupted(self, ledger: Ledger, exc: BaseException) -> None:
        """Keep what arrived when the work stopped for a reason other than the
        upstream: the client leaving (cancelled) or a bug here (failed). Nobody
        waits for the outcome: a question not kept is only logged."""
        try:
            if isinstance(exc, Exception):
                await self.store(ledger, QuestionStatus.FAILED, error=INTERNAL_ERROR)
            else:
                await self.store(ledger, QuestionStatus.CANCELLED, error=CLIENT_LEFT)
        except DomainError:
            pass


def _params(data: QuestionCreate, settings: Settings) -> ChatParams:
    return ChatParams(
        content=data.content,
        max_tokens=data.max_tokens or settings.llm_default_max_tokens,
        temperature=data.temperature,
    )


async def _begin(
    ledger: Ledger,
    llm: ChatClient,
    settings: Settings,
    caller: Caller,
    data: QuestionCreate,
) -> tuple[ChatParams, _Attempt]:
    """The upstream call's parameters, and the attempt holding the most the
    question can cost from the quota; raises QuotaExceeded (429) instead."""
    params = _params(data, settings)
    prompt_estimate = quota.prompt_bound(params.content, settings.llm_system_prompt)
    limit = quota.limit_for(caller.daily_token_quota, settings.daily_token_quota)
    reservation = None
    if limit is not None:
        reservation = await ledger.reserve(
            quota.ReservationRequest(
                user_id=caller.id,
                tokens=params.max_tokens + prompt_estimate,
                limit=limit,
                requested_at=utcnow(),
            )
        )
    attempt = _Attempt(
        user_id=caller.id,
        api_key_id=caller.api_key_id,
        content=data.content,
        model=llm.model,
        max_tokens=params.max_tokens,
        prompt_estimate=prompt_estimate,
        streaming=data.stream,
        reservation=reservation,
    )
    return params, attempt


def _http_error(exc: UpstreamError, question: QuestionRead) -> Exception:
    detail = f"{exc.detail} (question {question.id} was stored as failed)"
    if isinstance(exc, UpstreamBusy):
        return UpstreamUnavailable(detail, headers=retry_after_header(exc))
    if isinstance(exc, UpstreamTimeout):
        return UpstreamTimedOut(detail)
    return UpstreamFailed(detail)


async def ask(
    *,
    ledger: Ledger,
    llm: ChatClient,
    settings: Settings,
    caller: Caller,
    data: QuestionCreate,
) -> QuestionRead:
    params, attempt = await _begin(ledger, llm, settings, caller, data)
    try:
        completion = await llm.complete(params)
    except UpstreamError as exc:
        question = await attempt.store(ledger, QuestionStatus.FAILED, error=exc.detail)
        raise _http_error(exc, question) from None
    except BaseException as exc:
        await attempt.store_interrupted(ledger, exc)
        raise
    attempt.parts.append(completion.text)
    return await attempt.store(
        ledger,
        QuestionStatus.ANSWERED,
        usage=completion.usage,
        model=completion.model,
    )


async def ask_streaming(
    *,
    ledger: Ledger,
    llm: ChatClient,
    settings: Settings,
    caller: Caller,
    data: QuestionCreate,
) -> AsyncGenerator[dict[str, Any]]:
    """Reserve the question's tokens, then return its SSE payloads.

    Awaited before the response starts, so a question over quota is a plain 429
    rather than a stream that fails.
    """
    params, attempt = await _begin(ledger, llm, settings, caller, data)
    return _stream(ledger=ledger, llm=llm, params=params, attempt=attempt)


async def _stream(
    *, ledger: Ledger, llm: ChatClient, params: ChatParams, attempt: _Attempt
) -> AsyncGenerator[dict[str, Any]]:
    """SSE payloads: deltas, then one `done` (with the stored question) or `error`."""
    end = StreamEnd(model=llm.model, usage=NO_USAGE)
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
        yield await _last_event(
            ledger, attempt, QuestionStatus.FAILED, error=exc.detail
        )
        return
    except BaseException as exc:  # the client left (cancelled, or closed at a yield)
        await attempt.store_interrupted(ledger, exc)
        raise
    yield await _last_event(
        ledger, attempt, QuestionStatus.ANSWERED, usage=end.usage, model=end.model
    )


async def _last_event(
    ledger: Ledger,
    attempt: _Attempt,
    status: QuestionStatus,
    *,
    error: str | None = None,
    usage: Usage = NO_USAGE,
    model: str | None = None,
) -> dict[str, Any]:
    """Store the streamed question; the stream's last event says how it ended:
    `done` with the question, or `error` (the upstream failed, or the question
    could not be kept)."""
    try:
        question = await attempt.store(
            ledger, status, error=error, usage=usage, model=model
        )
    except DomainError as exc:
        return {"type": "error", "detail": exc.detail}
    if status is QuestionStatus.FAILED:
        return {"type": "error", "detail": error, "question_id": question.id}
    return {"type": "done", "question": question.model_dump(mode="json")}


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
