"""Who is calling, without reading the user and the login on every request.

An access token is checked once (signature, claims) and remembered until it
expires. The caller behind it (the user's account and the login the token belongs
to) is remembered with the auth epoch it was read at (askgate.auth.models.AuthEpoch).
A personal API key is looked up by its SHA-256 (never kept itself), and its
caller (the account and the key's id and expiry) remembered the same way.
Database triggers bump the epoch whenever any user, login or key changes, so a
request may use a remembered caller only if the epoch has not moved since: every
request reads the current epoch, with a read that starts after the request
arrived, so a logout, password change, deactivation, role change, deletion or
revoked key committed by any worker or instance before the request takes effect
at once. A key that matches nothing is not remembered: it costs one indexed read.

On SQLite that read is a direct read of one row on the event loop (microseconds:
in WAL mode a reader never waits for a writer), cheaper than one hop to a
database thread. Elsewhere it goes through the pool and is shared: concurrent
requests wait for the same read (see `FreshValue`), so under load the check
costs a fraction of a query per request; at rest it is one small query.
"""

import asyncio
import sqlite3
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Generic, TypeVar

from sqlalchemy import Executable, null, select

from askgate.api_keys import keys
from askgate.api_keys.models import ApiKey
from askgate.auth.models import AuthEpoch, AuthSession
from askgate.auth.security import AccessClaims, InvalidToken, decode_access_token
from askgate.db import Database, utcnow
from askgate.errors import NotAuthenticated
from askgate.users.models import Role, User

INVALID_TOKEN = "Invalid or expired access token"
INVALID_KEY = "Invalid, expired or revoked API key"
MAX_ENTRIES = 10_000
T = TypeVar("T")

_EPOCH = select(AuthEpoch.value).where(AuthEpoch.id == 1)
_EPOCH_SQL = "SELECT value FROM auth_epoch WHERE id = 1"
_USER = (
    User.id,
    User.username,
    User.email,
    User.role,
    User.is_active,
    User.daily_token_quota,
    User.created_at,
)
# One statement each, so one snapshot on every backend: the caller and the epoch
# it was read at agree (two statements may not, under READ COMMITTED). Both give
# rows of the same shape.
_CALLER = select(
    *_USER,
    AuthSession.revoked_at,
    AuthSession.expires_at,
    null().label("api_key_id"),
    _EPOCH.scalar_subquery().label("epoch"),
).join(AuthSession, AuthSession.user_id == User.id)
_KEY_CALLER = select(
    *_USER,
    null().label("revoked_at"),  # a revoked key's row is deleted
    ApiKey.expires_at,
    ApiKey.id.label("api_key_id"),
    _EPOCH.scalar_subquery().label("epoch"),
).join(ApiKey, ApiKey.user_id == User.id)


@dataclass(frozen=True, slots=True)
class Caller:
    """The authenticated user, as the database had it at the current epoch."""

    id: int
    username: str
    email: str | None
    role: Role
    is_active: bool
    daily_token_quota: int | None
    created_at: datetime
    # The personal API key the caller authenticated with; None for a login.
    api_key_id: int | None = None

    @property
    def acts_as_admin(self) -> bool:
        """An admin's powers come with a login only, never with an API key."""
        return self.role == Role.ADMIN and self.api_key_id is None


@dataclass(frozen=True, slots=True)
class _Entry:
    """A login or a key, as read at `epoch`."""

    caller: Caller
    revoked_at: datetime | None
    expires_at: datetime | None  # None: a key that never expires
    epoch: int

    def live(self) -> bool:
        return (
            self.revoked_at is None
            and (self.expires_at is None or self.expires_at > utcnow())
            and self.caller.is_active
        )


class FreshValue(Generic[T]):
    """A value read anew for each caller, with concurrent callers sharing reads.

    `get()` returns the result of a read that started after `get()` was called:
    if a read is already running it started too early, so the caller waits for
    the next one, which every caller arriving meanwhile shares. Under load that
    is one read per round trip instead of one per caller. A caller that leaves
    cancels only its own wait, never the read the others wait for.
    """

    def __init__(self, read: Callable[[], Awaitable[T]]) -> None:
        self._read = read
        self._reader: asyncio.Task[None] | None = None
        self._this_read: list[asyncio.Future[T]] = []
        self._next_read: list[asyncio.Future[T]] = []

    async def get(self) -> T:
        future: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        if self._reader is None:
            self._this_read.append(future)
            self._reader = asyncio.create_task(self._run())
        else:
            self._next_read.append(future)
        return await future

    async def _run(self) -> None:
        try:
            while self._this_read:
                waiting = self._this_read
                try:
                    value = await self._read()
                except Exception as exc:
                    for future in waiting:
                        if not future.done():
                            future.set_exception(exc)
                else:
                    for future in waiting:
                        if not future.done():
                            future.set_result(value)
                self._this_read, self._next_read = self._next_read, []
        except BaseException:  # cancelled (the loop is closing): nobody waits on
            for future in self._this_read + self._next_read:
                future.cancel()
            self._this_read, self._next_read = [], []
            raise
        finally:
            self._reader = None


