"""Upstream resilience: retries, the circuit breaker, the concurrency cap,
fallback upstreams and answers that are not what they claim.

The state machines are exercised on the client with a real aiohttp session
against the fake upstream; what a caller sees goes through HTTP.
"""

import asyncio
import json
import time
from collections.abc import Awaitable, Callable, Iterator
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from typing import Any

import aiohttp
import httpx
import pytest

from askgate.config import Settings, UpstreamConfig
from askgate.llm.errors import UpstreamBusy, UpstreamError, UpstreamTimeout
from askgate.llm.http import LLMClient
from askgate.llm.resilience import (
    CircuitBreaker,
    CircuitState,
    ResilientClient,
    RetryPolicy,
    Upstream,
    build_client,
)
from askgate.llm.types import ChatParams, Completion, Delta, StreamEnd
from askgate.runtime import Runtime
from tests.fake_upstream import MODEL, FakeUpstream, answer_for

PARAMS = ChatParams(content="Hello there", max_tokens=16)


@pytest.fixture
def settings(settings: Settings) -> Settings:
    return settings.model_copy(
        update={"questions_per_minute": 10_000, "llm_max_response_bytes": 4096}
    )


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Sleeps:
    """Records each backoff instead of waiting."""

    def __init__(self) -> None:
        self.delays: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.delays.append(seconds)


def make_upstream(
    http: aiohttp.ClientSession,
    fake: FakeUpstream,
    *,
    model: str = MODEL,
    max_retries: int = 2,
    retry_after_cap: float = 10.0,
    failures: int = 5,
    clock: Clock | None = None,
    max_concurrency: int = 16,
    queue_timeout: float = 30.0,
    sleeps: Sleeps | None = None,
    max_response_bytes: int = 4 * 1024 * 1024,
    read_timeout: float = 1.0,
) -> Upstream:
    return Upstream(
        LLMClient(
            http,
            base_url=fake.base_url,
            model=model,
            read_timeout=read_timeout,
            max_response_bytes=max_response_bytes,
        ),
        breaker=CircuitBreaker(
            failures=failures, cooldown=30.0, clock=clock or Clock()
        ),
        max_concurrency=max_concurrency,
        queue_timeout=queue_timeout,
        retry=RetryPolicy(max_retries=max_retries, retry_after_cap=retry_after_cap),
        sleep=sleeps or Sleeps(),
    )


async def collect(client: ResilientClient | Upstream) -> list[Delta | StreamEnd]:
    return [event async for event in client.stream(PARAMS)]


def state(breaker: CircuitBreaker) -> CircuitState:
    # A call, so mypy does not keep an earlier check's narrowing.
    return breaker.state


def text_of(events: list[Delta | StreamEnd]) -> str:
    return "".join(event.text for event in events if isinstance(event, Delta))


# Retries


@pytest.mark.parametrize("status", [429, 502, 503, 504])
async def test_transient_statuses_are_retried_until_the_upstream_answers(
    http: aiohttp.ClientSession, fake_upstream: FakeUpstream, status: int
) -> None:
    fake_upstream.fail_times, fake_upstream.fail_status = 2, status
    sleeps = Sleeps()

    completion = await make_upstream(http, fake_upstream, sleeps=sleeps).complete(
        PARAMS
    )

    assert completion.text == answer_for("Hello there")
    assert len(fake_upstream.requests) == 3
    assert len(sleeps.delays) == 2


async def test_retries_stop_after_max_retries_with_the_upstream_reason(
    http: aiohttp.ClientSession, fake_upstream: FakeUpstream
) -> None:
    fake_upstream.mode = "status_503"

    with pytest.raises(UpstreamError, match="answered HTTP 503"):
        await make_upstream(http, fake_upstream, max_retries=2).complete(PARAMS)

    assert len(fake_upstream.requests) == 3


@pytest.mark.parametrize("mode", ["status_400", "status_500", "no_choices", "hang"])
async def test_other_failures_are_not_retried(
    http: aiohttp.ClientSession, fake_upstream: FakeUpstream, mode: str
) -> None:
    fake_upstream.mode = mode

    with pytest.raises(UpstreamError):
        await make_upstream(http, fake_upstream).complete(PARAMS)

    assert len(fake_upstream.requests) == 1


