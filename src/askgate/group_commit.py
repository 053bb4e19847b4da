"""Group commit: many requests' writes in one transaction, each answered only once
its write is committed.

A request submits an item and waits for its result. One task per `GroupCommit`
writes whatever has been submitted in one call of `write(items)` (typically one
transaction); items submitted meanwhile form the next batch. At rest a batch is a
single item written at once, so nothing waits for a timer; under load one
transaction (and its thread hops and fsync) serves a whole batch.

The writing task belongs to no request: a request that is cancelled while it
waits (its client left) does not cancel its write, which still completes.
"""

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Generic, TypeAlias, TypeVar

logger = logging.getLogger("askgate.group_commit")

Item = TypeVar("Item")
Result = TypeVar("Result")

# One item's outcome: its result, or the exception that item alone raises.
Outcome: TypeAlias = Result | BaseException
MAX_BATCH = 256


class GroupCommit(Generic[Item, Result]):
    """`write(items)` returns one outcome per item, in order.

    If `write` raises for a batch of several items, each item is written again
    on its own, so that one bad item (a row violating a constraint) fails alone.
    """

    def __init__(
        self,
        write: Callable[[Sequence[Item]], Awaitable[Sequence[Outcome[Result]]]],
        *,
        max_batch: int = MAX_BATCH,
    ) -> None:
        self._write = write
        self._max_batch = max_batch
        self._pending: list[tuple[Item, asyncio.Future[Result]]] = []
        self._worker: asyncio.Task[None] | None = None

    async def submit(self, item: Item) -> Result:
        # A caller cancelled here cancels only its own future: the write is the
        # worker's, and it goes on.
        return await self.enqueue(item)

    def enqueue(self, item: Item) -> asyncio.Future[Result]:
        """Submit `item` without waiting: the future holds its outcome."""
        future: asyncio.Future[Result] = asyncio.get_running_loop().create_future()
        self._pending.append((item, future))
        if self._worker is None:
            self._worker = asyncio.create_task(self._run())
        return future

    async def drain(self) -> None:
        """Wait until everything submitted so far is written (app shutdown)."""
        while self._worker is not None:
            await asyncio.shield(self._worker)

    async def _run(self) -> None:
        batch: list[tuple[Item, asyncio.Future[Result]]] = []
        try:
            while self._pending:
                batch = self._pending[: self._max_batch]
                del self._pending[: self._max_batch]
                await self._write_batch(batch)
        except BaseException:
            # Cancelled (the loop is closing): nobody may wait forever.
            for _, future in batch + self._pending:
                future.cancel()
            self._pending.clear()
            raise
        finally:
            self._worker = None

    async def _write_batch(
        self, batch: list[tuple[Item, asyncio.Future[Result]]]
    ) -> None:
        items = [item for item, _ in batch]
        try:
            outcomes = await self._write(items)
        except Exception as exc:
            if len(batch) == 1:
                outcomes = [exc]
            else:
                logger.warning(
                    "A batch of %d writes failed; writing each alone", len(batch)
                )
                outcomes = [await self._write_one(item) for item in items]
        for (_, future), outcome in zip(batch, outcomes, strict=True):
            if future.done():
                continue
            if isinstance(outcome, BaseException):
                future.set_exception(outcome)
            else:
                future.set_result(outcome)

    async def _write_one(self, item: Item) -> Outcome[Result]:
        try:
            return (await self._write([item]))[0]
        except Exception as exc:
            return exc
