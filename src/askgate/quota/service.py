"""The daily token quota: reserve before asking the LLM, settle afterwards.

A question first reserves an upper bound of its cost (its max_tokens plus a bound
on its prompt) with one conditional UPDATE, so concurrent requests and worker
processes can never reserve past the limit together. When the question ends, the
reservation is replaced by what it really cost, never more than was reserved: the
day's total stays within the quota whatever the upstream reports.

The limit is the user's `daily_token_quota` when an admin set one (0: unlimited
for that user), else ASKGATE_DAILY_TOKEN_QUOTA (0: unlimited). Days are UTC; a
question counts on the day it started. A reservation left behind by a crashed
process is released with its day.
"""

import math
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta

from sqlalchemy import select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession

from askgate.db import utcnow
from askgate.errors import TooManyRequests
from askgate.llm.types import Usage
from askgate.quota.models import TokenUsage
from askgate.users.models import User

# Chat templates wrap the question in role markers, and some models add a default
# system prompt (SmolLM2: about 30 tokens around a one-line question).
PROMPT_OVERHEAD_TOKENS = 64


class QuotaExceeded(TooManyRequests):
    """The question does not fit in what is left of the caller's daily quota."""


@dataclass(frozen=True, slots=True)
class Reservation:
    user_id: int
    day: date
    tokens: int


@dataclass(frozen=True, slots=True)
class DailyUsage:
    day: date
    used_tokens: int
    reserved_tokens: int
    quota: int | None
    remaining: int | None
    resets_at: datetime


def limit_for(override: int | None, default: int) -> int | None:
    """The user's daily limit; None when unlimited."""
    limit = default if override is None else override
    return limit or None


def prompt_bound(content: str, system_prompt: str) -> int:
    # Byte-level tokenizers (GPT, Llama, SmolLM2...) never make more tokens than
    # there are bytes, so this bounds the prompt without knowing the tokenizer.
    return len(content.encode()) + len(system_prompt.encode()) + PROMPT_OVERHEAD_TOKENS


def spent(usage: Usage | None, *, unreported_completion: int) -> int:
    """What a question cost: the tokens the upstream reported, and for an answer
    whose length it did not report, `unreported_completion` (the deltas
    delivered, for a stream)."""
    prompt = usage.prompt_tokens if usage else None
    completion = usage.completion_tokens if usage else None
    if completion is None:
        completion = unreported_completion
    return (prompt or 0) + completion


def next_reset(now: datetime) -> datetime:
    return datetime.combine(now.date() + timedelta(days=1), time(), tzinfo=UTC)


async def reserve(
    *, session: AsyncSession, user_id: int, tokens: int, default_quota: int
) -> Reservation:
    """Hold `tokens` of today's quota, or raise QuotaExceeded (a 429)."""
    now = utcnow()
    day = now.date()
    await _ensure_row(session=session, user_id=user_id, day=day)
    override = await session.scalar(
        select(User.daily_token_quota).where(User.id == user_id)
    )
    limit = limit_for(override, default_quota)
    query = (
        update(TokenUsage)
        .where(TokenUsage.user_id == user_id, TokenUsage.day == day)
        .values(reserved=TokenUsage.reserved + tokens)
        .execution_options(synchronize_session=False)
    )
    if limit is not None:
        query = query.where(TokenUsage.used + TokenUsage.reserved + tokens <= limit)
    result = await session.execute(query)
    if result.rowcount == 0:  # type: ignore[attr-defined]
        assert limit is not None
        used, reserved = await _counters(session=session, user_id=user_id, day=day)
        raise _exceeded(
            now=now,
            limit=limit,
            remaining=max(limit - used - reserved, 0),
            needed=tokens,
        )
    return Reservation(user_id=user_id, day=day, tokens=tokens)


async def settle(
    *, session: AsyncSession, reservation: Reservation, tokens: int
) -> None:
    """Replace the reservation by what the question cost (at most the reservation:
    it bounds the cost, so only an upstream miscounting could report more)."""
    await session.execute(
        update(TokenUsage)
        .where(
            TokenUsage.user_id == reservation.user_id,
            TokenUsage.day == reservation.day,
        )
        .values(
            reserved=TokenUsage.reserved - reservation.tokens,
            used=TokenUsage.used + min(tokens, reservation.tokens),
        )
        .execution_options(synchronize_session=False)
    )


async def usage_today(
    *, session: AsyncSession, user: User, default_quota: int
) -> DailyUsage:
    now = utcnow()
    used, reserved = await _counters(session=session, user_id=user.id, day=now.date())
    limit = limit_for(user.daily_token_quota, default_quota)
    return DailyUsage(
        day=now.date(),
        used_tokens=used,
        reserved_tokens=reserved,
        quota=limit,
        remaining=None if limit is None else max(limit - used - reserved, 0),
        resets_at=next_reset(now),
    )


async def _ensure_row(*, session: AsyncSession, user_id: int, day: date) -> None:
    # INSERT ... ON CONFLICT DO NOTHING: two first questions of the day, in any
    # two processes, both end up updating the one row.
    dialect = postgresql if session.get_bind().dialect.name == "postgresql" else sqlite
    await session.execute(
        dialect.insert(TokenUsage)
        .values(user_id=user_id, day=day, reserved=0, used=0)
        .on_conflict_do_nothing(index_elements=["user_id", "day"])
    )


async def _counters(
    *, session: AsyncSession, user_id: int, day: date
) -> tuple[int, int]:
    row = (
        await session.execute(
            select(TokenUsage.used, TokenUsage.reserved).where(
                TokenUsage.user_id == user_id, TokenUsage.day == day
            )
        )
    ).one_or_none()
    return (row.used, row.reserved) if row else (0, 0)


def _exceeded(
    *, now: datetime, limit: int, remaining: int, needed: int
) -> QuotaExceeded:
    if needed > limit:
        detail = (
            f"This question may need up to {needed} tokens (max_tokens plus its "
            f"length), more than your whole daily quota of {limit}: lower "
            "max_tokens or shorten the question."
        )
    else:
        detail = (
            f"Daily token quota exceeded: {remaining} of {limit} tokens left today, "
            f"and this question may need up to {needed} (max_tokens plus its "
            "length). The quota resets at 00:00 UTC."
        )
    seconds = math.ceil((next_reset(now) - now).total_seconds())
    return QuotaExceeded(detail, headers={"Retry-After": str(max(seconds, 1))})
