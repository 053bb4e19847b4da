"""The abuse limiter: login throttling, questions per user (per minute and at
once), registrations per client address, account changes per user. The FastAPI
dependencies that apply it live with their features (askgate.auth.throttling,
askgate.questions.router); the client's address comes from askgate.client_ip.

The counters live in this process by default (each app has its own), or in Redis
when ASKGATE_REDIS_URL is set, so that every worker and instance shares them. The
rate limits are `limits` moving windows, "at most N events in the last W
seconds"; the limits that may give a count back (a successful login, a question
that ended) are leases (askgate.leases). Every counter that guards a check is
taken before the work it guards (one atomic step in the store), so concurrent
requests cannot slip past a limit: of a burst of logins, at most the limit get
their password verified, and the rest are refused without hashing.

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
from prometheus_client import Counter

from askgate import metrics
from askgate.config import Settings
from askgate.errors import ServiceUnavailable, TooManyRequests
from askgate.leases import (
    Acquisition,
    Leases,
    LeaseStoreError,
    MemoryLeases,
    RedisLeases,
)
from askgate.users.names import canonical

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
TOO_MANY_ACCOUNT_CHANGES = (
    "Too many account changes: at most {limit} per hour. "
    "Try again in {seconds} seconds."
)
TOO_MANY_AT_ONCE = (
    "Too many questions at once: at most {limit} of yours can be answered at the "
    "same time. Try again when one has ended."
)

# A question holds one of its user's slots until it ends, however it ends; the
# lease is only a safety net for a process that died holding it. An hour bounds
# any question's life (the upstream's read timeout ends a silent one long
# before); a stream still running after that stops counting against the cap.
QUESTION_SLOT_SECONDS = 60 * 60
# Slots free up as questions end, within seconds, not when leases expire.
QUESTION_SLOT_RETRY_AFTER = 5

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
    # One key per account whatever the spelling ("Bob", "ＢＯＢ"): the canonical
    # form that usernames are unique in. Hashed: no raw input in storage keys.
    name = canonical(username)
    return (
        "login-account:" + hashlib.sha256(name.encode("utf-8", "replace")).hexdigest()
    )


@dataclass(frozen=True, slots=True)
class LoginAttempt:
    """The leases one login attempt took before its password was verified. A
    failure keeps them: they are its record until the window has passed."""

    ip_key: str
    ip_lease: str
    account_key: str


@dataclass(frozen=True, slots=True)
class QuestionSlot:
    """One of a user's concurrent question slots, held until the question ends."""

    key: str
    lease: str


