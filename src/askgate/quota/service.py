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
Reserving costs the batch three statements (the day's rows made if missing, the
counters read under a lock, the reservations added); settling, one upsert of
what the questions cost and, under a quota, two more (the reservations
subtracted, the emptied and stale ones deleted).

The limit is the user's `daily_token_quota` when an admin set one (0: unlimited
for that user), else ASKGATE_DAILY_TOKEN_QUOTA (0: unlimited). Days are UTC; a
question counts on the day it started.

A process that dies mid-question cannot settle it. So reservations are kept per
time window (`quota_reservations`: one row per user, day and WINDOW_SECONDS of
time), and only the windows younger than the longest a question can run
(`reservation_max_age`) count: a dead process's reservation stops counting
within that age plus one window, while a live question's always counts, since
askgate ends every question before then (ASKGATE_LLM_MAX_QUESTION_SECONDS,
askgate.llm.resilience). Settling deletes the windows it empties and the stale
ones of its user and day, so the table holds little more than what is in flight.
"""

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any, cast

from sqlalchemy import Table, bindparam, delete, func, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession

from askgate.auth.cache import Caller
from askgate.config import Settings
from askgate.db import utcnow
from askgate.errors import TooManyRequests
from askgate.llm.resilience import longest_question_seconds
from askgate.llm.types import Usage
from askgate.quota.models import QuotaReservation, TokenUsage

# Chat templates wrap the question in role markers, and some models add a default
# system prompt (SmolLM2: about 30 tokens around a one-line question).
PROMPT_OVERHEAD_TOKENS = 64
# The width of a reservation's time window: a dead process's reservation stops
# counting at most this long after the others of its age (a divisor of a day, so
# that a window never straddles two days).
WINDOW_SECONDS = 60
# Beyond the longest a question can run: storing it (a group-committed write may
# wait for the one before it), and the clocks of several instances disagreeing.
MARGIN_SECONDS = 60.0
# Statements run with a list of parameter sets use the table (Core executemany),
# not the ORM class (which would mean ORM bulk operations by primary key).
_TABLE = cast(Table, TokenUsage.__table__)
_WINDOWS = cast(Table, QuotaReservation.__table__)


class QuotaExceeded(TooManyRequests):
    """The question does not fit in what is left of the caller's daily quota."""


@dataclass(frozen=True, slots=True)
class Reservation:
    user_id: int
    day: date
    window: int  # the time window it is held in (`window_of`)
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


def reservation_max_age(settings: Settings) -> float:
    """Seconds after which a reservation no longer counts: the longest askgate
    works on a question (askgate.llm.resilience.longest_question_seconds), plus
    MARGIN_SECONDS. Only a process that died can hold one longer."""
    return longest_question_seconds(settings) + MARGIN_SECONDS


def window_of(moment: datetime) -> int:
    return math.floor(moment.timestamp()) // WINDOW_SECONDS


def first_live_window(now: datetime, max_age: float) -> int:
    """The oldest window that still counts: windows that end after now - max_age."""
    return math.floor((now.timestamp() - max_age) / WINDOW_SECONDS)


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
    window: int = 0  # the reservation's time window, when there is one