def test_backoff_is_exponential_with_jitter_and_bounded() -> None:
    policy = RetryPolicy(base_delay=0.25, max_delay=1.0)

    for retry, ceiling in [(0, 0.25), (1, 0.5), (2, 1.0), (5, 1.0)]:
        delays = {policy.delay(retry, None) for _ in range(200)}
        assert all(0 <= delay <= ceiling for delay in delays)
        assert len(delays) > 1  # jittered, not one fixed value


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        pytest.param("2", [2.0, 2.0], id="seconds"),
        pytest.param("600", [3.0, 3.0], id="capped"),
    ],
)
async def test_retry_after_is_honoured_up_to_the_cap(
    http: aiohttp.ClientSession,
    fake_upstream: FakeUpstream,
    header: str,
    expected: list[float],
) -> None:
    fake_upstream.fail_times, fake_upstream.fail_status = 2, 429
    fake_upstream.retry_after = header
    sleeps = Sleeps()
    upstream = make_upstream(http, fake_upstream, retry_after_cap=3.0, sleeps=sleeps)

    await upstream.complete(PARAMS)

    assert sleeps.delays == expected


async def test_retry_after_as_an_http_date(
    http: aiohttp.ClientSession, fake_upstream: FakeUpstream
) -> None:
    fake_upstream.fail_times, fake_upstream.fail_status = 1, 503
    later = datetime.now(UTC) + timedelta(seconds=120)
    fake_upstream.retry_after = format_datetime(later, usegmt=True)
    sleeps = Sleeps()

    await make_upstream(http, fake_upstream, sleeps=sleeps).complete(PARAMS)

    [delay] = sleeps.delays
    assert delay == 10.0  # the default cap


async def test_connection_errors_are_retried(
    http: aiohttp.ClientSession, fake_upstream: FakeUpstream
) -> None:
    await fake_upstream.stop()
    sleeps = Sleeps()

    with pytest.raises(UpstreamError, match="Could not connect"):
        await make_upstream(http, fake_upstream, sleeps=sleeps).complete(PARAMS)

    assert len(sleeps.delays) == 2


async def test_a_stream_is_retried_before_its_first_delta(
    http: aiohttp.ClientSession, fake_upstream: FakeUpstream
) -> None:
    fake_upstream.fail_times = 1

    events = await collect(make_upstream(http, fake_upstream))

    assert text_of(events) == answer_for("Hello there")
    assert isinstance(events[-1], StreamEnd)
    assert len(fake_upstream.requests) == 2


@pytest.mark.parametrize("mode", ["cut_stream", "early_eof_stream"])
async def test_a_stream_is_never_retried_after_its_first_delta(
    http: aiohttp.ClientSession, fake_upstream: FakeUpstream, mode: str
) -> None:
    fake_upstream.mode = mode
    received: list[str] = []

    async def read() -> None:
        async for event in make_upstream(http, fake_upstream).stream(PARAMS):
            assert isinstance(event, Delta)
            received.append(event.text)

    with pytest.raises(UpstreamError):
        await read()

    assert "".join(received) == "You asked:"
    assert len(fake_upstream.requests) == 1


# Circuit breaker


def test_breaker_opens_after_consecutive_failures_only() -> None:
    breaker = CircuitBreaker(failures=3, cooldown=30.0, clock=Clock())

    for _ in range(2):
        breaker.failure()
    breaker.success()
    for _ in range(2):
        breaker.failure()
    assert state(breaker) is CircuitState.CLOSED
    breaker.failure()

    assert state(breaker) is CircuitState.OPEN
    with pytest.raises(UpstreamBusy, match="circuit open") as caught:
        breaker.admit()
    assert caught.value.retry_after == 30.0


def test_breaker_lets_one_trial_through_after_the_cooldown() -> None:
    clock = Clock()
    breaker = CircuitBreaker(failures=1, cooldown=30.0, clock=clock)
    breaker.failure()
    clock.now += 29.5
    assert state(breaker) is CircuitState.OPEN

    clock.now += 0.5

    assert state(breaker) is CircuitState.HALF_OPEN
    assert breaker.admit() is True
    with pytest.raises(UpstreamBusy):
        breaker.admit()  # one trial at a time
    breaker.success()
    assert state(breaker) is CircuitState.CLOSED
    assert breaker.admit() is False