class Throttle:
    """The limits of one app; created and closed by the app lifespan."""

    def __init__(
        self,
        settings: Settings,
        storage: Storage,
        leases: Leases,
        pool: "coredis.ConnectionPool | None" = None,
    ) -> None:
        self._storage = storage
        self._leases = leases
        self._pool = pool
        self._limiter = MovingWindowRateLimiter(storage)
        self._login_window = settings.login_failure_window_seconds
        self._failures_per_account = settings.login_failures_per_account
        self._failures_per_ip = settings.login_failures_per_ip
        self._slots_per_user = settings.max_concurrent_questions_per_user
        self.questions = RateLimitItemPerSecond(
            settings.questions_per_minute, 60, namespace="questions"
        )
        self.registrations = RateLimitItemPerSecond(
            settings.registrations_per_hour, 3600, namespace="register"
        )
        self.account_changes = RateLimitItemPerSecond(
            settings.account_changes_per_hour, 3600, namespace="account-changes"
        )

    @classmethod
    async def open(cls, settings: Settings) -> "Throttle":
        if settings.redis_url is None:
            return cls(settings, _storage("async+memory://"), MemoryLeases())
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
        leases = RedisLeases(coredis.Redis(connection_pool=pool), REDIS_KEY_PREFIX)
        throttle = cls(settings, storage, leases, pool)
        if not await storage.check():
            # Not fatal: Redis may come up after askgate; limited routes answer
            # 503 until it does.
            logger.error("Cannot reach Redis at ASKGATE_REDIS_URL; limits answer 503")
        return throttle

    @property
    def shared(self) -> bool:
        """Whether the counters live in Redis (ASKGATE_REDIS_URL)."""
        return self._pool is not None

    async def ping(self) -> bool:
        """Whether the counters' store answers: a PING to Redis, bounded by its
        timeout; always true in process."""
        return await self._leases.ping()

    async def close(self) -> None:
        if self._pool is not None:
            self._pool.disconnect()
            await asyncio.sleep(0)  # let the transports finish closing

    @contextmanager
    def _store(self) -> Iterator[None]:
        try:
            yield
        except (StorageError, LeaseStoreError) as exc:
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
            metrics.REFUSED_QUESTIONS_PER_MINUTE.inc()
            seconds = status.retry_after()
            raise TooManyRequests(
                TOO_MANY_QUESTIONS.format(seconds=seconds, limit=status.limit),
                headers={"Retry-After": str(seconds), **status.headers()},
            )
        return status

    async def count_registration(self, client_ip: str) -> None:
        # Every attempt counts, refused ones too: this also caps probing which
        # usernames are taken.
        await self._count(
            self.registrations,
            client_ip,
            TOO_MANY_REGISTRATIONS,
            metrics.REFUSED_REGISTRATIONS,
        )

    async def count_account_change(self, user_id: int) -> None:
        # Every attempt counts, refused ones too: this caps probing which emails
        # and usernames are taken, and guessing the current password.
        await self._count(
            self.account_changes,
            str(user_id),
            TOO_MANY_ACCOUNT_CHANGES,
            metrics.REFUSED_ACCOUNT_CHANGES,
        )

    async def _count(
        self, item: RateLimitItem, key: str, message: str, refusals: Counter
    ) -> None:
        """One more hit on `key`, or a 429 with `message` past the limit."""
        with self._store():
            allowed = await self._limiter.hit(item, key)
        if not allowed:
            refusals.inc()
            await self._refuse(item, key, message)

    async def _acquire(self, key: str, *, limit: int, ttl: float) -> Acquisition:
        with self._store():
            return await self._leases.acquire(key, limit=limit, ttl=ttl)

    async def begin_login(self, *, username: str, client_ip: str) -> LoginAttempt:
        """Count the attempt against the client's address and the account, or
        refuse it (429) while either is locked out.

        Both are counted before the password is checked, in one atomic step
        each, so of any burst at most the allowed number are verified. A failed
        attempt keeps both counts (see LoginAttempt); a successful one gives the
        address's back, so that an address shared by many honest users is not
        locked by their logins, and clears the account's failures. Attempts still
        being checked count too: an address with more logins in flight at once
        than its limit is refused the excess until one of them ends.
        """
        ip_key = f"login-ip:{client_ip}"
        ip = await self._acquire(
            ip_key, limit=self._failures_per_ip, ttl=self._login_window
        )
        if ip.lease is None:
            raise _locked(ip)
        account_key = _account_key(username)
        account = await self._acquire(
            account_key, limit=self._failures_per_account, ttl=self._login_window
        )
        if account.lease is None:
            # Refused before any check: nothing to count against the address.
            with _best_effort("refund a login"):
                await self._leases.release(ip_key, ip.lease)
            raise _locked(account)
        return LoginAttempt(ip_key=ip_key, ip_lease=ip.lease, account_key=account_key)

    async def login_succeeded(self, attempt: LoginAttempt) -> None:
        with _best_effort("refund a login"):
            await self._leases.release(attempt.ip_key, attempt.ip_lease)
        with _best_effort("clear an account's failures"):
            await self._leases.clear(attempt.account_key)

    async def take_question_slot(
        self, user_id: int, rate_limit: RateLimitStatus
    ) -> QuestionSlot:
        """One of the user's ASKGATE_MAX_CONCURRENT_QUESTIONS_PER_USER slots, or
        429; the caller gives it back with `end_question` however it ends."""
        key = f"questions-in-flight:{user_id}"
        slot = await self._acquire(
            key, limit=self._slots_per_user, ttl=QUESTION_SLOT_SECONDS
        )
        if slot.lease is None:
            metrics.REFUSED_QUESTIONS_AT_ONCE.inc()
            raise TooManyRequests(
                TOO_MANY_AT_ONCE.format(limit=self._slots_per_user),
                headers={
                    "Retry-After": str(QUESTION_SLOT_RETRY_AFTER),
                    **rate_limit.headers(),
                },
            )
        return QuestionSlot(key=key, lease=slot.lease)

    async def end_question(self, slot: QuestionSlot) -> None:
        with _best_effort("free a question slot"):
            await self._leases.release(slot.key, slot.lease)


@contextmanager
def _best_effort(action: str) -> Iterator[None]:
    """Giving a lease back: a failing store is only logged, never the request's
    failure, since the lease expires by itself."""
    try:
        yield
    except LeaseStoreError as exc:
        logger.error("Rate-limit storage failed to %s: %s", action, exc)


def _locked(refusal: Acquisition) -> TooManyRequests:
    metrics.REFUSED_LOGIN.inc()
    seconds = refusal.retry_after()
    return TooManyRequests(
        LOGIN_LOCKED.format(seconds=seconds), headers={"Retry-After": str(seconds)}
    )


def _storage(uri: str, **options: Any) -> Storage:
    storage = storage_from_string(uri, wrap_exceptions=True, **options)
    assert isinstance(storage, Storage)  # an async+ scheme gives an async storage
    return storage