async def reserve_many(
    *,
    session: AsyncSession,
    requests: Sequence[ReservationRequest],
    max_age: float,
) -> list[Reservation | QuotaExceeded]:
    """Hold each request's tokens of its day's quota, or refuse it (a 429).

    The counters of every user in the batch are read under a lock on their
    day's `token_usage` row (SQLite's write lock, taken by BEGIN IMMEDIATE; row
    locks on PostgreSQL), with what the windows younger than `max_age` hold
    (`reservation_max_age`), decided in order, and written back as increments
    of each request's window, so concurrent batches in any process can never
    reserve past a limit together.
    """
    keys = {(r.user_id, r.requested_at.date()) for r in requests}
    await _ensure_rows(session=session, keys=keys)
    scope = {
        "users": sorted({user_id for user_id, _ in keys}),
        "days": sorted({day for _, day in keys}),
    }
    # Two statements, not one: PostgreSQL evaluates a statement against the
    # snapshot it took before waiting for a row lock, so windows summed in the
    # locking statement would miss what the batch that held the lock had just
    # reserved. The sum is read after the lock is ours, by a new statement.
    rows = await session.execute(_LOCKED, scope)
    held = {(row.user_id, row.day): row.used for row in rows}
    live = first_live_window(utcnow(), max_age)
    for row in await session.execute(_LIVE_BY_DAY, {**scope, "live": live}):
        key = (row.user_id, row.day)
        if key in held:  # users x days may pair a user with another's day
            held[key] += row.reserved
    added = dict.fromkeys(keys, 0)
    windows: dict[tuple[int, date, int], int] = {}
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
        window = window_of(request.requested_at)
        windows[(*key, window)] = windows.get((*key, window), 0) + request.tokens
        outcomes.append(Reservation(request.user_id, key[1], window, request.tokens))
    increments = [
        {"user_id": user_id, "day": day, "window": window, "tokens": tokens}
        for (user_id, day, window), tokens in sorted(windows.items())
        if tokens
    ]
    if increments:
        await session.execute(_statements(session).reserve, increments)
    return outcomes


async def settle_many(
    *, session: AsyncSession, settlements: Sequence[Settlement], max_age: float
) -> None:
    """Release the reservations and count what the questions cost (never more
    than was reserved: the reservation bounds the cost, so only an upstream
    miscounting could report more). One upsert per user and day; under a quota,
    the reservations subtracted from their windows, then the windows emptied or
    older than `max_age` deleted for those users and days.

    The `token_usage` rows are locked first, as when reserving, since the
    windows of a user and day are only written under that lock: a window
    already deleted as stale (a question that outlived `max_age`) is simply
    not found, never made negative.
    """
    totals: dict[tuple[int, date], int] = {}
    releases: dict[tuple[int, date, int], int] = {}
    for item in settlements:
        cost = min(item.cost, item.reserved) if item.reserved else item.cost
        key = (item.user_id, item.day)
        totals[key] = totals.get(key, 0) + cost
        if item.reserved:
            window = (*key, item.window)
            releases[window] = releases.get(window, 0) + item.reserved
    if not totals:
        return
    await session.execute(
        _statements(session).settle,
        [
            {"user_id": user_id, "day": day, "used": used}
            for (user_id, day), used in sorted(totals.items())
        ],
    )
    if not releases:
        return
    await session.execute(
        _RELEASE,
        [
            {"b_user_id": user_id, "b_day": day, "b_window": window, "b_tokens": n}
            for (user_id, day, window), n in sorted(releases.items())
        ],
    )
    live = first_live_window(utcnow(), max_age)
    await session.execute(
        _DROP_SPENT,
        [
            {"b_user_id": user_id, "b_day": day, "b_live": live}
            for user_id, day in sorted({key[:2] for key in releases})
        ],
    )


async def usage_today(
    *, session: AsyncSession, user: Caller, default_quota: int, max_age: float
) -> DailyUsage:
    now = utcnow()
    row = (
        await session.execute(
            _COUNTERS,
            {
                "user_id": user.id,
                "day": now.date(),
                "live": first_live_window(now, max_age),
            },
        )
    ).one()
    used, reserved = row.used or 0, row.reserved
    limit = limit_for(user.daily_token_quota, default_quota)
    return DailyUsage(
        day=now.date(),
        used_tokens=used,
        reserved_tokens=reserved,
        quota=limit,
        remaining=None if limit is None else max(limit - used - reserved, 0),
        resets_at=next_reset(now),
    )


