"""Asking the LLM and keeping every question.

What one plain question costs, besides the upstream call: the caller check (a
shared read of the auth epoch, askgate.auth.cache; with an API key, at most one
queued last-use write a minute, askgate.api_keys.last_used), and a share of one
group-committed write transaction that locks its user's row, stores the question
(with its text folded for the history's search, askgate.questions.history) and
counts its tokens (askgate.questions.ledger). Under a daily quota, also a
share of one group-committed transaction that reserves its tokens before the call.

No database session is open while the LLM works. A failed or cancelled question
is stored too, with whatever part of the answer arrived, and pays for what the
upstream reported or delivered (`Attempt.cost`). Whatever fails while storing,
the client gets a 502 or an `error` event, and the question is stored as failed
or at least its reservation released (`Attempt._salvage`).

The OpenAI API (askgate.openai_api) asks through the same steps: `open_attempt`,
then `complete` or `relay`, which store the question however it ends.
"""

import logging
import time
from collections.abc import AsyncGenerator
from contextlib import aclosing
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from askgate import metrics
from askgate.auth.cache import Caller
from askgate.config import Settings
from askgate.db import id_param, utcnow
from askgate.errors import (
    DomainError,
    UpstreamFailed,
    UpstreamTimedOut,
    UpstreamUnavailable,
)
from askgate.jsonbytes import dumps
from askgate.llm.errors import (
    UpstreamBusy,
    UpstreamError,
    UpstreamTimeout,
    retry_after_header,
)
from askgate.llm.registry import Model
from askgate.llm.types import (
    ChatClient,
    ChatParams,
    Completion,
    Delta,
    StreamEnd,
    ToolCall,
    Usage,
)
from askgate.questions.history import searchable
from askgate.questions.ledger import AccountDeleted, Ledger
from askgate.questions.models import Question, QuestionStatus
from askgate.questions.schemas import QuestionCreate, QuestionRead
from askgate.quota import service as quota
from askgate.shutdown import CUT_DETAIL, was_cut
from askgate.sse import encode_event

logger = logging.getLogger("askgate.questions")

CLIENT_LEFT = "The client disconnected before the answer was complete"
INTERNAL_ERROR = "askgate failed while answering; see its logs"
STORE_FAILED = "askgate could not store the answer; see its logs"
# The last event of a stream cut by a stop of askgate (askgate.shutdown).
CUT_EVENT = encode_event({"type": "error", "detail": CUT_DETAIL})
NO_USAGE = Usage(None, None)


class StoreFailed(UpstreamFailed):
    """The answer could not be stored (a 502, or a stream's `error` event)."""


