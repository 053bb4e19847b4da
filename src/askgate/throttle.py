"""Abuse limits: login throttling, questions per user, registrations per client IP.

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
import ipaddress
import logging
import math
import time
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Annotated, Any

import coredis
from fastapi import Depends, Request
from limits import RateLimitItem, RateLimitItemPerSecond
from limits.aio.storage import Storage
from limits.aio.strategies import MovingWindowRateLimiter
from limits.errors import StorageError
from limits.storage import storage_from_string

from askgate.auth.deps import CurrentUser
from askgate.config import Settings
from askgate.errors import ServiceUnavailable, TooManyRequests

logger = logging.getLogger("askgate.throttle")

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

REDIS_SCHEMES = ("redis://", "rediss://", "unix://")
REDIS_KEY_PREFIX = "askgate"
# Bounded waits: an unreachable Redis answers 503 quickly instead of hanging.
REDIS_TIMEOUT_SECONDS = 2.0
UNKNOWN_CLIENT = "unknown"

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


# --- client address -----------------------------------------------------------


def parse_trusted_proxies(entries: Iterable[str]) -> tuple[IPNetwork, ...]:
    """ASKGATE_TRUSTED_PROXIES: IP addresses or CIDR networks."""
    networks = []
    for entry in entries:
        try:
            networks.append(ipaddress.ip_network(entry, strict=False))
        except ValueError:
            raise ValueError(
                f"ASKGATE_TRUSTED_PROXIES: {entry!r} is not an IP address or network"
            ) from None
    return tuple(networks)


def _parse_ip(value: str) -> IPAddress | None:
    """An address from a header or the peer; tolerates a port ("1.2.3.4:80")."""
    value = value.strip()
    if value.startswith("[") and "]" in value:  # "[2001:db8::1]:443"
        value = value[1 : value.index("]")]
    elif value.count(":") == 1:
        value = value.partition(":")[0]
    try:
        address = ipaddress.ip_address(value)
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
        return address.ipv4_mapped
    return address


def resolve_client_ip(
    peer: str | None, forwarded_for: Sequence[str], trusted: Sequence[IPNetwork]
) -> str:
    """The client's address: the ASGI peer, unless that peer is a trusted proxy.

    Behind trusted proxies, X-Forwarded-For is read from the right (each proxy
    appends the address it received the request from) and the first address that
    is not a trusted proxy is the client. Anything left of it was written by the
    client itself and is ignored; so is the header when the peer is not trusted.
    """
    address = _parse_ip(peer) if peer else None
    if address is None:
        return peer or UNKNOWN_CLIENT
    hops = [hop for header in forwarded_for for hop in header.split(",")]
    while _is_trusted(address, trusted) and hops:
        previous = _parse_ip(hops.pop())
        if previous is None:
            break  # garbage in the chain: keep the last hop we can vouch for
        address = previous
    return str(address)


def _is_trusted(address: IPAddress, trusted: Sequence[IPNetwork]) -> bool:
    return any(address in network for network in trusted)


# --- limits -----------------------------------------------------------------


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
        pool: coredis.ConnectionPool | None = None,
    ) -> None:
        self.trusted_proxies = parse_trusted_proxies(settings.trusted_proxies)
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

    def client_ip(self, request: Request) -> str:
        peer = request.client.host if request.client else None
        return resolve_client_ip(
            peer, request.headers.getlist("x-forwarded-for"), self.trusted_proxies
        )

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


@dataclass(frozen=True, slots=True)
class LoginGuard:
    """Login throttling bound to one request's client address."""

    throttle: Throttle
    client_ip: str

    async def begin(self, username: str) -> None:
        await self.throttle.begin_login(username=username, client_ip=self.client_ip)

    async def failed(self) -> None:
        await self.throttle.login_failed(client_ip=self.client_ip)

    async def succeeded(self, username: str) -> None:
        await self.throttle.login_succeeded(username=username)


def _storage(uri: str, **options: Any) -> Storage:
    storage = storage_from_string(uri, wrap_exceptions=True, **options)
    assert isinstance(storage, Storage)  # an async+ scheme gives an async storage
    return storage


# --- FastAPI dependencies -----------------------------------------------------


async def get_throttle(request: Request) -> Throttle:
    throttle: Throttle = request.app.state.runtime.limiter
    return throttle


ThrottleDep = Annotated[Throttle, Depends(get_throttle)]


async def login_guard(request: Request, throttle: ThrottleDep) -> LoginGuard:
    return LoginGuard(throttle, throttle.client_ip(request))


async def limit_questions(user: CurrentUser, throttle: ThrottleDep) -> RateLimitStatus:
    return await throttle.count_question(user.id)


async def limit_registrations(request: Request, throttle: ThrottleDep) -> None:
    await throttle.count_registration(throttle.client_ip(request))


LoginThrottle = Annotated[LoginGuard, Depends(login_guard)]
QuestionRateLimit = Annotated[RateLimitStatus, Depends(limit_questions)]
RegistrationRateLimit = Depends(limit_registrations)