def test_a_failed_trial_reopens_and_an_abandoned_one_frees_the_slot() -> None:
    clock = Clock()
    breaker = CircuitBreaker(failures=1, cooldown=30.0, clock=clock)
    breaker.failure()
    clock.now += 30
    assert breaker.admit() is True

    breaker.abandon()
    assert breaker.admit() is True
    breaker.failure()

    assert state(breaker) is CircuitState.OPEN
    clock.now += 30
    assert state(breaker) is CircuitState.HALF_OPEN


async def test_an_open_circuit_answers_at_once_without_calling_the_upstream(
    http: aiohttp.ClientSession, fake_upstream: FakeUpstream
) -> None:
    fake_upstream.mode = "status_500"
    upstream = make_upstream(http, fake_upstream, failures=3)
    for _ in range(3):
        with pytest.raises(UpstreamError, match="HTTP 500"):
            await upstream.complete(PARAMS)

    with pytest.raises(UpstreamBusy):
        await upstream.complete(PARAMS)
    with pytest.raises(UpstreamBusy):
        await collect(upstream)

    assert len(fake_upstream.requests) == 3


async def test_a_retry_refused_by_the_breaker_reports_the_real_failure(
    http: aiohttp.ClientSession, fake_upstream: FakeUpstream
) -> None:
    fake_upstream.mode = "status_503"
    upstream = make_upstream(http, fake_upstream, failures=2, max_retries=5)

    with pytest.raises(UpstreamError, match="HTTP 503") as caught:
        await upstream.complete(PARAMS)

    assert not isinstance(caught.value, UpstreamBusy)
    assert len(fake_upstream.requests) == 2
    assert state(upstream.breaker) is CircuitState.OPEN


async def test_a_successful_trial_closes_the_circuit(
    http: aiohttp.ClientSession, fake_upstream: FakeUpstream
) -> None:
    clock = Clock()
    upstream = make_upstream(http, fake_upstream, failures=1, clock=clock)
    fake_upstream.mode = "status_500"
    with pytest.raises(UpstreamError):
        await upstream.complete(PARAMS)
    fake_upstream.mode = "ok"
    clock.now += 30

    await upstream.complete(PARAMS)

    assert state(upstream.breaker) is CircuitState.CLOSED


async def test_request_errors_do_not_open_the_circuit(
    http: aiohttp.ClientSession, fake_upstream: FakeUpstream
) -> None:
    fake_upstream.mode = "status_400"
    upstream = make_upstream(http, fake_upstream, failures=2)

    for _ in range(3):
        with pytest.raises(UpstreamError, match="HTTP 400"):
            await upstream.complete(PARAMS)

    assert state(upstream.breaker) is CircuitState.CLOSED


# Concurrency cap


async def test_requests_beyond_the_cap_wait_for_a_free_slot(
    http: aiohttp.ClientSession, fake_upstream: FakeUpstream
) -> None:
    fake_upstream.gate = asyncio.Event()
    upstream = make_upstream(http, fake_upstream, max_concurrency=2)

    calls = [asyncio.create_task(upstream.complete(PARAMS)) for _ in range(5)]
    while len(fake_upstream.requests) < 2:
        await asyncio.sleep(0.01)
    assert upstream.in_flight == 2
    fake_upstream.gate.set()
    completions = await asyncio.gather(*calls)

    assert all(isinstance(c, Completion) for c in completions)
    assert fake_upstream.max_in_flight == 2
    assert len(fake_upstream.requests) == 5
    assert upstream.in_flight == 0


async def test_a_waiter_gives_up_after_the_queue_timeout(
    http: aiohttp.ClientSession, fake_upstream: FakeUpstream
) -> None:
    fake_upstream.gate = asyncio.Event()
    upstream = make_upstream(http, fake_upstream, max_concurrency=1, queue_timeout=0.2)
    first = asyncio.create_task(upstream.complete(PARAMS))
    while not fake_upstream.requests:
        await asyncio.sleep(0.01)

    with pytest.raises(UpstreamBusy, match="Too many questions in flight") as caught:
        await upstream.complete(PARAMS)

    assert caught.value.retry_after > 0
    fake_upstream.gate.set()
    await first
    assert len(fake_upstream.requests) == 1
    assert state(upstream.breaker) is CircuitState.CLOSED  # not the upstream's fault