@dataclass
class Attempt:
    """One question in flight, until it is stored."""

    user_id: int
    api_key_id: int | None  # the key that asked; None: a login
    content: str
    model: str  # the public name of the model asked
    max_tokens: int
    prompt_estimate: int  # at most what the prompt costs (quota.prompt_bound)
    streaming: bool
    reservation: quota.Reservation | None  # None: no quota applies
    messages: list[dict[str, Any]] | None = None  # the conversation (/v1)
    created_at: datetime = field(default_factory=utcnow)
    started: float = field(default_factory=time.monotonic)
    parts: list[str] = field(default_factory=list)
    # The tool calls answered so far, by index: streamed ones arrive in pieces.
    calls: dict[int, ToolCall] = field(default_factory=dict)

    def add(self, delta: Delta) -> None:
        if delta.text:
            self.parts.append(delta.text)
        for piece in delta.tool_calls:
            _merge_tool_call(self.calls, piece)

    def tool_calls(self) -> list[ToolCall] | None:
        return [self.calls[index] for index in sorted(self.calls)] or None

    def _answer_bound(self) -> int:
        """At most how many tokens the answer so far makes (text and tool calls),
        never more than the upstream was told to make."""
        answer = quota.token_bound("".join(self.parts))
        if self.calls:
            answer += len(dumps(self.tool_calls()))
        return min(answer, self.max_tokens)

    def counted(self, usage: Usage) -> Usage:
        """The usage to report: the upstream's, and an estimate erring high
        (quota.token_bound) for what it did not report."""
        return Usage(
            self.prompt_estimate
            if usage.prompt_tokens is None
            else usage.prompt_tokens,
            self._answer_bound()
            if usage.completion_tokens is None
            else usage.completion_tokens,
        )

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
        if status is QuestionStatus.FAILED and not (self.parts or self.calls):
            return quota.spent(usage, prompt_estimate=0, answer_estimate=0)
        return quota.spent(
            usage,
            prompt_estimate=self.prompt_estimate,
            answer_estimate=self._answer_bound(),
        )

    def _settlement(self, cost: int) -> quota.Settlement:
        reservation = self.reservation
        return quota.Settlement(
            user_id=self.user_id,
            day=reservation.day if reservation else self.created_at.date(),
            cost=cost,
            reserved=reservation.tokens if reservation else 0,
            window=reservation.window if reservation else 0,
        )

    async def store(
        self,
        ledger: Ledger,
        status: QuestionStatus,
        *,
        error: str | None = None,
        usage: Usage = NO_USAGE,
        upstream_model: str | None = None,
    ) -> QuestionRead:
        """Store the question and settle its tokens in one transaction.

        Raises AccountDeleted (the question went with its user) or StoreFailed
        (see `_salvage`). Once submitted, the write completes even if this call
        is cancelled.
        """
        answer = "".join(self.parts) if self.parts else None
        row = {
            "user_id": self.user_id,
            "api_key_id": self.api_key_id,
            "content": self.content,
            "answer": answer,
            "search_text": searchable(self.content, answer),
            "model": self.model,
            "upstream_model": upstream_model,
            "status": status,
            "error": error,
            "messages": self.messages,
            "tool_calls": self.tool_calls(),
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
        metrics.count_question(
            self.model, status.value, usage.prompt_tokens, usage.completion_tokens
        )
        return QuestionRead.stored(question_id, row)

    async def _salvage(
        self, ledger: Ledger, row: dict[str, Any], settlement: quota.Settlement
    ) -> DomainError:
        """After a failed store: the question stored as failed, without the
        upstream's numbers; failing that, its tokens settled alone, so that its
        reservation is not held until it is old enough to stop counting
        (quota.reservation_max_age). Returns the error to answer."""
        failed = {
            **row,
            "status": QuestionStatus.FAILED,
            "error": STORE_FAILED,
            "prompt_tokens": None,
            "completion_tokens": None,
        }
        try:
            question_id = await ledger.store(failed, settlement)
            metrics.count_question(self.model, QuestionStatus.FAILED.value, None, None)
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
                "Settling the question's tokens failed: its reservation stops "
                "counting once it is older than the longest a question can run"
            )
        return StoreFailed(f"{STORE_FAILED} (the question was not kept)")

    async def store_interrupted(self, ledger: Ledger, exc: BaseException) -> None:
        """Keep what arrived when the work stopped for a reason other than the
        upstream: the client leaving or a stop of askgate (cancelled) or a bug
        here (failed). Nobody
        waits for the outcome: a question not kept is only logged."""
        try:
            if isinstance(exc, Exception):
                await self.store(ledger, QuestionStatus.FAILED, error=INTERNAL_ERROR)
            else:
                why = CUT_DETAIL if was_cut() else CLIENT_LEFT
                await self.store(ledger, QuestionStatus.CANCELLED, error=why)
        except DomainError:
            pass


def chat_params(data: QuestionCreate, model: Model, settings: Settings) -> ChatParams:
    """The upstream call's parameters; raises MaxTokensOverLimit (400)."""
    return ChatParams(
        content=data.content,
        max_tokens=model.max_tokens(data.max_tokens, settings.llm_default_max_tokens),
        temperature=data.temperature,
    )


