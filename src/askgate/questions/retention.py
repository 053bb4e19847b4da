"""Question retention: questions older than ASKGATE_QUESTION_RETENTION_DAYS are
deleted by a task of the app (hourly, the first run a minute after start), or
once by `askgate db purge --older-than DAYS`.

One run at a time across every instance and worker: a run holds the database
lock "question-retention" (askgate.db_lock) and a run that finds it taken does
nothing (the holder is deleting the same questions).

A run deletes in batches of `BATCH_SIZE`: the ids of the next batch are read
(walking the primary key from where the last batch ended, so the whole run
reads the table once), then deleted in a short write transaction of their own,
which checks the age again. No write lock is held for longer than one batch, so
on SQLite the questions being stored meanwhile wait for a batch at most.

Only questions go: the usage rollups (askgate.usage) and the quota counters
are separate tables, so every usage total and leaderboard stays as it was.
"""

import asyncio
import logging
from collections.abc import Sequence
from datetime import datetime, timedelta

from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncSession

from askgate.db import Database, utcnow
from askgate.db_lock import try_lock
from askgate.questions.models import Question

logger = logging.getLogger("askgate.retention")

LOCK_NAME = "question-retention"
BATCH_SIZE = 1000
FIRST_RUN_DELAY_SECONDS = 60.0
INTERVAL_SECONDS = 3600.0
# Bounds a retention period (and keeps `now - days` a valid date).
MAX_DAYS = 36_500


async def purge_older_than(*, db: Database, days: int) -> int | None:
    """Delete the questions created more than `days` days ago; how many were
    deleted, or None when another run holds the lock (module doc)."""
    async with try_lock(db.engine, LOCK_NAME) as held:
        if not held:
            return None
        cutoff = utcnow() - timedelta(days=days)
        deleted = 0
        after = 0
        while True:
            async with db.read() as session:
                ids = await _old_ids(session, cutoff=cutoff, after=after)
            if ids:
                async with db.write() as session:
                    result = await session.execute(
                        delete(Question).where(
                            Question.id.in_(ids), Question.created_at < cutoff
                        )
                    )
                deleted += result.rowcount  # type: ignore[attr-defined]
            if len(ids) < BATCH_SIZE:
                return deleted
            after = ids[-1]


async def _old_ids(
    session: AsyncSession, *, cutoff: datetime, after: int
) -> Sequence[int]:
    rows = await session.scalars(
        select(Question.id)
        .where(Question.id > after, Question.created_at < cutoff)
        .order_by(Question.id)
        .limit(BATCH_SIZE)
    )
    return rows.all()


async def keep_for(*, db: Database, days: int) -> None:
    """The app's retention task: a run soon after start, then one an hour,
    until cancelled. A failed run is logged and tried again an hour later."""
    await asyncio.sleep(FIRST_RUN_DELAY_SECONDS)
    while True:
        try:
            deleted = await purge_older_than(db=db, days=days)
        except Exception:
            # Whatever went wrong (the database away, a lock timeout), the
            # next run starts from scratch; the app must not lose its task.
            logger.exception("Deleting questions older than %d days failed", days)
        else:
            if deleted is None:
                logger.debug("Another instance is deleting old questions")
            elif deleted:
                logger.info("Deleted %d questions older than %d days", deleted, days)
        await asyncio.sleep(INTERVAL_SECONDS)