# Fallbacks


def two_upstreams(
    http: aiohttp.ClientSession,
    primary: FakeUpstream,
    backup: FakeUpstream,
    **options: Any,
) -> ResilientClient:
    return ResilientClient(
        [
            make_upstream(http, primary, **options),
            make_upstream(http, backup, model="backup-model", **options),
        ]
    )


@pytest.mark.parametrize("mode", ["status_503", "status_429", "down"])
async def test_fallbacks_answer_when_the_primary_fails_for_a_retried_cause(
    http: aiohttp.ClientSession,
    fake_upstream: FakeUpstream,
    second_upstream: FakeUpstream,
    mode: str,
) -> None:
    if mode == "down":
        await fake_upstream.stop()
    else:
        fake_upstream.mode = mode
    client = two_upstreams(http, fake_upstream, second_upstream)

    completion = await client.complete(PARAMS)
    events = await collect(client)

    assert completion.text == text_of(events) == answer_for("Hello there")
    assert [r["model"] for r in second_upstream.requests] == ["backup-model"] * 2
    assert client.model == MODEL


@pytest.mark.parametrize(
    ("mode", "reason"),
    [
        pytest.param("status_400", "HTTP 400", id="bad-request"),
        pytest.param("status_500", "HTTP 500", id="server-error"),
        pytest.param("garbage_json", "not JSON", id="invalid-answer"),
        pytest.param("wrong_content_type", "sent text/html", id="content-type"),
    ],
)
async def test_a_failure_that_is_not_retried_is_not_sent_to_the_fallbacks(
    http: aiohttp.ClientSession,
    fake_upstream: FakeUpstream,
    second_upstream: FakeUpstream,
    mode: str,
    reason: str,
) -> None:
    fake_upstream.mode = mode
    client = two_upstreams(http, fake_upstream, second_upstream)

    with pytest.raises(UpstreamError, match=reason):
        await client.complete(PARAMS)
    with pytest.raises(UpstreamError):
        await collect(client)

    assert len(fake_upstream.requests) == 2
    assert second_upstream.requests == []


async def test_a_read_timeout_is_not_waited_for_again_on_the_fallbacks(
    http: aiohttp.ClientSession,
    fake_upstream: FakeUpstream,
    second_upstream: FakeUpstream,
) -> None:
    fake_upstream.mode = second_upstream.mode = "hang"
    read_timeout = 0.5
    client = two_upstreams(
        http, fake_upstream, second_upstream, read_timeout=read_timeout
    )

    calls: list[Callable[[], Awaitable[object]]] = [
        lambda: client.complete(PARAMS),
        lambda: collect(client),
    ]
    for call in calls:
        started = time.monotonic()
        with pytest.raises(UpstreamTimeout, match=r"nothing received for 0\.5s"):
            await call()
        # One read timeout, not one per upstream.
        assert time.monotonic() - started < 2 * read_timeout

    assert len(fake_upstream.requests) == 2
    assert second_upstream.requests == []


@pytest.mark.parametrize("cause", ["circuit_open", "no_free_slot"])
async def test_fallbacks_answer_when_the_primary_turns_the_request_away(
    http: aiohttp.ClientSession,
    fake_upstream: FakeUpstream,
    second_upstream: FakeUpstream,
    cause: str,
) -> None:
    client = two_upstreams(
        http, fake_upstream, second_upstream, max_concurrency=1, queue_timeout=0.1
    )
    primary = client.upstreams[0]
    held: asyncio.Task[Completion] | None = None
    if cause == "circuit_open":
        for _ in range(5):
            primary.breaker.failure()
        assert state(primary.breaker) is CircuitState.OPEN
    else:
        fake_upstream.gate = asyncio.Event()
        held = asyncio.create_task(primary.complete(PARAMS))
        while not fake_upstream.requests:
            await asyncio.sleep(0.01)

    completion = await client.complete(PARAMS)
    events = await collect(client)

    assert completion.text == text_of(events) == answer_for("Hello there")
    assert [r["model"] for r in second_upstream.requests] == ["backup-model"] * 2
    assert len(fake_upstream.requests) == (0 if held is None else 1)
    if held is not None:
        assert fake_upstream.gate is not None
        fake_upstream.gate.set()
        await held