def _merge_tool_call(calls: dict[int, ToolCall], piece: ToolCall) -> None:
    """Add a streamed piece of a tool call to the call it continues (its
    `index`): the id, type and name arrive whole, the arguments in pieces."""
    index = piece.get("index")
    call = calls.setdefault(
        index if type(index) is int else len(calls),
        {"id": "", "type": "function", "function": {"name": "", "arguments": ""}},
    )
    for key in ("id", "type"):
        if isinstance(piece.get(key), str):
            call[key] = piece[key]
    function = piece.get("function")
    if isinstance(function, dict):
        if isinstance(function.get("name"), str):
            call["function"]["name"] = function["name"]
        if isinstance(function.get("arguments"), str):
            call["function"]["arguments"] += function["arguments"]


async def open_attempt(
    *,
    ledger: Ledger,
    model: Model,
    settings: Settings,
    caller: Caller,
    params: ChatParams,
    content: str,
    prompt_estimate: int,
    streaming: bool,
    messages: list[dict[str, Any]] | None = None,
) -> Attempt:
    """The attempt holding the most the question can cost from the quota (its
    max_tokens and `prompt_estimate`); raises QuotaExceeded (429) instead."""
    limit = quota.limit_for(caller.daily_token_quota, settings.daily_token_quota)
    reservation = None
    if limit is not None:
        try:
            reservation = await ledger.reserve(
                quota.ReservationRequest(
                    user_id=caller.id,
                    tokens=params.max_tokens + prompt_estimate,
                    limit=limit,
                    requested_at=utcnow(),
                )
            )
        except quota.QuotaExceeded:
            metrics.REFUSED_QUOTA.inc()
            raise
    return Attempt(
        user_id=caller.id,
        api_key_id=caller.api_key_id,
        content=content,
        model=model.name,
        max_tokens=params.max_tokens,
        prompt_estimate=prompt_estimate,
        streaming=streaming,
        reservation=reservation,
        messages=messages,
    )


async def _begin(
    ledger: Ledger,
    model: Model,
    params: ChatParams,
    settings: Settings,
    caller: Caller,
    stream: bool,
) -> Attempt:
    return await open_attempt(
        ledger=ledger,
        model=model,
        settings=settings,
        caller=caller,
        params=params,
        content=params.content,
        prompt_estimate=quota.prompt_bound(params.content, settings.llm_system_prompt),
        streaming=stream,
    )


def http_error(exc: UpstreamError, question: QuestionRead) -> Exception:
    detail = f"{exc.detail} (question {question.id} was stored as failed)"
    if isinstance(exc, UpstreamBusy):
        return UpstreamUnavailable(detail, headers=retry_after_header(exc))
    if isinstance(exc, UpstreamTimeout):
        return UpstreamTimedOut(detail)
    return UpstreamFailed(detail)


async def ask(
    *,
    ledger: Ledger,
    model: Model,
    params: ChatParams,
    settings: Settings,
    caller: Caller,
) -> QuestionRead:
    attempt = await _begin(ledger, model, params, settings, caller, stream=False)
    question, _ = await complete(
        ledger=ledger, llm=model.client, params=params, attempt=attempt
    )
    return question


async def complete(
    *, ledger: Ledger, llm: ChatClient, params: ChatParams, attempt: Attempt
) -> tuple[QuestionRead, Completion]:
    """Ask for the whole answer and store the question; raises the HTTP error
    of a failed upstream call once the question is stored as failed."""
    try:
        completion = await llm.complete(params)
    except UpstreamError as exc:
        question = await attempt.store(ledger, QuestionStatus.FAILED, error=exc.detail)
        raise http_error(exc, question) from None
    except BaseException as exc:
        await attempt.store_interrupted(ledger, exc)
        raise
    attempt.add(Delta(completion.text, completion.tool_calls))
    question = await attempt.store(
        ledger,
        QuestionStatus.ANSWERED,
        usage=completion.usage,
        upstream_model=completion.model,
    )
    return question, completion


