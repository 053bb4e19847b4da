"""Database engine, sessions and the transaction rule.

Transaction rule: a request's `SessionDep` lives only as long as its handler; it
commits when the handler returns and rolls back when it raises. Services only flush,
with one exception: a failure that must itself be recorded (a reused refresh token
revoking its family) commits before raising. Code that waits for the LLM holds no
session: its writes before and after the call are group-committed
(askgate.questions.ledger). Code that hashes or verifies a password holds no
session either: login, registration, user creation and password changes read in a
short `Database.read()`, run Argon2 with no session open, then write in a short
`Database.write()` that checks the hash it verified is still there
(auth/service.py, users/service.py).
"""

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import Depends, Request
from sqlalchemy import (
    BigInteger,
    BindParameter,
    DateTime,
    MetaData,
    TypeDecorator,
    event,
    literal,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)
from sqlalchemy.orm import DeclarativeBase

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
SQLITE_BUSY_TIMEOUT_MS = 30_000
_WRITE_OPTION = "askgate_write"


class UTCDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC datetimes on every backend (SQLite stores naive ones)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(
        self, value: datetime | None, dialect: Dialect
    ) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime")
        return value.astimezone(UTC)

    def process_result_value(
        self, value: datetime | None, dialect: Dialect
    ) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


def utcnow() -> datetime:
    return datetime.now(UTC)


def id_param(value: int) -> BindParameter[int]:
    """An id from a request, bound as BIGINT: ids are INTEGER (32 bits) on
    PostgreSQL while the API takes any 63-bit one, which asyncpg refuses to
    bind as INTEGER (a 500); as BIGINT it compares as it should."""
    return literal(value, BigInteger)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


def create_engine(url: str, **kwargs: Any) -> AsyncEngine:
    """An engine; on SQLite every connection gets WAL, a busy timeout and FKs on.

    Every engine of askgate (the server's, the CLI's, Alembic's) is made here,
    with `hide_parameters`: statement parameters hold questions, answers and
    password hashes, and must never reach an error message or a log.
    """
    kwargs["hide_parameters"] = True
    is_sqlite = url.startswith("sqlite")
    if is_sqlite:
        kwargs.setdefault("connect_args", {"timeout": SQLITE_BUSY_TIMEOUT_MS / 1000})
    else:
        kwargs.setdefault("pool_pre_ping", True)
    engine = create_async_engine(url, **kwargs)
    if is_sqlite:
        _configure_sqlite(engine)
    return engine


def _configure_sqlite(engine: AsyncEngine) -> None:
    @event.listens_for(engine.sync_engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Let SQLAlchemy emit BEGIN itself (below) instead of the driver's
        # implicit, deferred one.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.close()

    @event.listens_for(engine.sync_engine, "begin")
    def _on_begin(connection: Any) -> None:
        # A deferred transaction that later writes can fail with "database is
        # locked" whatever the busy timeout; writers take the lock up front.
        if connection.get_execution_options().get(_WRITE_OPTION):
            connection.exec_driver_sql("BEGIN IMMEDIATE")
        else:
            connection.exec_driver_sql("BEGIN")


class Database:
    """The engine and two session factories: reads, and writes (BEGIN IMMEDIATE)."""

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine
        self.read_sessions = async_sessionmaker(engine, expire_on_commit=False)
        self.write_sessions = async_sessionmaker(
            engine.execution_options(**{_WRITE_OPTION: True}),
            expire_on_commit=False,
        )

    @asynccontextmanager
    async def write(self) -> AsyncIterator[AsyncSession]:
        """A short write transaction: commits on success, rolls back on error."""
        async with self.write_sessions() as session, session.begin():
            yield session

    @asynccontextmanager
    async def read(self) -> AsyncIterator[AsyncSession]:
        async with self.read_sessions() as session, session.begin():
            yield session

    async def dispose(self) -> None:
        await self.engine.dispose()


async def get_database(request: Request) -> Database:
    db: Database = request.app.state.runtime.db
    return db


DatabaseDep = Annotated[Database, Depends(get_database)]


async def get_session(request: Request, db: DatabaseDep) -> AsyncIterator[AsyncSession]:
    maker = db.read_sessions if request.method in SAFE_METHODS else db.write_sessions
    async with maker() as session:
        try:
            yield session
        except BaseException:
            await session.rollback()
            raise
        await session.commit()


# scope="function": the session ends with the handler, before the response is sent,
# so a commit failure is still reported and no connection waits on a slow client.
SessionDep = Annotated[AsyncSession, Depends(get_session, scope="function")]