async def test_no_fallback_once_the_primary_streamed_text(
    http: aiohttp.ClientSession,
    fake_upstream: FakeUpstream,
    second_upstream: FakeUpstream,
) -> None:
    fake_upstream.mode = "cut_stream"
    client = two_upstreams(http, fake_upstream, second_upstream)

    with pytest.raises(UpstreamError, match="mid-answer"):
        await collect(client)

    assert second_upstream.requests == []


async def test_when_every_upstream_fails_the_primary_reason_is_reported(
    http: aiohttp.ClientSession,
    fake_upstream: FakeUpstream,
    second_upstream: FakeUpstream,
) -> None:
    fake_upstream.mode = "status_503"
    second_upstream.mode = "status_502"
    client = two_upstreams(http, fake_upstream, second_upstream)

    with pytest.raises(UpstreamError, match="HTTP 503"):
        await client.complete(PARAMS)

    assert len(second_upstream.requests) == 3  # the fallback was retried too


async def test_busy_only_when_every_upstream_turned_the_request_away(
    http: aiohttp.ClientSession,
    fake_upstream: FakeUpstream,
    second_upstream: FakeUpstream,
) -> None:
    fake_upstream.mode = second_upstream.mode = "status_503"
    client = two_upstreams(http, fake_upstream, second_upstream, failures=1)
    with pytest.raises(UpstreamError, match="HTTP 503"):
        await client.complete(PARAMS)

    with pytest.raises(UpstreamBusy):
        await client.complete(PARAMS)

    assert len(fake_upstream.requests) == len(second_upstream.requests) == 1


def test_settings_build_the_primary_then_each_fallback(
    settings: Settings, http: aiohttp.ClientSession
) -> None:
    configured = settings.model_copy(
        update={
            "llm_fallback_urls": [
                UpstreamConfig(base_url="http://b.invalid/v1", model="b"),
                UpstreamConfig(base_url="http://c.invalid/v1", model="c"),
            ],
            "llm_max_response_bytes": 5000,
        }
    )

    client = build_client(configured, http)

    assert [u.client.model for u in client.upstreams] == [MODEL, "b", "c"]
    assert [u.client.base_url for u in client.upstreams][1:] == [
        "http://b.invalid/v1",
        "http://c.invalid/v1",
    ]


# Through HTTP: one stored question per request, whatever happened upstream


async def history(
    client: httpx.AsyncClient, headers: dict[str, str]
) -> list[dict[str, Any]]:
    response = await client.get("/questions/me?limit=100", headers=headers)
    assert response.status_code == 200, response.text
    questions: list[dict[str, Any]] = response.json()
    return questions


async def ask(
    client: httpx.AsyncClient, headers: dict[str, str], **body: Any
) -> httpx.Response:
    return await client.post(
        "/questions", json={"content": "Hello there", **body}, headers=headers
    )


def sse_events(response: httpx.Response) -> list[dict[str, Any]]:
    assert response.status_code == 200, response.text
    return [
        json.loads(line.removeprefix("data: "))
        for line in response.text.splitlines()
        if line.startswith("data: ")
    ]


async def test_a_retried_question_is_answered_and_stored_once(
    client: httpx.AsyncClient,
    user_headers: dict[str, str],
    fake_upstream: FakeUpstream,
) -> None:
    fake_upstream.fail_times = 2

    response = await ask(client, user_headers)

    assert response.status_code == 201, response.text
    assert response.json()["answer"] == answer_for("Hello there")
    assert len(fake_upstream.requests) == 3
    [question] = await history(client, user_headers)
    assert question["status"] == "answered"


async def test_a_retried_stream_is_answered_and_stored_once(
    client: httpx.AsyncClient,
    user_headers: dict[str, str],
    fake_upstream: FakeUpstream,
) -> None:
    fake_upstream.fail_times = 1

    events = sse_events(await ask(client, user_headers, stream=True))

    assert [e["type"] for e in events] == ["delta"] * 4 + ["done"]
    assert len(fake_upstream.requests) == 2
    [question] = await history(client, user_headers)
    assert question["status"] == "answered"
    assert question["answer"] == answer_for("Hello there")


