"""Upstream resilience: retries, a circuit breaker and a concurrency cap per
upstream, and fallback upstreams tried in order.

`ResilientClient` has the interface of `LLMClient` (`complete`, `stream`, `check`,
`model`), so the questions service is unaware of it: one call of `complete` or
`stream` is one question, however many attempts it took.

Nothing is retried once the client has seen part of the answer: `complete` returns
nothing before it has the whole answer, and `stream` retries (or falls back) only
before its first delta. These few state machines are written here rather than
taken from a retry or breaker library because the rule "never after the first
delta of an async generator" is the heart of them and fits no decorator.
"""

import asyncio
import enum
import itertools
import random
import time
from collections.abc import (
    AsyncGenerator,
    AsyncIterator,
    Awaitable,
    Callable,
    Iterator,
    Sequence,
)
from contextlib import aclosing, asynccontextmanager, contextmanager
from dataclasses import dataclass

import aiohttp

from askgate.config import Settings
from askgate.llm.errors import UpstreamBusy, UpstreamError, question_too_long
from askgate.llm.http import LLMClient
from askgate.llm.types import ChatParams, Completion, Delta, StreamEnd
from askgate.metrics import UpstreamMetrics

# How soon a caller turned away because every slot stayed taken may try again.
BUSY_RETRY_AFTER = 5.0


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """Exponential backoff with full jitter; the upstream's Retry-After wins, up
    to `retry_after_cap` seconds."""

    max_retries: int = 2
    base_delay: float = 0.25
    max_delay: float = 4.0
    retry_after_cap: float = 10.0

    def delay(self, retry: int, retry_after: float | None) -> float:
        """Seconds to wait before retry number `retry` (0 for the first)."""
        if retry_after is not None:
            return min(retry_after, self.retry_after_cap)
        ceiling = min(self.max_delay, self.base_delay * 2**retry)
        return random.uniform(0, ceiling)  # noqa: S311 - jitter, not a secret


