"""The daily token quota: reserve before asking the LLM, settle afterwards.

A question under a quota first reserves an upper bound of its cost (its
max_tokens plus a bound on its prompt), decided under a lock on the day's counter,
so concurrent requests and worker processes can never reserve past the limit
together. When the question ends, the reservation is replaced by what it really
cost, never more than was reserved: the day's total stays within the quota
whatever the upstream reports. A question with no quota reserves nothing; its
cost is still counted when it ends (GET /users/me/usage).

What a question costs is what the upstream reported. What it did not report (or
reported implausibly) is estimated from the text, erring high (`token_bound`):
the prompt's UTF-8 bytes plus PROMPT_OVERHEAD_TOKENS, and the answer's UTF-8
bytes, at most max_tokens. A plain question whose client left keeps its whole
reservation (the upstream got it); a cancelled stream pays for its prompt and
the text delivered (askgate.questions.service).

Both steps work on batches (askgate.group_commit): one transaction reserves for
every question that arrived meanwhile, another settles every question that ended.

The limit is the user's `daily_token_quota` when an admin set one (0: unlimited
for that user), else ASKGATE_DAILY_TOKEN_QUOTA (0: unlimited). Days are UTC; a
question counts on the day it started. A reservation left behind by a crashed
process is released with its day.
"""

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any, cast

from sqlalchemy import Table, bindparam, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession

from askgate.auth.cache import Caller
from askgate.db import utcnow
from askgate.errors import TooManyRequests
from askgate.llm.types import Usage
from askgate.quota.models import TokenUsage

# Chat templates wrap the question in role markers, and some models add a default
# system prompt (SmolLM2: about 30 tokens around a one-line question).
PROMPT_OVERHEAD_TOKENS = 64
# Statements run with a list of parameter sets use the table (Core executemany),
# not the ORM class (which would mean ORM bulk operations by primary key).
_TABLE = cast(Table, TokenUsage.__table__)


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


def token_bound(text: str) -> int:
    """At most how many tokens `text` makes: its length in UTF-8 bytes.

    Byte-level tokenizers (GPT, Llama 3, SmolLM2...) never make more tokens
    than there are bytes, nor do SentencePiece ones with byte fallback, so this
    errs high without knowing the tokenizer: a character of CJK counts 3, an
    emoji 4.
    """
    return len(text.encode("utf-8", "surrogatepass"))


def prompt_bound(content: str, system_prompt: str) -> int:
    """At most how many tokens the prompt makes: both texts and the chat
    template's markers around them."""
    return token_bound(content) + token_bound(system_prompt) + PROMPT_OVERHEAD_TOKENS


def spent(usage: Usage, *, prompt_estimate: int, answer_estimate: int) -> int:
    """What a question cost: the tokens the upstream reported, and for a part
    it did not report (or reported implausibly, askgate.llm.parsing), the
    estimate given for it."""
    prompt = usage.prompt_tokens
    completion = usage.completion_tokens
    return (prompt_estimate if prompt is None else prompt) + (
        answer_estimate if completion is None else completion
    )


def next_reset(now: datetime) -> datetime:
    return datetime.combine(now.date() + timedelta(days=1), time(), tzinfo=UTC)


@dataclass(frozen=True, slots=True)
class ReservationRequest:
    user_id: int
    tokens: int
    limit: int  # the user's daily limit (an unlimited user reserves nothing)
    requested_at: datetime


@dataclass(frozen=True, slots=True)
class Settlement:
    """What one finished question cost, and the reservation it releases."""

    user_id: int
    day: date
    cost: int
    reserved: int = 0  # 0: the question reserved nothing (no quota applied)


