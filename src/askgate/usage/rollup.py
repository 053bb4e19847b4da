"""The daily usage rollup (`usage_daily`), kept in the transaction that stores
the questions (askgate.questions.ledger): a question and its count are committed
together or not at all, so the rollup always equals a recount of `questions`
grouped by user, UTC day and model (the migration 20261204_usage_daily fills it
that way for the questions stored before it).

- A question counts on the UTC day of its `created_at` (when it was asked), the
  day it shows on in the history.
- `questions` counts every stored question, answered, failed or cancelled;
  `failed` those whose status is failed (a cancelled one, whose client left, is
  not a failure); the tokens are what each question recorded, a null as 0.
- Usage is what happened: deleting a question later changes nothing here. The
  rows go with their user.

What it costs a batch of stored questions: one pass in Python summing them per
(user, day, model), and one INSERT ... ON CONFLICT DO UPDATE run with those
sums, in key order (so that concurrent batches on PostgreSQL lock the rows they
share in the same order, and cannot deadlock).
"""

from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any, cast

from sqlalchemy import Table
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession

from askgate.usage.models import UsageDaily

_TABLE = cast(Table, UsageDaily.__table__)
_COUNTERS = ("questions", "failed", "prompt_tokens", "completion_tokens")


def _upsert(dialect: Any) -> Any:
    insert = dialect.insert(_TABLE)
    return insert.on_conflict_do_update(
        index_elements=["user_id", "day", "model"],
        set_={name: _TABLE.c[name] + insert.excluded[name] for name in _COUNTERS},
    )


# Built once per dialect: `excluded` makes new column objects every time.
_UPSERTS = {"postgresql": _upsert(postgresql), "sqlite": _upsert(sqlite)}


@dataclass(slots=True)
class _Sums:
    questions: int = 0
    failed: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0


class Tally:
    """A batch's questions summed per (user, UTC day, model)."""

    __slots__ = ("_sums",)

    def __init__(self) -> None:
        self._sums: dict[tuple[int, date, str], _Sums] = {}

    def add(
        self,
        *,
        user_id: int,
        created_at: datetime,
        model: str,
        failed: bool,
        prompt_tokens: int | None,
        completion_tokens: int | None,
    ) -> None:
        key = (user_id, created_at.astimezone(UTC).date(), model)
        sums = self._sums.get(key)
        if sums is None:
            sums = self._sums[key] = _Sums()
        sums.questions += 1
        sums.failed += failed
        sums.prompt_tokens += prompt_tokens or 0
        sums.completion_tokens += completion_tokens or 0

    def __bool__(self) -> bool:
        return bool(self._sums)

    def rows(self) -> list[dict[str, Any]]:
        """The increments, one per key, in key order."""
        return [
            {
                "user_id": user_id,
                "day": day,
                "model": model,
                "questions": sums.questions,
                "failed": sums.failed,
                "prompt_tokens": sums.prompt_tokens,
                "completion_tokens": sums.completion_tokens,
            }
            for (user_id, day, model), sums in sorted(self._sums.items())
        ]


async def record(*, session: AsyncSession, tally: Tally) -> None:
    """Add the tally to the rollup, in the caller's transaction."""
    if tally:
        statement = _UPSERTS[session.get_bind().dialect.name]
        await session.execute(statement, tally.rows())