class CircuitState(enum.StrEnum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


class CircuitBreaker:
    """Opens after `failures` consecutive failures; after `cooldown` seconds lets
    one trial request through (half-open), whose outcome closes or reopens it."""

    def __init__(
        self,
        *,
        failures: int,
        cooldown: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._threshold = failures
        self._cooldown = cooldown
        self._clock = clock
        self._failures = 0
        self._opened_at: float | None = None
        self._trial_running = False

    @property
    def state(self) -> CircuitState:
        if self._opened_at is None:
            return CircuitState.CLOSED
        if self._clock() - self._opened_at < self._cooldown:
            return CircuitState.OPEN
        return CircuitState.HALF_OPEN

    def retry_after(self) -> float:
        if self._opened_at is None:
            return 0.0
        return max(1.0, self._opened_at + self._cooldown - self._clock())

    def check(self) -> None:
        """Raises UpstreamBusy while open; changes nothing."""
        state = self.state
        if state is CircuitState.OPEN or (
            state is CircuitState.HALF_OPEN and self._trial_running
        ):
            raise UpstreamBusy(
                "The LLM upstream is failing; askgate stopped calling it for a "
                "moment (circuit open)",
                retry_after=self.retry_after(),
            )

    def admit(self) -> bool:
        """Raises UpstreamBusy while open; True if this call is the half-open
        trial, which must end in success(), failure() or abandon()."""
        self.check()
        if self.state is CircuitState.HALF_OPEN:
            self._trial_running = True
            return True
        return False

    def success(self) -> None:
        self._failures = 0
        self._opened_at = None
        self._trial_running = False

    def failure(self) -> None:
        self._trial_running = False
        self._failures += 1
        if self._opened_at is not None or self._failures >= self._threshold:
            self._opened_at = self._clock()

    def abandon(self) -> None:
        """The trial ended without a verdict (the client left): allow another."""
        self._trial_running = False


@contextmanager
def _reporting_instead_of_busy(previous: UpstreamError | None) -> Iterator[None]:
    """A retry turned away (circuit open, no free slot) reports the failure that
    caused the retry, not the refusal."""
    try:
        yield
    except UpstreamBusy:
        if previous is None:
            raise
        raise previous from None


class Upstream:
    """One upstream behind its own breaker and concurrency cap, with retries.

    `name` is what /health shows for it: the public name of the model it
    answers for, or its upstream model for a fallback of ASKGATE_LLM_FALLBACK_URLS.
    """

    def __init__(
        self,
        client: LLMClient,
        *,
        breaker: CircuitBreaker,
        max_concurrency: int,
        queue_timeout: float,
        retry: RetryPolicy,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        name: str | None = None,
    ) -> None:
        self.client = client
        self.name = name or client.model
        self.breaker = breaker
        self.in_flight = 0
        self.metrics = UpstreamMetrics(self.name)
        self._slots = asyncio.Semaphore(max_concurrency)
        self._queue_timeout = queue_timeout
        self._retry = retry
        self._sleep = sleep

    @asynccontextmanager
    async def _attempt(self, previous: UpstreamError | None) -> AsyncIterator[None]:
        """One call of the upstream: a free slot, then the breaker's consent.

        The breaker is asked before queueing too, so an open circuit answers at
        once. A retry turned away reports the failure that caused it instead.
        Failures are recorded by the caller; anything else that ends the attempt
        (the client leaving) gives a half-open trial back.
        """
        with _reporting_instead_of_busy(previous):
            self.breaker.check()
            try:
                if self._slots.locked():  # wait, but not for ever
                    self.metrics.queued.inc()
                    try:
                        async with asyncio.timeout(self._queue_timeout):
                            await self._slots.acquire()
                    finally:
                        self.metrics.queued.dec()
                else:  # a free slot: taken at once, no timer to arm
                    await self._slots.acquire()
            except TimeoutError:
                raise UpstreamBusy(
                    "Too many questions in flight to the LLM upstream; none "
                    f"finished within {self._queue_timeout:g}s",
                    retry_after=BUSY_RETRY_AFTER,
                ) from None
        self.in_flight += 1
        self.metrics.in_flight.inc()
        try:
            with _reporting_instead_of_busy(previous):
                # the circuit may have opened while this call waited for a slot
                is_trial = self.breaker.admit()
            started = time.perf_counter()
            try:
                yield
            finally:
                self.metrics.duration.observe(time.perf_counter() - started)
                if is_trial:
                    self.breaker.abandon()
        finally:
            self.in_flight -= 1
            self.metrics.in_flight.dec()
            self._slots.release()

    def _succeeded(self) -> None:
        if self.breaker.state is not CircuitState.CLOSED:
            self.metrics.circuit_open.set(0)
        self.breaker.success()

    def _record(self, exc: UpstreamError) -> None:
        if exc.upstream_fault:
            self.breaker.failure()
            if self.breaker.state is not CircuitState.CLOSED:
                self.metrics.circuit_open.set(1)
        else:
            self._succeeded()  # it answered; the request was at fault

    def _retry_delay(self, exc: UpstreamError, retry: int) -> float | None:
        """Seconds before the next attempt, or None when there is none."""
        if not exc.transient or retry >= self._retry.max_retries:
            return None
        return self._retry.delay(retry, exc.retry_after)

    async def complete(self, params: ChatParams) -> Completion:
        error: UpstreamError | None = None
        for retry in itertools.count():
            async with self._attempt(error):
                try:
                    completion = await self.client.complete(params)
                except UpstreamError as exc:
                    self._record(exc)
                    delay = self._retry_delay(exc, retry)
                    if delay is None:
                        raise
                    error = exc
                else:
                    self._succeeded()
                    return completion
            await self._sleep(delay)
        raise AssertionError("unreachable")

    async def stream(
        self, params: ChatParams, *, deadline: float | None = None
    ) -> AsyncGenerator[Delta | StreamEnd]:
        """`deadline` (the event loop's clock): no attempt starts after it, and
        the one under way is cut then (LLMClient.stream)."""
        error: UpstreamError | None = None
        for retry in itertools.count():
            if deadline is not None and asyncio.get_running_loop().time() >= deadline:
                raise question_too_long()
            started = False
            async with (
                self._attempt(error),
                aclosing(self.client.stream(params, deadline=deadline)) as events,
            ):
                sent = time.perf_counter()
                try:
                    async for event in events:
                        if not started and isinstance(event, Delta):
                            started = True
                            self.metrics.first_token.observe(time.perf_counter() - sent)
                        yield event
                except UpstreamError as exc:
                    self._record(exc)
                    delay = None if started else self._retry_delay(exc, retry)
                    if delay is None:
                        raise
                    error = exc
                else:
                    self._succeeded()
                    return
            await self._sleep(delay)


class ResilientClient:
    """The primary upstream, then each fallback in order, as one client.

    The next upstream is tried only for the causes that are retried (see
    `_falls_back`); any other failure is the answer at once.

    `max_seconds` (ASKGATE_LLM_MAX_QUESTION_SECONDS; None: no limit) bounds one
    question, every attempt and fallback included: `complete` is cut then, and
    `stream` gives its attempts what is left and checks the time as each event
    arrives (one clock read), so that a slow client cannot stretch it either.
    """

    def __init__(
        self, upstreams: Sequence[Upstream], *, max_seconds: float | None = None
    ) -> None:
        if not upstreams:
            raise ValueError("at least one upstream is required")
        self.upstreams = tuple(upstreams)
        self._max_seconds = max_seconds

    def __repr__(self) -> str:
        return f"ResilientClient({[u.client for u in self.upstreams]!r})"

    @property
    def model(self) -> str:
        """The primary's model: what a question that reached none is stored with."""
        return self.upstreams[0].client.model

    async def complete(self, params: ChatParams) -> Completion:
        if self._max_seconds is None:
            return await self._complete(params)
        deadline = asyncio.timeout(self._max_seconds)
        try:
            async with deadline:
                return await self._complete(params)
        except TimeoutError:
            if deadline.expired():
                raise question_too_long() from None
            raise

    async def _complete(self, params: ChatParams) -> Completion:
        errors: list[UpstreamError] = []
        for upstream in self.upstreams:
            try:
                return await upstream.complete(params)
            except UpstreamError as exc:
                if not _falls_back(exc):
                    raise
                errors.append(exc)
        raise _reported(errors)

    async def stream(self, params: ChatParams) -> AsyncGenerator[Delta | StreamEnd]:
        clock = asyncio.get_running_loop().time
        deadline = None if self._max_seconds is None else clock() + self._max_seconds
        errors: list[UpstreamError] = []
        for upstream in self.upstreams:
            started = False
            try:
                async with aclosing(
                    upstream.stream(params, deadline=deadline)
                ) as events:
                    async for event in events:
                        if deadline is not None and clock() >= deadline:
                            raise question_too_long()
                        started = started or isinstance(event, Delta)
                        yield event
            except UpstreamError as exc:
                if started or not _falls_back(exc):
                    raise
                errors.append(exc)
            else:
                return
        raise _reported(errors)

    async def check(self) -> bool:
        """True when any upstream lists its models."""
        results = await asyncio.gather(*(u.client.check() for u in self.upstreams))
        return any(results)


def _falls_back(exc: UpstreamError) -> bool:
    """Whether the next upstream may answer instead: only for the causes that are
    retried (connection errors, 429/502/503/504, connect timeouts), or when the
    upstream was not called at all (circuit open, no free slot). Anything else is
    the answer at once: a request the upstream rejected (400) would be rejected by
    each fallback too, and a read timeout would add one read timeout per fallback
    to the caller's wait."""
    return exc.transient or isinstance(exc, UpstreamBusy)


def _reported(errors: list[UpstreamError]) -> UpstreamError:
    """The first real failure; if every upstream turned the request away (busy or
    circuit open), the busy error that allows the soonest retry."""
    for error in errors:
        if not isinstance(error, UpstreamBusy):
            return error
    busy = [error for error in errors if isinstance(error, UpstreamBusy)]
    return min(busy, key=lambda error: error.retry_after)


def longest_question_seconds(settings: Settings) -> float:
    """At most how long askgate works on one question, from its reservation to
    its end, when the process lives (askgate.quota.service counts a quota
    reservation this long, plus a margin).

    ASKGATE_LLM_MAX_QUESTION_SECONDS bounds every attempt, backoff and fallback
    together, and a stream's whole answer; past it the question fails. The
    deadline is checked between attempts and as each event arrives, and the
    current attempt's connection is given only what is left of it, so the
    question may overrun it by one wait that began before it: a backoff or a
    queue for a free slot (whichever may be longer), then one send to a slow
    client, which a stream waits for at most ASKGATE_LLM_READ_TIMEOUT.
    """
    backoff = max(RetryPolicy().max_delay, settings.llm_retry_after_cap)
    return (
        settings.llm_max_question_seconds
        + max(backoff, settings.llm_queue_timeout)
        + settings.llm_read_timeout
    )


def build_upstream(
    settings: Settings,
    http: aiohttp.ClientSession,
    *,
    base_url: str,
    model: str,
    api_key: str | None,
    name: str | None = None,
) -> Upstream:
    """One upstream with the ASKGATE_LLM_* limits: timeouts, concurrency cap,
    retries and a circuit breaker of its own."""
    return Upstream(
        LLMClient(
            http,
            base_url=base_url,
            model=model,
            api_key=api_key,
            connect_timeout=settings.llm_connect_timeout,
            read_timeout=settings.llm_read_timeout,
            system_prompt=settings.llm_system_prompt,
            max_response_bytes=settings.llm_max_response_bytes,
        ),
        breaker=CircuitBreaker(
            failures=settings.llm_breaker_failures,
            cooldown=settings.llm_breaker_cooldown,
        ),
        max_concurrency=settings.llm_max_concurrency,
        queue_timeout=settings.llm_queue_timeout,
        retry=RetryPolicy(
            max_retries=settings.llm_max_retries,
            retry_after_cap=settings.llm_retry_after_cap,
        ),
        name=name,
    )


def build_client(settings: Settings, http: aiohttp.ClientSession) -> ResilientClient:
    """The ASKGATE_LLM_* primary and fallbacks, each with its own breaker and cap."""
    if settings.llm_base_url is None or settings.llm_model is None:
        raise ValueError("no LLM upstream is configured")
    configs = [
        (settings.llm_base_url, settings.llm_model, settings.llm_api_key),
        *((f.base_url, f.model, f.api_key) for f in settings.llm_fallback_urls),
    ]
    return ResilientClient(
        max_seconds=settings.llm_max_question_seconds,
        upstreams=[
            build_upstream(
                settings,
                http,
                base_url=base_url,
                model=model,
                api_key=api_key.get_secret_value() if api_key else None,
            )
            for base_url, model, api_key in configs
        ],
    )
