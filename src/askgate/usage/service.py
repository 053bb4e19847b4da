"""Reading the daily usage rollup (askgate.usage.rollup keeps it).

Every query reads a rollup (and `users` for the names of the rows it returns),
never `questions`: in `usage_daily`, one user's days are a range of its primary
key (user_id, day, model), everyone's days a range of its index on (day,
user_id, model); the leaderboard adds up `usage_user_daily`, one row per user
and day.
"""

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date
from enum import StrEnum
from typing import Any, TypeAlias

from sqlalchemy import BigInteger, ColumnElement, Row, and_, cast, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from askgate.db import id_param
from askgate.usage.models import UsageDaily, UserUsageDaily
from askgate.users.models import User

# Rows of any columns (SQLAlchemy types a row by its columns).
Rows: TypeAlias = Sequence[Row[*tuple[Any, ...]]]


@dataclass(frozen=True, slots=True)
class Window:
    """The UTC days from `first` to `last`, both included."""

    first: date
    last: date


class Ranking(StrEnum):
    TOKENS = "tokens"
    QUESTIONS = "questions"


_KEY_COLUMNS = (UsageDaily.day, UsageDaily.user_id, UsageDaily.model)  # the order
_COUNTS = (
    UsageDaily.questions,
    UsageDaily.failed,
    UsageDaily.prompt_tokens,
    UsageDaily.completion_tokens,
    (UsageDaily.prompt_tokens + UsageDaily.completion_tokens).label("total_tokens"),
)


def _within(window: Window) -> ColumnElement[bool]:
    return UsageDaily.day.between(window.first, window.last)


async def daily_for_user(
    *, session: AsyncSession, user_id: int, window: Window
) -> Rows:
    """The user's rows in the window, by day then model."""
    query = (
        select(UsageDaily.day, UsageDaily.model, *_COUNTS)
        .where(UsageDaily.user_id == user_id, _within(window))
        .order_by(UsageDaily.day, UsageDaily.model)
    )
    return (await session.execute(query)).all()


async def daily(
    *,
    session: AsyncSession,
    window: Window,
    user_id: int | None,
    model: str | None,
    limit: int,
    offset: int,
) -> tuple[Rows, int]:
    """A page of every user's rows in the window (by day, user, model), and
    how many there are in all."""
    conditions = [_within(window)]
    if user_id is not None:
        conditions.append(UsageDaily.user_id == id_param(user_id))
    if model is not None:
        conditions.append(UsageDaily.model == model)
    total = await session.scalar(
        select(func.count()).select_from(UsageDaily).where(*conditions)
    )
    # The page's keys first, from the index on (day, user_id, model) alone:
    # skipping `offset` rows then reads no row nor user (reading them made a
    # deep page ~20 times slower at 200,000 rows on SQLite).
    keys = _KEY_COLUMNS
    page = (
        select(*keys)
        .where(*conditions)
        .order_by(*keys)
        .limit(limit)
        .offset(offset)
        .subquery()
    )
    query = (
        select(
            UsageDaily.day,
            UsageDaily.user_id,
            User.username,
            UsageDaily.model,
            *_COUNTS,
        )
        .join(page, and_(*(key == page.c[key.key] for key in keys)))
        .join(User, User.id == UsageDaily.user_id)
        .order_by(*keys)
    )
    return (await session.execute(query)).all(), total or 0


def _sum(column: Any) -> ColumnElement[int]:
    # PostgreSQL sums a BIGINT as NUMERIC: back to an integer.
    return cast(func.sum(column), BigInteger)


async def leaderboard(
    *, session: AsyncSession, window: Window, by: Ranking, limit: int
) -> Rows:
    """The `limit` users with the most tokens (or questions) in the window,
    with their totals; ties by user id. Read from the per-user rollup: one
    row per user and day, however many models they asked."""
    questions = _sum(UserUsageDaily.questions).label("questions")
    prompt = _sum(UserUsageDaily.prompt_tokens).label("prompt_tokens")
    completion = _sum(UserUsageDaily.completion_tokens).label("completion_tokens")
    measure = questions if by is Ranking.QUESTIONS else prompt + completion
    top = (
        select(
            UserUsageDaily.user_id,
            questions,
            _sum(UserUsageDaily.failed).label("failed"),
            prompt,
            completion,
            measure.label("measure"),
        )
        .where(UserUsageDaily.day.between(window.first, window.last))
        .group_by(UserUsageDaily.user_id)
        .order_by(measure.desc(), UserUsageDaily.user_id)
        .limit(limit)
        .subquery()
    )
    query = (
        select(
            top.c.user_id,
            User.username,
            top.c.questions,
            top.c.failed,
            top.c.prompt_tokens,
            top.c.completion_tokens,
            (top.c.prompt_tokens + top.c.completion_tokens).label("total_tokens"),
        )
        .join(User, User.id == top.c.user_id)
        .order_by(top.c.measure.desc(), top.c.user_id)
    )
    return (await session.execute(query)).all()
