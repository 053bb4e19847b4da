"""Leases in a window: at most `limit` live leases per key, each living `ttl`
seconds unless released sooner.

One primitive for every "counted before the work" limit that may also give a
count back: a login attempt takes a lease before its password is verified, and a
success releases it (so honest logins from a shared address lock nothing), while
a failure keeps it as the failure's record until it expires; a question takes one
of its user's slots before the upstream call and releases it when it ends.

Taking a lease is one atomic step in the store (drop the expired leases, refuse if
`limit` are live, else add one), so concurrent requests cannot slip past a limit:
of a burst, exactly `limit` get a lease and the rest are refused at once. A
refusal says how long until the oldest live lease expires.

In process (`MemoryLeases`, one per app) or in Redis (`RedisLeases`: one Lua
script on a sorted set per key, scored by expiry in the server's clock, so that
every worker and instance shares the leases and their clocks cannot disagree).
A lease its holder never released (a crashed process) expires after its `ttl`.
"""

import math
import secrets
import time
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import coredis  # only with Redis configured (see askgate.throttle)

# The in-process store drops every expired lease when its number of keys has
# doubled since the last sweep: memory stays within twice the live keys.
MIN_SWEEP_KEYS = 1024


class LeaseStoreError(Exception):
    """The store could not be reached or answered wrongly."""


@dataclass(frozen=True, slots=True)
class Acquisition:
    lease: str | None  # None: refused, `limit` leases are live
    wait: float = 0.0  # when refused: seconds until the oldest lease expires

    def retry_after(self) -> int:
        return max(1, math.ceil(self.wait))


class Leases(ABC):
    @abstractmethod
    async def acquire(self, key: str, *, limit: int, ttl: float) -> Acquisition:
        """A new lease on `key`, unless `limit` are live (one atomic step)."""

    @abstractmethod
    async def release(self, key: str, lease: str) -> None:
        """Give a lease back before it expires; releasing twice is harmless."""

    @abstractmethod
    async def clear(self, key: str) -> None:
        """Drop every lease on `key`."""

    async def ping(self) -> bool:
        """Whether the store answers (the readiness probe); in process: always."""
        return True


def _new_lease() -> str:
    return secrets.token_hex(8)


class MemoryLeases(Leases):
    """The leases of one process. Every method runs without awaiting, so on one
    event loop each is atomic."""

    def __init__(self) -> None:
        self._held: dict[str, dict[str, float]] = {}  # key -> lease -> expiry
        self._sweep_above = MIN_SWEEP_KEYS

    async def acquire(self, key: str, *, limit: int, ttl: float) -> Acquisition:
        now = time.monotonic()
        live = {
            lease: expiry
            for lease, expiry in self._held.get(key, {}).items()
            if expiry > now
        }
        if len(live) >= limit:
            self._held[key] = live
            return Acquisition(None, min(live.values()) - now)
        lease = _new_lease()
        live[lease] = now + ttl
        self._held[key] = live
        if len(self._held) > self._sweep_above:
            self._sweep(now)
        return Acquisition(lease)

    async def release(self, key: str, lease: str) -> None:
        held = self._held.get(key)
        if held is not None:
            held.pop(lease, None)
            if not held:
                del self._held[key]

    async def clear(self, key: str) -> None:
        self._held.pop(key, None)

    def _sweep(self, now: float) -> None:
        for key in list(self._held):
            live = {
                lease: expiry
                for lease, expiry in self._held[key].items()
                if expiry > now
            }
            if live:
                self._held[key] = live
            else:
                del self._held[key]
        self._sweep_above = max(MIN_SWEEP_KEYS, 2 * len(self._held))


# KEYS[1]: the sorted set of one key's leases, scored by expiry (server ms).
# ARGV: limit, ttl in ms, the new lease. Returns -1 when the lease was added, else
# the milliseconds until the oldest lease expires. The key itself expires with its
# last lease, so that nothing is left behind.
_ACQUIRE = """
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000 + math.floor(tonumber(clock[2]) / 1000)
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[1]) then
  local oldest = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
  return tonumber(oldest[2]) - now
end
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[2]), ARGV[3])
local last = redis.call('ZRANGE', KEYS[1], -1, -1, 'WITHSCORES')
redis.call('PEXPIREAT', KEYS[1], last[2])
return -1
"""


class RedisLeases(Leases):
    """Leases shared by every process using the same Redis (needs Redis >= 5,
    which replicates a script's effects, so it may read the server's clock)."""

    def __init__(self, client: "coredis.Redis[bytes]", prefix: str) -> None:
        import coredis.exceptions  # only now: see the TYPE_CHECKING import above

        self._client = client
        self._prefix = f"{prefix}:leases:"
        self._acquire = client.register_script(_ACQUIRE)
        self._errors = (coredis.exceptions.RedisError, OSError)

    async def ping(self) -> bool:
        try:
            await self._client.ping()
        except self._errors:
            return False
        return True

    async def acquire(self, key: str, *, limit: int, ttl: float) -> Acquisition:
        lease = _new_lease()
        try:
            wait_ms = await self._acquire.execute(
                [self._prefix + key], [limit, math.ceil(ttl * 1000), lease]
            )
        except self._errors as exc:
            raise LeaseStoreError(str(exc)) from exc
        if not isinstance(wait_ms, int):
            raise LeaseStoreError(f"unexpected answer {wait_ms!r}")
        if wait_ms < 0:
            return Acquisition(lease)
        return Acquisition(None, wait_ms / 1000)

    async def release(self, key: str, lease: str) -> None:
        try:
            await self._client.zrem(self._prefix + key, [lease])
        except self._errors as exc:
            raise LeaseStoreError(str(exc)) from exc

    async def clear(self, key: str) -> None:
        try:
            await self._client.delete([self._prefix + key])
        except self._errors as exc:
            raise LeaseStoreError(str(exc)) from exc