async def ask_streaming(
    *,
    ledger: Ledger,
    model: Model,
    params: ChatParams,
    settings: Settings,
    caller: Caller,
) -> AsyncGenerator[dict[str, Any]]:
    """Reserve the question's tokens, then return its SSE payloads.

    Awaited before the response starts, so a question over quota is a plain 429
    rather than a stream that fails.
    """
    attempt = await _begin(ledger, model, params, settings, caller, stream=True)
    return _stream(ledger=ledger, llm=model.client, params=params, attempt=attempt)


@dataclass(frozen=True, slots=True)
class StreamOutcome:
    """How a relayed stream ended, once its question is stored."""

    usage: Usage  # as the upstream reported it
    finish_reason: str | None
    question: QuestionRead | None  # None: the question could not be kept
    error: str | None  # why it failed (the upstream, or its storage); None: answered


async def relay(
    *, ledger: Ledger, llm: ChatClient, params: ChatParams, attempt: Attempt
) -> AsyncGenerator[Delta | StreamOutcome]:
    """The upstream's deltas as they arrive, then one StreamOutcome.

    Closed or cancelled before its end (the client left), it stores what
    arrived as cancelled, and the upstream request is closed at once.
    """
    end: StreamEnd | None = None  # None: the upstream did not finish
    try:
        # aclosing: if the client leaves between two deltas, the upstream
        # request is closed now, not whenever the generator is collected.
        async with aclosing(llm.stream(params)) as events:
            async for event in events:
                if isinstance(event, Delta):
                    attempt.add(event)
                    yield event
                else:
                    end = event
    except UpstreamError as exc:
        yield await _outcome(ledger, attempt, end, QuestionStatus.FAILED, exc.detail)
        return
    except BaseException as exc:  # the client left (cancelled, or closed at a yield)
        await attempt.store_interrupted(ledger, exc)
        raise
    yield await _outcome(ledger, attempt, end, QuestionStatus.ANSWERED, None)


async def _outcome(
    ledger: Ledger,
    attempt: Attempt,
    end: StreamEnd | None,
    status: QuestionStatus,
    error: str | None,
) -> StreamOutcome:
    usage = end.usage if end else NO_USAGE
    finish_reason = end.finish_reason if end else None
    try:
        question = await attempt.store(
            ledger,
            status,
            error=error,
            usage=usage,
            upstream_model=end.model if end else None,
        )
    except DomainError as exc:
        return StreamOutcome(usage, finish_reason, None, exc.detail)
    return StreamOutcome(usage, finish_reason, question, error)


async def _stream(
    *, ledger: Ledger, llm: ChatClient, params: ChatParams, attempt: Attempt
) -> AsyncGenerator[dict[str, Any]]:
    """SSE payloads: deltas, then one `done` (with the stored question) or
    `error` (the upstream failed, or the question could not be kept)."""
    async with aclosing(
        relay(ledger=ledger, llm=llm, params=params, attempt=attempt)
    ) as events:
        async for event in events:
            if isinstance(event, StreamOutcome):
                yield _last_event(event)
            elif event.text:
                yield {"type": "delta", "text": event.text}


def _last_event(outcome: StreamOutcome) -> dict[str, Any]:
    question = outcome.question
    if question is None:
        return {"type": "error", "detail": outcome.error}
    if outcome.error is not None:
        return {"type": "error", "detail": outcome.error, "question_id": question.id}
    return {"type": "done", "question": question.model_dump(mode="json")}


async def get_question(*, session: AsyncSession, question_id: int) -> Question | None:
    query = select(Question).where(Question.id == id_param(question_id))
    question: Question | None = await session.scalar(query)
    return question


async def delete_question(*, session: AsyncSession, question: Question) -> None:
    await session.delete(question)
