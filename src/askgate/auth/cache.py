"""Who is calling, without reading the user and the login on every request.

An access token is checked once (signature, claims) and remembered until it
expires. The caller behind it (the user's account and the login the token belongs
to) is remembered with the auth epoch it was read at (askgate.auth.models.AuthEpoch).
Database triggers bump the epoch whenever any user or login changes, so a request
may use a remembered caller only if the epoch has not moved since: every request
reads the current epoch, with a read that starts after the request arrived, so a
logout, password change, deactivation, role change or deletion committed by any
worker or instance before the request takes effect at once.

That one read is shared: concurrent requests wait for the same read of one row
(see `FreshValue`), so under load the whole check costs a fraction of a query per
request; at rest it is one small query.
"""

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Generic, TypeVar

from sqlalchemy import select

from askgate.auth.models import AuthEpoch, AuthSession
from askgate.auth.security import AccessClaims, InvalidToken, decode_access_token
from askgate.db import Database, utcnow
from askgate.errors import NotAuthenticated
from askgate.users.models import Role, User

INVALID_TOKEN = "Invalid or expired access token"
MAX_ENTRIES = 10_000
T = TypeVar("T")

_EPOCH = select(AuthEpoch.value).where(AuthEpoch.id == 1)
# One statement, so one snapshot on every backend: the caller and the epoch it
# was read at agree (two statements may not, under READ COMMITTED).
_CALLER = select(
    User.id,
    User.username,
    User.email,
    User.role,
    User.is_active,
    User.daily_token_quota,
    User.created_at,
    AuthSession.revoked_at,
    AuthSession.expires_at,
    _EPOCH.scalar_subquery().label("epoch"),
).join(AuthSession, AuthSession.user_id == User.id)


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


@dataclass(frozen=True, slots=True)
class _Login:
    caller: Caller
    revoked_at: datetime | None
    expires_at: datetime
    epoch: int


class FreshValue(Generic[T]):
    """A value read anew for each caller, with concurrent callers sharing reads.

    `get()` returns the result of a read that started after `get()` was called:
    if a read is already running it started too early, so the caller waits for
    the next one, which every caller arriving meanwhile shares. Under load that
    is one read per round trip instead of one per caller.
    """

    def __init__(self, read: Callable[[], Awaitable[T]]) -> None:
        self._read = read
        self._running: asyncio.Future[T] | None = None
        self._next: asyncio.Future[T] | None = None

    async def get(self) -> T:
        if self._running is None:
            future = self._start()
        else:
            if self._next is None:
                self._next = asyncio.get_running_loop().create_future()
            future = self._next
        # shield: a caller that leaves must not cancel the read others wait for
        return await asyncio.shield(future)

    def _start(self) -> asyncio.Future[T]:
        task = asyncio.ensure_future(self._read())
        self._running = task
        task.add_done_callback(self._finished)
        return task

    def _finished(self, task: asyncio.Future[T]) -> None:
        self._running = None
        waiting, self._next = self._next, None
        if waiting is not None:
            self._start().add_done_callback(lambda done: _copy(done, waiting))


def _copy(source: asyncio.Future[T], target: asyncio.Future[T]) -> None:
    if source.cancelled():
        target.cancel()
    elif (error := source.exception()) is not None:
        target.set_exception(error)
    else:
        target.set_result(source.result())


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
        self._logins: dict[str, _Login] = {}

    async def caller(self, token: str) -> Caller:
        """The caller the access token stands for; NotAuthenticated otherwise."""
        claims = self._claims(token)
        epoch = await self._epoch.get()
        login = self._logins.get(claims.session_id)
        if login is None or login.epoch < epoch:
            login = await self._load(claims.session_id)
        if (
            login.caller.id != claims.user_id
            or login.revoked_at is not None
            or login.expires_at <= utcnow()
            or not login.caller.is_active
        ):
            raise NotAuthenticated(INVALID_TOKEN)
        return login.caller

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

    async def _read_epoch(self) -> int:
        async with self._db.read() as session:
            return (await session.execute(_EPOCH)).scalar_one()

    async def _load(self, session_id: str) -> _Login:
        async with self._db.read() as session:
            row = (
                await session.execute(_CALLER.where(AuthSession.id == session_id))
            ).one_or_none()
        if row is None:  # the login or its user no longer exists
            raise NotAuthenticated(INVALID_TOKEN)
        login = _Login(
            caller=Caller(
                id=row.id,
                username=row.username,
                email=row.email,
                role=row.role,
                is_active=row.is_active,
                daily_token_quota=row.daily_token_quota,
                created_at=row.created_at,
            ),
            revoked_at=row.revoked_at,
            expires_at=row.expires_at,
            epoch=row.epoch,
        )
        _remember(self._logins, session_id, login)
        return login
