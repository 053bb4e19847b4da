"""The writes of asking: quota reservations before the LLM call, and the stored
question with its settled tokens after it, each group-committed
(askgate.group_commit): one transaction serves every question that reached that
step meanwhile, and each request answers only once its own write is committed.

A store, once submitted, completes whatever happens to the request that asked
for it: a client leaving at that moment neither loses the question nor leaves
its reservation held.

A user may be deleted while their question is in flight. Their rows then break
a foreign key, which fails the whole batch; only then (it is rare, and looking
the users up costs every batch a statement) is the batch written again, in a
transaction that first locks the rows of the batch's users (PostgreSQL: FOR KEY
SHARE, which a DELETE waits for; SQLite: its write lock already excludes one) and
drops the writes of users who are gone: the question goes with its user, and the
rest of the batch is written as usual. The foreign keys' own checks lock the
users' rows the same way on the first try, so no deletion slips between.

The same transaction adds the stored questions to the daily usage rollup
(askgate.usage.rollup): a batch that is written again, or a question dropped
with its user, is counted exactly as it is stored.
"""

import asyncio
import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, cast

from sqlalchemy import Table, bindparam, insert, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from askgate.db import Database
from askgate.errors import NotAuthenticated
from askgate.group_commit import GroupCommit, Outcome
from askgate.questions.models import Question, QuestionStatus
from askgate.quota import service as quota
from askgate.usage import rollup
from askgate.users.models import User

logger = logging.getLogger("askgate.questions")

_TABLE = cast(Table, Question.__table__)
# Core, with a list of rows: one INSERT ... RETURNING for the whole batch, the
# ids in the order of the rows.
_INSERT = insert(_TABLE).returning(_TABLE.c.id, sort_by_parameter_order=True)
_PRESENT_USERS = (
    select(User.id)
    .where(User.id.in_(bindparam("ids", expanding=True)))
    .order_by(User.id)  # locks taken in key order: no deadlock between batches
    .with_for_update(key_share=True)
)


class AccountDeleted(NotAuthenticated):
    """The user was deleted while their question was in flight."""

    def __init__(self) -> None:
        super().__init__(
            "Your account was deleted while this question was in flight; "
            "the question was not kept"
        )


@dataclass(frozen=True, slots=True)
class NewQuestion:
    row: dict[str, Any] | None  # the `questions` columns but `id`; None: none
    settlement: quota.Settlement