async def reserve_many(
    *, session: AsyncSession, requests: Sequence[ReservationRequest]
) -> list[Reservation | QuotaExceeded]:
    """Hold each request's tokens of its day's quota, or refuse it (a 429).

    The counters of every user in the batch are read under a lock (SQLite's
    write lock, taken by BEGIN IMMEDIATE; row locks on PostgreSQL), decided in
    order, and written back as increments, so concurrent batches in any process
    can never reserve past a limit together.
    """
    keys = {(r.user_id, r.requested_at.date()) for r in requests}
    await _ensure_rows(session=session, keys=keys)
    rows = await session.execute(
        select(TokenUsage.user_id, TokenUsage.day, TokenUsage.used, TokenUsage.reserved)
        .where(
            TokenUsage.user_id.in_({user_id for user_id, _ in keys}),
            TokenUsage.day.in_({day for _, day in keys}),
        )
        .order_by(TokenUsage.user_id, TokenUsage.day)
        .with_for_update()  # in key order, so concurrent batches cannot deadlock
    )
    held = {(row.user_id, row.day): row.used + row.reserved for row in rows}
    added = dict.fromkeys(keys, 0)
    outcomes: list[Reservation | QuotaExceeded] = []
    for request in requests:
        key = (request.user_id, request.requested_at.date())
        taken = held[key] + added[key]
        if taken + request.tokens > request.limit:
            outcomes.append(
                _exceeded(
                    now=request.requested_at,
                    limit=request.limit,
                    remaining=max(request.limit - taken, 0),
                    needed=request.tokens,
                )
            )
            continue
        added[key] += request.tokens
        outcomes.append(Reservation(request.user_id, key[1], request.tokens))
    increments = [
        {"b_user_id": user_id, "b_day": day, "b_tokens": tokens}
        for (user_id, day), tokens in added.items()
        if tokens
    ]
    if increments:
        await session.execute(
            update(_TABLE)
            .where(
                _TABLE.c.user_id == bindparam("b_user_id"),
                _TABLE.c.day == bindparam("b_day"),
            )
            .values(reserved=_TABLE.c.reserved + bindparam("b_tokens")),
            increments,
        )
    return outcomes


async def settle_many(
    *, session: AsyncSession, settlements: Sequence[Settlement]
) -> None:
    """Release the reservations and count what the questions cost (never more
    than was reserved: the reservation bounds the cost, so only an upstream
    miscounting could report more). One upsert per user and day."""
    totals: dict[tuple[int, date], list[int]] = {}
    for item in settlements:
        cost = min(item.cost, item.reserved) if item.reserved else item.cost
        total = totals.setdefault((item.user_id, item.day), [0, 0])
        total[0] += cost
        total[1] += item.reserved
    if not totals:
        return
    await session.execute(
        _statements(session).settle,
        [
            {"user_id": user_id, "day": day, "used": used, "reserved": -released}
            for (user_id, day), (used, released) in sorted(totals.items())
        ],
    )


async def usage_today(
    *, session: AsyncSession, user: Caller, default_quota: int
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


@dataclass(frozen=True, slots=True)
class _Upserts:
    """The two INSERT ... ON CONFLICT statements, in one dialect's syntax."""

    ensure_row: Any  # a day's row for a user, if missing
    settle: Any  # add a batch's costs and releases to each user's day


def _upserts(dialect: Any) -> _Upserts:
    insert = dialect.insert(_TABLE)
    return _Upserts(
        ensure_row=insert.on_conflict_do_nothing(index_elements=["user_id", "day"]),
        settle=insert.on_conflict_do_update(
            index_elements=["user_id", "day"],
            set_={
                "used": _TABLE.c.used + insert.excluded.used,
                "reserved": _TABLE.c.reserved + insert.excluded.reserved,
            },
        ),
    )


# Built once: `excluded` makes new column objects every time it is built.
_UPSERTS = {"postgresql": _upserts(postgresql), "sqlite": _upserts(sqlite)}


def _statements(session: AsyncSession) -> _Upserts:
    return _UPSERTS[session.get_bind().dialect.name]


async def _ensure_rows(
    *, session: AsyncSession, keys: Iterable[tuple[int, date]]
) -> None:
    # INSERT ... ON CONFLICT DO NOTHING: two first questions of the day, in any
    # two processes, both end up updating the one row.
    await session.execute(
        _statements(session).ensure_row,
        [
            {"user_id": user_id, "day": day, "reserved": 0, "used": 0}
            for user_id, day in sorted(keys)
        ],
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
