"""Rows written straight into the database, for what the API cannot make in a
test's time (a question asked months ago, thousands of questions), and reading
whole tables back."""

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import insert, select, update

from askgate.db import Base, Database, utcnow
from askgate.models import Question, QuestionStatus
from askgate.questions.history import searchable


async def insert_questions(
    db: Database, user_id: int, created: Sequence[datetime], *, tag: str = "old"
) -> list[int]:
    """One answered question per creation time, in that order; their ids."""
    rows = [
        {
            "user_id": user_id,
            "content": f"{tag} question {n}",
            "answer": f"{tag} answer {n}",
            "search_text": searchable(f"{tag} question {n}", f"{tag} answer {n}"),
            "model": "fake-model",
            "upstream_model": "fake-model",
            "status": QuestionStatus.ANSWERED,
            "prompt_tokens": 3,
            "completion_tokens": 4,
            "latency_ms": 5,
            "created_at": at,
        }
        for n, at in enumerate(created)
    ]
    ids = []
    async with db.write() as session:
        for row in rows:  # one by one: ids in the order given on every backend
            result = await session.execute(
                insert(Question).values(row).returning(Question.id)
            )
            ids.append(result.scalar_one())
    return ids


def days_ago(days: float, now: datetime | None = None) -> datetime:
    return (now or utcnow()) - timedelta(days=days)


async def backdate_questions(db: Database, user_id: int, days: float) -> None:
    """Every question of the user, as if asked `days` days ago."""
    async with db.write() as session:
        await session.execute(
            update(Question)
            .where(Question.user_id == user_id)
            .values(created_at=days_ago(days))
        )


async def question_ids(db: Database) -> set[int]:
    async with db.read() as session:
        return set((await session.scalars(select(Question.id))).all())


Rows = dict[tuple[Any, ...], dict[str, Any]]


async def snapshot(db: Database) -> dict[str, Rows]:
    """Every row of every table of the metadata: table name -> primary key ->
    the row's columns."""
    tables: dict[str, Rows] = {}
    async with db.read() as session:
        for table in Base.metadata.sorted_tables:
            key = [column.name for column in table.primary_key.columns]
            rows = (await session.execute(select(table))).mappings()
            tables[table.name] = {
                tuple(row[name] for name in key): dict(row) for row in rows
            }
    return tables
