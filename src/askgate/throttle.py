"""The abuse limiter: login throttling, questions per user, registrations per client
address. The FastAPI dependencies that apply it live with their features
(askgate.auth.throttling, askgate.questions.deps); the client's address comes from
askgate.client_ip.

The counters live in a `limits` storage: in this process by default (each app has
its own), or in Redis when ASKGATE_REDIS_URL is set, so that every worker shares
them. Every limit is a moving window, "at most N events in the last W seconds",
and every counter that guards a check is taken before the work it guards (one
atomic step in the storage), so concurrent requests cannot slip past a limit.

When the storage cannot be reached the limited routes answer 503 rather than run
unlimited: a silent outage of the store must not turn off login throttling.
"""

import asyncio
import hashlib
import logging
import math
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from limits import RateLimitItem, RateLimitItemPerSecond
from limits.aio.storage import Storage
from limits.aio.strategies import MovingWindowRateLimiter
from limits.errors import StorageError
from limits.storage import storage_from_string

from askgate.config import Settings
from askgate.errors import ServiceUnavailable, TooManyRequests

if TYPE_CHECKING:
    # Imported only with Redis configured (Throttle.open): the Redis client pulls
    # in numpy and pympler, ~0.5 s and ~30 MB per worker that need no Redis.
    import coredis

logger = logging.getLogger("askgate.throttle")

REDIS_SCHEMES = ("redis://", "rediss://", "unix://")
REDIS_KEY_PREFIX = "askgate"
# Bounded waits: an unreachable Redis answers 503 quickly instead of hanging.
REDIS_TIMEOUT_SECONDS = 2.0

STORE_DOWN = "Rate limiting is unavailable right now; try again shortly."
LOGIN_LOCKED = "Too many failed login attempts. Try again in {seconds} seconds."
TOO_MANY_QUESTIONS = (
    "Too many questions: at most {limit} per minute. Try again in {seconds} seconds."
)
TOO_MANY_REGISTRATIONS = (
    "Too many registrations from this address: at most {limit} per hour. "
    "Try again in {seconds} seconds."
)

RATE_LIMIT_HEADERS: dict[str, dict[str, Any]] = {
    "X-RateLimit-Limit": {
        "description": "Questions allowed per minute",
        "schema": {"type": "integer"},
    },
    "X-RateLimit-Remaining": {
        "description": "Questions left in the current minute",
        "schema": {"type": "integer"},
    },
    "X-RateLimit-Reset": {
        "description": "Unix time (seconds) when the next question frees up",
        "schema": {"type": "integer"},
    },
}


@dataclass(frozen=True, slots=True)
class RateLimitStatus:
    limit: int
    remaining: int
    reset_at: float  # Unix time when the oldest counted event leaves the window

    def retry_after(self) -> int:
        return max(1, math.ceil(self.reset_at - time.time()))

    def headers(self) -> dict[str, str]:
        return {
            "X-RateLimit-Limit": str(self.limit),
            "X-RateLimit-Remaining": str(self.remaining),
            "X-RateLimit-Reset": str(math.ceil(self.reset_at)),
        }


def _account_key(username: str) -> str:
    # Usernames are unique ignoring case. Hashed: no raw input in storage keys.
    return hashlib.sha256(username.lower().encode("utf-8", "replace")).hexdigest()


