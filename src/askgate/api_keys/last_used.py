"""When each key was last used: written at most once a minute per key, off the
request's path.

A request that authenticates with a key only looks at a dict: if this process
wrote the key's `last_used_at` less than a minute ago, nothing happens;
otherwise a write is queued and group-committed (askgate.group_commit) with the
others, and nobody waits for it. The UPDATE itself skips a row written less
than a minute ago, so several workers together still change a key's row at
most about once a minute. `last_used_at` fires no auth-epoch trigger (migration
20261203_api_keys): these writes leave every caller cache as it is.
"""

import asyncio
import logging
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import cast

from sqlalchemy import Table, bindparam, or_, update

from askgate.api_keys.models import ApiKey
from askgate.db import Database, utcnow
from askgate.group_commit import GroupCommit, Outcome

logger = logging.getLogger("askgate.api_keys")

INTERVAL = timedelta(minutes=1)
MAX_REMEMBERED = 10_000

_TABLE = cast(Table, ApiKey.__table__)
_TOUCH = (
    update(_TABLE)
    .where(
        _TABLE.c.id == bindparam("key_id"),
        or_(
            _TABLE.c.last_used_at.is_(None),
            _TABLE.c.last_used_at <= bindparam("stale"),
        ),
    )
    .values(last_used_at=bindparam("used_at"))
)


class LastUsed:
    """The last-use writes of one process; created by the app lifespan."""

    def __init__(self, db: Database) -> None:
        self._db = db
        self._written: dict[int, datetime] = {}
        self._writes: GroupCommit[tuple[int, datetime], None] = GroupCommit(self._write)

    def touch(self, key_id: int) -> None:
        """Key `key_id` was used now; returns at once."""
        now = utcnow()
        written = self._written.get(key_id)
        if written is not None and now - written < INTERVAL:
            return
        if len(self._written) >= MAX_REMEMBERED:
            self._written.clear()  # at worst, one more (skipped) UPDATE per key
        self._written[key_id] = now
        self._writes.enqueue((key_id, now)).add_done_callback(_log_failure)

    async def drain(self) -> None:
        await self._writes.drain()

    async def _write(self, uses: Sequence[tuple[int, datetime]]) -> list[Outcome[None]]:
        params = [
            {"key_id": key_id, "used_at": used_at, "stale": used_at - INTERVAL}
            for key_id, used_at in uses
        ]
        async with self._db.write() as session:
            await session.execute(_TOUCH, params)
        return [None] * len(uses)


def _log_failure(write: asyncio.Future[None]) -> None:
    if not write.cancelled() and write.exception() is not None:
        logger.warning(
            "Recording when an API key was last used failed", exc_info=write.exception()
        )