def _remember(entries: dict[str, T], key: str, value: T) -> None:
    """Insert, dropping the oldest entry once full (a bound, not an LRU)."""
    entries.pop(key, None)
    if len(entries) >= MAX_ENTRIES:
        del entries[next(iter(entries))]
    entries[key] = value


class CallerCache:
    """The callers of one process; created by the app lifespan."""

    def __init__(self, db: Database, signing_key: str) -> None:
        self._db = db
        self._key = signing_key
        self._epoch = FreshValue(self._read_epoch)
        self._tokens: dict[str, AccessClaims] = {}
        self._logins: dict[str, _Entry] = {}
        self._keys: dict[str, _Entry] = {}  # by the key's digest
        url = db.engine.url
        self._sqlite_path = url.database if url.get_backend_name() == "sqlite" else None
        self._sqlite: sqlite3.Connection | None = None

    def close(self) -> None:
        if self._sqlite is not None:
            self._sqlite.close()
            self._sqlite = None

    async def caller(self, token: str) -> Caller:
        """The caller the access token stands for; NotAuthenticated otherwise."""
        claims = self._claims(token)
        epoch = await self._current_epoch()
        login = self._logins.get(claims.session_id)
        if login is None or login.epoch < epoch:
            login = await self._load(
                _CALLER.where(AuthSession.id == claims.session_id),
                self._logins,
                claims.session_id,
                INVALID_TOKEN,
            )
        if login.caller.id != claims.user_id or not login.live():
            raise NotAuthenticated(INVALID_TOKEN)
        return login.caller

    async def key_caller(self, key: str) -> Caller:
        """The caller a personal API key stands for (with `api_key_id` set);
        NotAuthenticated if it is unknown, revoked, expired or its user inactive."""
        if not keys.is_well_formed(key):
            raise NotAuthenticated(INVALID_KEY)
        digest = keys.digest(key)
        epoch = await self._current_epoch()
        entry = self._keys.get(digest)
        if entry is None or entry.epoch < epoch:
            entry = await self._load(
                _KEY_CALLER.where(ApiKey.digest == digest),
                self._keys,
                digest,
                INVALID_KEY,
            )
        if not entry.live():
            raise NotAuthenticated(INVALID_KEY)
        return entry.caller

    def _claims(self, token: str) -> AccessClaims:
        claims = self._tokens.get(token)
        if claims is None:
            try:
                claims = decode_access_token(token, key=self._key)
            except InvalidToken:
                raise NotAuthenticated(INVALID_TOKEN) from None
            _remember(self._tokens, token, claims)
        if claims.expired(time.time()):
            del self._tokens[token]
            raise NotAuthenticated(INVALID_TOKEN)
        return claims

    async def _current_epoch(self) -> int:
        if self._sqlite_path is not None:
            try:
                return self._read_sqlite_epoch(self._sqlite_path)
            except sqlite3.Error:
                pass  # busy for a moment (WAL recovery): ask through the pool
        return await self._epoch.get()

    def _read_sqlite_epoch(self, path: str) -> int:
        if self._sqlite is None:
            # Autocommit, and no busy wait: never block the loop on a lock.
            self._sqlite = sqlite3.connect(path, isolation_level=None, timeout=0)
        row = self._sqlite.execute(_EPOCH_SQL).fetchone()
        return int(row[0])

    async def _read_epoch(self) -> int:
        async with self._db.read() as session:
            return (await session.execute(_EPOCH)).scalar_one()

    async def _load(
        self,
        statement: Executable,
        entries: dict[str, _Entry],
        cache_key: str,
        invalid: str,
    ) -> _Entry:
        async with self._db.read() as session:
            row = (await session.execute(statement)).one_or_none()
        if row is None:  # the login, the key or its user no longer exists
            raise NotAuthenticated(invalid)
        entry = _Entry(
            caller=Caller(
                id=row.id,
                username=row.username,
                email=row.email,
                role=row.role,
                is_active=row.is_active,
                daily_token_quota=row.daily_token_quota,
                created_at=row.created_at,
                api_key_id=row.api_key_id,
            ),
            revoked_at=row.revoked_at,
            expires_at=row.expires_at,
            epoch=row.epoch,
        )
        _remember(entries, cache_key, entry)
        return entry
