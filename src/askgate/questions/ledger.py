"""The writes of asking: quota reservations before the LLM call, and the stored
question with its settled tokens after it, each group-committed
(askgate.group_commit): one transaction serves every question that reached that
step meanwhile, and each request answers only once its own write is committed.

A store, once submitted, completes whatever happens to the request that asked
for it: a client leaving at that moment neither loses the question nor leaves
its reservation held.
"""

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, cast

from sqlalchemy import Table, insert

from askgate.db import Database
from askgate.group_commit import GroupCommit, Outcome
from askgate.questions.models import Question
from askgate.quota import service as quota

_TABLE = cast(Table, Question.__table__)
# Core, with a list of rows: one INSERT ... RETURNING for the whole batch, the
# ids in the order of the rows.
_INSERT = insert(_TABLE).returning(_TABLE.c.id, sort_by_parameter_order=True)


@dataclass(frozen=True, slots=True)
class NewQuestion:
    row: dict[str, Any]  # the `questions` columns but `id`
    settlement: quota.Settlement


class Ledger:
    def __init__(self, db: Database) -> None:
        self._db = db
        self._reservations: GroupCommit[quota.ReservationRequest, quota.Reservation] = (
            GroupCommit(self._reserve)
        )
        self._stores: GroupCommit[NewQuestion, int] = GroupCommit(self._store)

    async def reserve(self, request: quota.ReservationRequest) -> quota.Reservation:
        """The reservation, or QuotaExceeded (a 429)."""
        return await self._reservations.submit(request)

    async def store(self, question: NewQuestion) -> int:
        """Store the question and settle its tokens; returns its id."""
        return await self._stores.submit(question)

    async def drain(self) -> None:
        await self._reservations.drain()
        await self._stores.drain()

    async def _reserve(
        self, requests: Sequence[quota.ReservationRequest]
    ) -> list[Outcome[quota.Reservation]]:
        async with self._db.write() as session:
            outcomes = await quota.reserve_many(session=session, requests=requests)
        return list(outcomes)

    async def _store(self, questions: Sequence[NewQuestion]) -> list[Outcome[int]]:
        async with self._db.write() as session:
            result = await session.execute(_INSERT, [q.row for q in questions])
            ids: list[Outcome[int]] = list(result.scalars())
            await quota.settle_many(
                session=session, settlements=[q.settlement for q in questions]
            )
        return ids
