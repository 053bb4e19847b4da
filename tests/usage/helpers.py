"""What the usage tests share: two models, a calendar for the days questions
are kept on, and the recount of the rollup from the stored questions."""

import json
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import ColumnElement, Date, case, cast, func, literal_column, select

from askgate.config import Settings
from askgate.db import Database, utcnow
from askgate.questions.ledger import Ledger
from askgate.questions.models import Question, QuestionStatus
from askgate.usage.models import UsageDaily, UserUsageDaily
from tests.fake_upstream import FakeUpstream


class Calendar:
    """Questions stored while `days_ago` is set are kept as asked that many days
    earlier: their `created_at` moves back, as if the clock had read that day
    (the rollup counts what is stored)."""

    def __init__(self, ledger: Ledger, monkeypatch: pytest.MonkeyPatch) -> None:
        self.days_ago = 0
        original = ledger.store

        async def store(row: dict[str, Any], settlement: Any) -> int:
            moved = row["created_at"] - timedelta(days=self.days_ago)
            return await original({**row, "created_at": moved}, settlement)

        monkeypatch.setattr(ledger, "store", store)

    @staticmethod
    def day(days_ago: int = 0) -> date:
        return utcnow().date() - timedelta(days=days_ago)


def two_models(
    settings: Settings, directory: Path, alpha: FakeUpstream, beta: FakeUpstream
) -> Settings:
    """Models "alpha" (the default) and "beta", each on its own upstream, with
    no retries nor fallbacks: a failing upstream fails the question."""
    models = directory / "models.json"
    entries = [
        {"name": name, "base_url": upstream.base_url, "api_key": "", "model": name}
        for name, upstream in (("alpha", alpha), ("beta", beta))
    ]
    models.write_text(json.dumps({"models": entries}))
    return settings.model_copy(
        update={
            "llm_base_url": None,
            "llm_model": None,
            "models_file": models,
            "llm_max_retries": 0,
        }
    )


Counts = tuple[int, date, str, int, int, int, int]  # user, day, model, counts


def _utc_day(dialect: str) -> ColumnElement[Any]:
    if dialect == "postgresql":
        return cast(literal_column("questions.created_at AT TIME ZONE 'UTC'"), Date)
    return func.date(Question.created_at)


async def recount(db: Database) -> list[Counts]:
    """The rollup as a GROUP BY over every stored question would make it."""
    async with db.read() as session:
        day = _utc_day(session.get_bind().dialect.name).label("day")
        failed = case((Question.status == QuestionStatus.FAILED, 1), else_=0)
        rows = await session.execute(
            select(
                Question.user_id,
                day,
                Question.model,
                func.count(),
                func.sum(failed),
                func.coalesce(func.sum(Question.prompt_tokens), 0),
                func.coalesce(func.sum(Question.completion_tokens), 0),
            )
            .group_by(Question.user_id, day, Question.model)
            .order_by(Question.user_id, day, Question.model)
        )
        return [_counts(row) for row in rows]


async def rollup(db: Database) -> list[Counts]:
    async with db.read() as session:
        rows = await session.execute(
            select(
                UsageDaily.user_id,
                UsageDaily.day,
                UsageDaily.model,
                UsageDaily.questions,
                UsageDaily.failed,
                UsageDaily.prompt_tokens,
                UsageDaily.completion_tokens,
            ).order_by(UsageDaily.user_id, UsageDaily.day, UsageDaily.model)
        )
        return [_counts(row) for row in rows]


UserCounts = tuple[int, date, int, int, int, int]  # user, day, counts


def per_user(counts: list[Counts]) -> list[UserCounts]:
    """The counts added up per user and day, all models together."""
    totals: dict[tuple[int, date], list[int]] = {}
    for user_id, day, _model, *numbers in counts:
        total = totals.setdefault((user_id, day), [0, 0, 0, 0])
        for index, number in enumerate(numbers):
            total[index] += number
    return [(u, d, *numbers) for (u, d), numbers in sorted(totals.items())]  # type: ignore[misc]


async def user_rollup(db: Database) -> list[UserCounts]:
    async with db.read() as session:
        rows = await session.execute(
            select(
                UserUsageDaily.user_id,
                UserUsageDaily.day,
                UserUsageDaily.questions,
                UserUsageDaily.failed,
                UserUsageDaily.prompt_tokens,
                UserUsageDaily.completion_tokens,
            ).order_by(UserUsageDaily.user_id, UserUsageDaily.day)
        )
        return [(u, d, *numbers) for u, d, *numbers in rows]  # type: ignore[misc]


def _counts(row: Any) -> Counts:
    user_id, day, model, *numbers = row
    # SQLite's date() is text; PostgreSQL's sums are NUMERIC.
    return (
        user_id,
        day if isinstance(day, date) else date.fromisoformat(day),
        model,
        *(int(n) for n in numbers),
    )


def rows_of(body: list[dict[str, Any]], *keys: str) -> list[tuple[Any, ...]]:
    return [tuple(row[key] for key in keys) for row in body]