async def counters_by_day(
    *, session: AsyncSession, user_id: int, max_age: float
) -> list[tuple[date, int, int]]:
    """Every UTC day of a user's counters: (day, used, reserved now), oldest first."""
    query = (
        select(
            _TABLE.c.day,
            _TABLE.c.used,
            _live_tokens(_TABLE.c.user_id, _TABLE.c.day).label("reserved"),
        )
        .where(_TABLE.c.user_id == bindparam("user_id"))
        .order_by(_TABLE.c.day)
    )
    live = first_live_window(utcnow(), max_age)
    rows = await session.execute(query, {"user_id": user_id, "live": live})
    return [(row.day, row.used or 0, row.reserved) for row in rows]


def _live_tokens(user_id: Any, day: Any) -> Any:
    """What the live windows of a user's day hold (bound parameter `live`)."""
    return (
        select(func.coalesce(func.sum(_WINDOWS.c.tokens), 0))
        .where(
            _WINDOWS.c.user_id == user_id,
            _WINDOWS.c.day == day,
            _WINDOWS.c.window >= bindparam("live"),
        )
        .scalar_subquery()
    )


# Built once: each statement's SQL is compiled once per engine and then cached.
_LOCKED = (
    select(_TABLE.c.user_id, _TABLE.c.day, _TABLE.c.used)
    .where(
        _TABLE.c.user_id.in_(bindparam("users", expanding=True)),
        _TABLE.c.day.in_(bindparam("days", expanding=True)),
    )
    .order_by(_TABLE.c.user_id, _TABLE.c.day)
    # In key order: concurrent batches cannot deadlock.
    .with_for_update()
)
_LIVE_BY_DAY = (
    select(
        _WINDOWS.c.user_id,
        _WINDOWS.c.day,
        func.sum(_WINDOWS.c.tokens).label("reserved"),
    )
    .where(
        _WINDOWS.c.user_id.in_(bindparam("users", expanding=True)),
        _WINDOWS.c.day.in_(bindparam("days", expanding=True)),
        _WINDOWS.c.window >= bindparam("live"),
    )
    .group_by(_WINDOWS.c.user_id, _WINDOWS.c.day)
)
_COUNTERS = select(
    select(_TABLE.c.used)
    .where(_TABLE.c.user_id == bindparam("user_id"), _TABLE.c.day == bindparam("day"))
    .scalar_subquery()
    .label("used"),
    _live_tokens(bindparam("user_id"), bindparam("day")).label("reserved"),
)
_WINDOW_KEY = (
    _WINDOWS.c.user_id == bindparam("b_user_id"),
    _WINDOWS.c.day == bindparam("b_day"),
)
_RELEASE = (
    update(_WINDOWS)
    .where(*_WINDOW_KEY, _WINDOWS.c.window == bindparam("b_window"))
    .values(tokens=_WINDOWS.c.tokens - bindparam("b_tokens"))
)
_DROP_SPENT = delete(_WINDOWS).where(
    *_WINDOW_KEY,
    or_(_WINDOWS.c.tokens <= 0, _WINDOWS.c.window < bindparam("b_live")),
)


@dataclass(frozen=True, slots=True)
class _Upserts:
    """The INSERT ... ON CONFLICT statements, in one dialect's syntax."""

    ensure_row: Any  # a day's row for a user, if missing
    settle: Any  # add a batch's costs to each user's day
    reserve: Any  # add a batch's reservations to each user's day and window


def _upserts(dialect: Any) -> _Upserts:
    insert = dialect.insert(_TABLE)
    windows = dialect.insert(_WINDOWS)
    return _Upserts(
        ensure_row=insert.on_conflict_do_nothing(index_elements=["user_id", "day"]),
        settle=insert.on_conflict_do_update(
            index_elements=["user_id", "day"],
            set_={"used": _TABLE.c.used + insert.excluded.used},
        ),
        reserve=windows.on_conflict_do_update(
            index_elements=["user_id", "day", "window"],
            set_={"tokens": _WINDOWS.c.tokens + windows.excluded.tokens},
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
        [{"user_id": user_id, "day": day, "used": 0} for user_id, day in sorted(keys)],
    )


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