async def test_an_open_circuit_stores_the_question_without_calling_upstream(
    client: httpx.AsyncClient,
    user_headers: dict[str, str],
    admin_headers: dict[str, str],
    fake_upstream: FakeUpstream,
) -> None:
    fake_upstream.mode = "status_500"
    for _ in range(5):
        assert (await ask(client, user_headers)).status_code == 502

    response = await ask(client, user_headers)
    health = (await client.get("/health", headers=admin_headers)).json()

    assert "circuit open" in response.json()["detail"]
    assert len(fake_upstream.requests) == 5
    questions = await history(client, user_headers)
    assert len(questions) == 6
    assert "circuit open" in questions[0]["error"]
    assert {q["status"] for q in questions} == {"failed"}
    assert health["status"] == "degraded"
    assert health["circuit"] == "open"
    assert health["upstreams"] == [{"model": MODEL, "circuit": "open", "in_flight": 0}]


async def test_an_open_circuit_answers_503_with_retry_after(
    client: httpx.AsyncClient,
    user_headers: dict[str, str],
    fake_upstream: FakeUpstream,
) -> None:
    fake_upstream.mode = "status_500"
    for _ in range(5):
        await ask(client, user_headers)

    response = await ask(client, user_headers)

    assert response.status_code == 503, response.text
    assert 1 <= int(response.headers["retry-after"]) <= 30


@pytest.fixture
def saturated(runtime: Runtime, fake_upstream: FakeUpstream) -> Iterator[None]:
    """One slot, taken by a question the upstream holds; waiters give up fast."""
    assert runtime.models is not None
    [primary] = runtime.models.default.client.upstreams
    primary._slots = asyncio.Semaphore(1)
    primary._queue_timeout = 0.2
    fake_upstream.gate = asyncio.Event()
    yield
    fake_upstream.gate.set()


@pytest.mark.usefixtures("saturated")
async def test_a_question_that_finds_no_free_slot_answers_503_with_retry_after(
    client: httpx.AsyncClient,
    user_headers: dict[str, str],
    fake_upstream: FakeUpstream,
) -> None:
    first = asyncio.create_task(ask(client, user_headers, content="first"))
    while not fake_upstream.requests:
        await asyncio.sleep(0.01)

    response = await ask(client, user_headers)
    assert fake_upstream.gate is not None
    fake_upstream.gate.set()
    await first

    assert response.status_code == 503, response.text
    assert int(response.headers["retry-after"]) >= 1
    assert "Too many questions in flight" in response.json()["detail"]


async def test_a_body_over_the_size_limit_is_a_502_and_stored_as_failed(
    client: httpx.AsyncClient,
    user_headers: dict[str, str],
    fake_upstream: FakeUpstream,
) -> None:
    fake_upstream.mode = "oversized"

    response = await ask(client, user_headers)

    assert response.status_code == 502, response.text
    assert "too large (over 4096 bytes)" in response.json()["detail"]
    [question] = await history(client, user_headers)
    assert question["status"] == "failed"
    assert len(fake_upstream.requests) == 1


@pytest.mark.parametrize(
    ("mode", "reason"),
    [
        pytest.param("oversized", "too large (over 4096 bytes)", id="oversized"),
        pytest.param("early_eof_stream", "ended before the answer", id="early-eof"),
    ],
)
async def test_a_stream_that_breaks_its_promise_stores_the_partial_answer(
    client: httpx.AsyncClient,
    user_headers: dict[str, str],
    fake_upstream: FakeUpstream,
    mode: str,
    reason: str,
) -> None:
    fake_upstream.mode = mode

    *deltas, last = sse_events(await ask(client, user_headers, stream=True))

    assert deltas
    assert last["type"] == "error"
    assert reason in last["detail"]
    [question] = await history(client, user_headers)
    assert question["status"] == "failed"
    assert question["answer"] == "".join(d["text"] for d in deltas)
    assert len(question["answer"].encode()) <= 4096
    assert len(fake_upstream.requests) == 1


async def test_health_shows_every_upstream_and_its_circuit(
    client: httpx.AsyncClient, runtime: Runtime, admin_headers: dict[str, str]
) -> None:
    response = await client.get("/health", headers=admin_headers)

    assert response.status_code == 200
    assert response.json() == {
        "status": "ok",
        "database": "ok",
        "llm": "ok",
        "circuit": "closed",
        "upstreams": [{"model": MODEL, "circuit": "closed", "in_flight": 0}],
    }
