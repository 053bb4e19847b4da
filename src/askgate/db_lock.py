"""A named lock that every process using the same database sees: for a job that
must run on one instance at a time (askgate.questions.retention).

It lives with the database rather than in Redis, so it holds whether Redis is
configured or not, and it needs no table (no migration) and no expiry: it is
released when its holder ends, or dies.

- PostgreSQL: a session-level advisory lock (`pg_try_advisory_lock`) on a
  connection of its own, held until the block ends; the server drops it if the
  connection goes (a crashed process holds nothing).
- SQLite: every process using the database shares its machine (SQLite needs
  that), so an exclusive `flock` on a file beside the database
  (`<database>-<name>.lock`, 0600) is seen by all of them; the kernel drops it
  with the process. The file stays: removing a lock file races with its users.
  An in-memory database is seen by its own process only: nothing to exclude.

Never waits: the block gets False when another holder has the lock.
"""

import contextlib
import fcntl
import hashlib
import os
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from askgate.config import PRIVATE_FILE_MODE, sqlite_path


@asynccontextmanager
async def try_lock(engine: AsyncEngine, name: str) -> AsyncIterator[bool]:
    """Holds the lock `name` for the block, if no one else does (True)."""
    if engine.dialect.name == "postgresql":
        async with _advisory_lock(engine, name) as held:
            yield held
        return
    path = sqlite_path(engine.url.render_as_string(hide_password=False))
    if path is None:
        yield True
        return
    with _file_lock(f"{path}-{name}.lock") as held:
        yield held


def _advisory_key(name: str) -> int:
    """A signed 64-bit key for `name`, stable across processes and versions."""
    digest = hashlib.sha256(f"askgate:{name}".encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


@asynccontextmanager
async def _advisory_lock(engine: AsyncEngine, name: str) -> AsyncIterator[bool]:
    key = _advisory_key(name)
    async with engine.connect() as connection:
        # Autocommit: the connection holds the lock, not a transaction, so it
        # sits idle without keeping a snapshot open while the job runs.
        autocommit = await connection.execution_options(isolation_level="AUTOCOMMIT")
        held = await autocommit.scalar(
            text("SELECT pg_try_advisory_lock(:key)"), {"key": key}
        )
        try:
            yield bool(held)
        finally:
            if held:
                await autocommit.execute(
                    text("SELECT pg_advisory_unlock(:key)"), {"key": key}
                )


@contextlib.contextmanager
def _file_lock(path: str) -> Iterator[bool]:
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, PRIVATE_FILE_MODE)
    try:
        try:
            # flock, not fcntl's record locks: two opens in one process exclude
            # each other too, and closing either does not drop the other's lock.
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield False
            return
        yield True
    finally:
        os.close(fd)  # releases the lock
