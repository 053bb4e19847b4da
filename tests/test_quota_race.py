"""Two processes reserving from one user's quota at the same moment, on
PostgreSQL, where row locks (not one writer at a time) keep them apart: the one
that waited for the lock must see what the other just reserved.

Two transactions stand for the two processes' batches: the first reserves and
keeps its lock; the second is seen waiting for that lock (pg_locks) before the
first commits. A read of the reservations taken before the wait (the statement's
snapshot) would let both in, over the quota.
"""

import asyncio
from collections.abc import AsyncIterator

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from askgate.db import Database, create_engine, utcnow
from askgate.quota.service import (
    QuotaExceeded,
    Reservation,
    ReservationRequest,
    reserve_many,
)
from tests.factories import create_user
from tests.postgres_server import postgres_server, postgres_url

__all__ = ["postgres_server", "postgres_url"]  # fixtures

LIMIT = 100
TOKENS = 60  # one fits, two do not
MAX_AGE = 600.0
GUARD = 30  # seconds: against hanging, not a speed


@pytest.fixture
async def db(postgres_url: str) -> AsyncIterator[Database]:
    value = Database(create_engine(postgres_url))
    yield value
    await value.dispose()


async def _waiting_for_a_lock(engine: AsyncEngine) -> bool:
    async with engine.connect() as connection:
        waiting = await connection.scalar(
            text("SELECT count(*) FROM pg_locks WHERE NOT granted")
        )
    return bool(waiting)


async def test_a_batch_that_waited_for_the_lock_sees_what_the_other_reserved(
    db: Database,
) -> None:
    engine = db.engine
    user_id = (await create_user(db)).id
    request = ReservationRequest(user_id, TOKENS, LIMIT, utcnow())
    # The day's row exists already (a question earlier today): the second batch
    # waits in the locking read, not in inserting the row.
    async with engine.begin() as connection:
        await connection.execute(
            text("INSERT INTO token_usage (user_id, day, used) VALUES (:u, :d, 0)"),
            {"u": user_id, "d": request.requested_at.date()},
        )
    async with AsyncSession(engine) as first, first.begin():
        [held] = await reserve_many(session=first, requests=[request], max_age=MAX_AGE)
        assert isinstance(held, Reservation)

        async def second_batch() -> list[Reservation | QuotaExceeded]:
            async with AsyncSession(engine) as second, second.begin():
                return await reserve_many(
                    session=second, requests=[request], max_age=MAX_AGE
                )

        second = asyncio.create_task(second_batch())
        async with asyncio.timeout(GUARD):
            while not await _waiting_for_a_lock(engine):
                assert not second.done(), second.result()
                await asyncio.sleep(0.05)
    # The first batch has committed; the second now holds the lock.
    async with asyncio.timeout(GUARD):
        [outcome] = await second
    assert isinstance(outcome, QuotaExceeded)
    async with engine.connect() as connection:
        reserved = await connection.scalar(
            text("SELECT sum(tokens) FROM quota_reservations WHERE user_id = :u"),
            {"u": user_id},
        )
    assert reserved == TOKENS