class Ledger:
    def __init__(self, db: Database, *, reservation_max_age: float) -> None:
        """`reservation_max_age`: how long a quota reservation counts
        (quota.reservation_max_age)."""
        self._db = db
        self._max_age = reservation_max_age
        self._reservations: GroupCommit[quota.ReservationRequest, quota.Reservation] = (
            GroupCommit(self._reserve)
        )
        self._stores: GroupCommit[NewQuestion, int | None] = GroupCommit(self._store)

    async def reserve(self, request: quota.ReservationRequest) -> quota.Reservation:
        """The reservation, or QuotaExceeded (a 429), or AccountDeleted.

        A caller cancelled while it waits (its client left) is made all the
        same, since the write goes on: it is then released at once, rather than
        held by a question that was never asked until it is old enough to stop
        counting (quota.reservation_max_age).
        """
        reserving = self._reservations.enqueue(request)
        try:
            return await asyncio.shield(reserving)
        except asyncio.CancelledError:
            reserving.add_done_callback(self._release_abandoned)
            raise

    def _release_abandoned(self, reserving: asyncio.Future[quota.Reservation]) -> None:
        if reserving.cancelled() or reserving.exception() is not None:
            return  # nothing was reserved
        held = reserving.result()
        release = quota.Settlement(
            user_id=held.user_id,
            day=held.day,
            cost=0,
            reserved=held.tokens,
            window=held.window,
        )
        self._stores.enqueue(NewQuestion(None, release)).add_done_callback(
            _log_failed_release
        )

    async def store(self, row: dict[str, Any], settlement: quota.Settlement) -> int:
        """Store the question and settle its tokens; returns its id, or raises
        AccountDeleted."""
        question_id = await self._stores.submit(NewQuestion(row, settlement))
        assert question_id is not None  # a row was given
        return question_id

    async def settle(self, settlement: quota.Settlement) -> None:
        """Settle a question's tokens without storing it."""
        await self._stores.submit(NewQuestion(None, settlement))

    async def drain(self) -> None:
        await self._reservations.drain()
        await self._stores.drain()

    async def _reserve(
        self, requests: Sequence[quota.ReservationRequest]
    ) -> list[Outcome[quota.Reservation]]:
        try:
            return await self._reserve_for(requests, check_users=False)
        except IntegrityError:  # a user deleted meanwhile (module doc)
            return await self._reserve_for(requests, check_users=True)

    async def _reserve_for(
        self, requests: Sequence[quota.ReservationRequest], *, check_users: bool
    ) -> list[Outcome[quota.Reservation]]:
        user_ids = [r.user_id for r in requests]
        async with self._db.write() as session:
            present = (
                await _lock_users(session, user_ids) if check_users else set(user_ids)
            )
            kept = [r for r in requests if r.user_id in present]
            reserved = iter(
                await quota.reserve_many(
                    session=session, requests=kept, max_age=self._max_age
                )
                if kept
                else ()
            )
        return [
            next(reserved) if r.user_id in present else AccountDeleted()
            for r in requests
        ]

    async def _store(
        self, questions: Sequence[NewQuestion]
    ) -> list[Outcome[int | None]]:
        try:
            return await self._store_for(questions, check_users=False)
        except IntegrityError:  # a user deleted meanwhile (module doc)
            return await self._store_for(questions, check_users=True)

    async def _store_for(
        self, questions: Sequence[NewQuestion], *, check_users: bool
    ) -> list[Outcome[int | None]]:
        user_ids = [q.settlement.user_id for q in questions]
        async with self._db.write() as session:
            present = (
                await _lock_users(session, user_ids) if check_users else set(user_ids)
            )
            kept = [q for q in questions if q.settlement.user_id in present]
            rows = [q.row for q in kept if q.row is not None]
            ids = iter((await session.execute(_INSERT, rows)).scalars() if rows else ())
            await quota.settle_many(
                session=session,
                settlements=[q.settlement for q in kept],
                max_age=self._max_age,
            )
            await rollup.record(session=session, tally=_tally(rows))
        outcomes: list[Outcome[int | None]] = []
        for question in questions:
            if question.settlement.user_id not in present:
                outcomes.append(AccountDeleted())
            else:
                outcomes.append(None if question.row is None else next(ids))
        return outcomes


def _tally(rows: Iterable[dict[str, Any]]) -> rollup.Tally:
    tally = rollup.Tally()
    for row in rows:
        tally.add(
            user_id=row["user_id"],
            created_at=row["created_at"],
            model=row["model"],
            failed=row["status"] == QuestionStatus.FAILED,
            prompt_tokens=row["prompt_tokens"],
            completion_tokens=row["completion_tokens"],
        )
    return tally


def _log_failed_release(releasing: asyncio.Future[int | None]) -> None:
    if releasing.cancelled():
        return
    failure = releasing.exception()
    if failure is not None and not isinstance(failure, AccountDeleted):
        logger.error(
            "Releasing an abandoned reservation failed: it stops counting once it "
            "is older than the longest a question can run",
            exc_info=failure,
        )


async def _lock_users(session: AsyncSession, user_ids: Iterable[int]) -> set[int]:
    """Those of the users that still exist, locked against deletion until the
    transaction ends."""
    found = await session.scalars(_PRESENT_USERS, {"ids": sorted(set(user_ids))})
    return set(found)