class Throttle:
    """The limits of one app; created and closed by the app lifespan."""

    def __init__(
        self,
        settings: Settings,
        storage: Storage,
        pool: "coredis.ConnectionPool | None" = None,
    ) -> None:
        self._storage = storage
        self._pool = pool
        self._limiter = MovingWindowRateLimiter(storage)
        window = settings.login_failure_window_seconds
        self.login_per_account = RateLimitItemPerSecond(
            settings.login_failures_per_account, window, namespace="login-account"
        )
        self.login_per_ip = RateLimitItemPerSecond(
            settings.login_failures_per_ip, window, namespace="login-ip"
        )
        self.questions = RateLimitItemPerSecond(
            settings.questions_per_minute, 60, namespace="questions"
        )
        self.registrations = RateLimitItemPerSecond(
            settings.registrations_per_hour, 3600, namespace="register"
        )

    @classmethod
    async def open(cls, settings: Settings) -> "Throttle":
        if settings.redis_url is None:
            return cls(settings, _storage("async+memory://"))
        url = settings.redis_url
        if not url.startswith(REDIS_SCHEMES):
            raise ValueError(
                "ASKGATE_REDIS_URL must start with redis://, rediss:// or unix://"
            )
        # Our own pool, so that the lifespan can close its connections.
        import coredis  # only now: see the TYPE_CHECKING import above

        pool = coredis.ConnectionPool.from_url(
            url,
            connect_timeout=REDIS_TIMEOUT_SECONDS,
            stream_timeout=REDIS_TIMEOUT_SECONDS,
        )
        storage = _storage(
            "async+redis://", connection_pool=pool, key_prefix=REDIS_KEY_PREFIX
        )
        throttle = cls(settings, storage, pool)
        if not await storage.check():
            # Not fatal: Redis may come up after askgate; limited routes answer
            # 503 until it does.
            logger.error("Cannot reach Redis at ASKGATE_REDIS_URL; limits answer 503")
        return throttle

    async def close(self) -> None:
        if self._pool is not None:
            self._pool.disconnect()
            await asyncio.sleep(0)  # let the transports finish closing

    @contextmanager
    def _store(self) -> Iterator[None]:
        try:
            yield
        except StorageError as exc:
            logger.error("Rate-limit storage failed: %s", exc)
            raise ServiceUnavailable(STORE_DOWN) from None

    async def _status(self, item: RateLimitItem, key: str) -> RateLimitStatus:
        with self._store():
            stats = await self._limiter.get_window_stats(item, key)
        return RateLimitStatus(item.amount, max(0, stats.remaining), stats.reset_time)

    async def _refuse(self, item: RateLimitItem, key: str, message: str) -> None:
        seconds = (await self._status(item, key)).retry_after()
        raise TooManyRequests(
            message.format(seconds=seconds, limit=item.amount),
            headers={"Retry-After": str(seconds)},
        )

    async def count_question(self, user_id: int) -> RateLimitStatus:
        key = str(user_id)
        with self._store():
            allowed = await self._limiter.hit(self.questions, key)
        status = await self._status(self.questions, key)
        if not allowed:
            seconds = status.retry_after()
            raise TooManyRequests(
                TOO_MANY_QUESTIONS.format(seconds=seconds, limit=status.limit),
                headers={"Retry-After": str(seconds), **status.headers()},
            )
        return status

    async def count_registration(self, client_ip: str) -> None:
        # Every attempt counts, refused ones too: this also caps probing which
        # usernames are taken.
        with self._store():
            allowed = await self._limiter.hit(self.registrations, client_ip)
        if not allowed:
            await self._refuse(self.registrations, client_ip, TOO_MANY_REGISTRATIONS)

    async def begin_login(self, *, username: str, client_ip: str) -> None:
        """Refuse (429) while the IP or the account is locked out.

        The account's counter is taken here, before the password is checked, so
        of concurrent guesses at one account at most the allowed number are
        checked; a success clears it. The IP's counter is only checked here and
        counts failures (an address shared by many honest users must not be
        locked by their logins), so concurrent guesses at different accounts can
        overshoot it by the attempts in flight.
        """
        account = _account_key(username)
        with self._store():
            ip_allowed = await self._limiter.test(self.login_per_ip, client_ip)
        if not ip_allowed:
            await self._refuse(self.login_per_ip, client_ip, LOGIN_LOCKED)
        with self._store():
            account_allowed = await self._limiter.hit(self.login_per_account, account)
        if not account_allowed:
            await self._refuse(self.login_per_account, account, LOGIN_LOCKED)

    async def login_failed(self, *, client_ip: str) -> None:
        # The account's failure was counted by `begin_login`.
        with self._store():
            await self._limiter.hit(self.login_per_ip, client_ip)

    async def login_succeeded(self, *, username: str) -> None:
        with self._store():
            await self._limiter.clear(self.login_per_account, _account_key(username))


def _storage(uri: str, **options: Any) -> Storage:
    storage = storage_from_string(uri, wrap_exceptions=True, **options)
    assert isinstance(storage, Storage)  # an async+ scheme gives an async storage
    return storage
