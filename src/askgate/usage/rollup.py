"""The daily usage rollups, kept in the transaction that stores the questions
(askgate.questions.ledger): a question and its counts are committed together or
not at all, so `usage_daily` always equals a recount of `questions` grouped by
user, UTC day and model, and `usage_user_daily` grouped by user and UTC day (the
migration 20261204_usage_daily fills both that way for the questions stored
before it).

- A question counts on the UTC day of its `created_at` (when it was asked), the
  day it shows on in the history.
- `questions` counts every stored question, answered, failed or cancelled;
  `failed` those whose status is failed (a cancelled one, whose client left, is
  not a failure); the tokens are what each question recorded, a null as 0.
- Usage is what happened: deleting a question later changes nothing here. The
  rows go with their user.

What it costs a batch of stored questions: one pass in Python summing them per
(user, day, model), then per (user, day), and for each table one INSERT ... ON
CONFLICT DO UPDATE run with those sums, in key order (so that concurrent batches
on PostgreSQL lock the rows they share in the same order, and cannot deadlock).
"""

from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any, cast

from sqlalchemy import Table
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession

from askgate.usage.models import UsageDaily, UserUsageDaily

_COUNTERS = ("questions", "failed", "prompt_tokens", "completion_tokens")


def _upsert(dialect: Any, model: type[UsageDaily | UserUsageDaily]) -> Any:
    table = cast(Table, model.__table__)
    insert = dialect.insert(table)
    return insert.on_conflict_do_update(
        index_elements=[column.name for column in table.primary_key],
        set_={name: table.c[name] + insert.excluded[name] for name in _COUNTERS},
    )


# Built once per dialect: `excluded` makes new column objects every time.
_UPSERTS = {
    dialect.dialect.name: (
        _upsert(dialect, UsageDaily),
        _upsert(dialect, UserUsageDaily),
    )
    for dialect in (postgresql, sqlite)
}


@dataclass(slots=True)
class _Sums:
    questions: int = 0
    failed: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0

    def add(self, other: "_Sums") -> None:
        self.questions += other.questions
        self.failed += other.failed
        self.prompt_tokens += other.prompt_tokens
        self.completion_tokens += other.completion_tokens


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

    def rows(self) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        """The increments of `usage_daily` and of `usage_user_daily`, each in
        key order."""
        by_model = []
        by_user: dict[tuple[int, date], _Sums] = {}
        for (user_id, day, model), sums in sorted(self._sums.items()):
            by_model.append(
                {"user_id": user_id, "day": day, "model": model, **_counts(sums)}
            )
            by_user.setdefault((user_id, day), _Sums()).add(sums)
        return by_model, [
            {"user_id": user_id, "day": day, **_counts(sums)}
            for (user_id, day), sums in by_user.items()
        ]


def _counts(sums: _Sums) -> dict[str, int]:
    return {
        "questions": sums.questions,
        "failed": sums.failed,
        "prompt_tokens": sums.prompt_tokens,
        "completion_tokens": sums.completion_tokens,
    }


async def record(*, session: AsyncSession, tally: Tally) -> None:
    """Add the tally to both rollups, in the caller's transaction."""
    if tally:
        by_model, by_user = _UPSERTS[session.get_bind().dialect.name]
        model_rows, user_rows = tally.rows()
        await session.execute(by_model, model_rows)
        await session.execute(by_user, user_rows)
