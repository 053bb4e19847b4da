"""askgate's Prometheus metrics: defined once here, updated where things happen.

A shared leaf module (it imports nothing of askgate's), so that the middleware,
the throttle, the upstream wrappers and the questions service may all count
without importing each other.

Under `askgate serve --workers N` (N > 1) every worker writes its values to files
in PROMETHEUS_MULTIPROC_DIR (prometheus-client's multiprocess mode, chosen by the
library when the variable is set before it is imported; `askgate serve` creates
the directory, see `multiprocess_dir`), and /metrics merges them
(askgate.metrics_endpoint). Otherwise the values live in this process.

No label carries a user id, a username, a raw path or a question: routes are
labelled by their template (`/questions/{question_id}`), unknown paths by
UNMATCHED_ROUTE, models by their public name from the configuration.

What counting costs a request: one dict lookup for its (route, method, status)
children, one counter increment and one histogram observation. The children of
the other metrics are looked up once, where the labelled thing is created (an
upstream) or at import (the refusal kinds).
"""

import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Final

from prometheus_client import Counter, Gauge, Histogram

MULTIPROC_ENV: Final = "PROMETHEUS_MULTIPROC_DIR"
UNMATCHED_ROUTE: Final = "unmatched"  # the route label of a 404 for no route
# Methods outside these are labelled OTHER_METHOD: a method is any token a
# client sends, and each distinct label value is a new series.
_METHODS: Final = frozenset(
    {"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"}
)
OTHER_METHOD: Final = "other"

# Seconds. A question takes from tens of milliseconds (a cached upstream) to a
# minute (a long answer of a local model); the rest of the API far less.
_REQUEST_BUCKETS: Final = (
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60,
)  # fmt: skip
_UPSTREAM_BUCKETS: Final = (
    0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 20, 30, 60, 120,
)  # fmt: skip

HTTP_REQUESTS = Counter(
    "askgate_http_requests",
    "HTTP requests answered, by route template, method and status",
    ["route", "method", "status"],
)
HTTP_DURATION = Histogram(
    "askgate_http_request_duration_seconds",
    "Time from a request's arrival to the end of its response (a stream's "
    "whole length included), by route template and method",
    ["route", "method"],
    buckets=_REQUEST_BUCKETS,
)
QUESTIONS = Counter(
    "askgate_questions",
    "Questions stored, by model and status (answered, failed, cancelled), "
    "from both APIs",
    ["model", "status"],
)
PROMPT_TOKENS = Counter(
    "askgate_prompt_tokens",
    "Prompt tokens of stored questions, as their upstream reported them",
    ["model"],
)
COMPLETION_TOKENS = Counter(
    "askgate_completion_tokens",
    "Completion tokens of stored questions, as their upstream reported them",
    ["model"],
)
UPSTREAM_DURATION = Histogram(
    "askgate_upstream_request_duration_seconds",
    "One call of an LLM upstream (each retry is a call), from sending the "
    "request to the answer's end, by the model the upstream answers for",
    ["model"],
    buckets=_UPSTREAM_BUCKETS,
)
UPSTREAM_FIRST_TOKEN = Histogram(
    "askgate_upstream_time_to_first_token_seconds",
    "A streamed call of an LLM upstream: from sending the request to its first delta",
    ["model"],
    buckets=_UPSTREAM_BUCKETS,
)
UPSTREAM_IN_FLIGHT = Gauge(
    "askgate_upstream_in_flight",
    "Calls of an LLM upstream running now (they hold one of its "
    "ASKGATE_LLM_MAX_CONCURRENCY slots)",
    ["model"],
    multiprocess_mode="livesum",
)
UPSTREAM_QUEUED = Gauge(
    "askgate_upstream_queued",
    "Calls of an LLM upstream waiting for a free slot now",
    ["model"],
    multiprocess_mode="livesum",
)
UPSTREAM_CIRCUIT_OPEN = Gauge(
    "askgate_upstream_circuit_open",
    "1 while an upstream's circuit breaker is not closed (open, or half-open "
    "while a trial decides) in at least one worker; 0 when closed in all",
    ["model"],
    multiprocess_mode="livemax",
)
REFUSALS = Counter(
    "askgate_refusals",
    "Requests refused by an abuse limit or the daily quota, by kind",
    ["kind"],
)
LOGIN_FAILURES = Counter(
    "askgate_login_failures",
    "Logins refused for a wrong username or password or an inactive account "
    "(lockouts count as refusals of kind login)",
)

# The children of fixed label sets, looked up once.
REFUSED_LOGIN = REFUSALS.labels("login")
REFUSED_QUESTIONS_PER_MINUTE = REFUSALS.labels("questions_per_minute")
REFUSED_QUESTIONS_AT_ONCE = REFUSALS.labels("questions_at_once")
REFUSED_REGISTRATIONS = REFUSALS.labels("registrations")
REFUSED_ACCOUNT_CHANGES = REFUSALS.labels("account_changes")
REFUSED_QUOTA = REFUSALS.labels("quota")

_requests: dict[tuple[str, str, int], tuple[Counter, Histogram]] = {}
_questions: dict[tuple[str, str], Counter] = {}
_tokens: dict[str, tuple[Counter, Counter]] = {}


def observe_request(route: str, method: str, status: int, seconds: float) -> None:
    """Count one answered request; `route` is a template or UNMATCHED_ROUTE."""
    if method not in _METHODS:
        method = OTHER_METHOD
    key = (route, method, status)
    children = _requests.get(key)
    if children is None:
        children = _requests[key] = (
            HTTP_REQUESTS.labels(route, method, str(status)),
            HTTP_DURATION.labels(route, method),
        )
    counter, histogram = children
    counter.inc()
    histogram.observe(seconds)


def count_question(
    model: str, status: str, prompt_tokens: int | None, completion_tokens: int | None
) -> None:
    """Count one stored question of `model` (a configured public name)."""
    key = (model, status)
    questions = _questions.get(key)
    if questions is None:
        questions = _questions[key] = QUESTIONS.labels(model, status)
    questions.inc()
    if prompt_tokens is None and completion_tokens is None:
        return
    tokens = _tokens.get(model)
    if tokens is None:
        tokens = _tokens[model] = (
            PROMPT_TOKENS.labels(model),
            COMPLETION_TOKENS.labels(model),
        )
    if prompt_tokens:
        tokens[0].inc(prompt_tokens)
    if completion_tokens:
        tokens[1].inc(completion_tokens)


class UpstreamMetrics:
    """The children of one upstream's metrics, looked up when it is built."""

    __slots__ = ("circuit_open", "duration", "first_token", "in_flight", "queued")

    def __init__(self, model: str) -> None:
        self.duration = UPSTREAM_DURATION.labels(model)
        self.first_token = UPSTREAM_FIRST_TOKEN.labels(model)
        self.in_flight = UPSTREAM_IN_FLIGHT.labels(model)
        self.queued = UPSTREAM_QUEUED.labels(model)
        self.circuit_open = UPSTREAM_CIRCUIT_OPEN.labels(model)
        self.circuit_open.set(0)


# --- several worker processes -----------------------------------------------------


@contextmanager
def multiprocess_dir(workers: int) -> Iterator[None]:
    """For `askgate serve --workers N`: with N > 1, a fresh, empty directory in
    PROMETHEUS_MULTIPROC_DIR for the workers (which inherit the environment)
    while the block runs, removed afterwards. With one worker the app runs in
    this process and keeps its metrics in memory: nothing to do.
    """
    if workers <= 1:
        yield
        return
    path = tempfile.mkdtemp(prefix="askgate-metrics-")
    previous = os.environ.get(MULTIPROC_ENV)
    os.environ[MULTIPROC_ENV] = path
    try:
        yield
    finally:
        if previous is None:
            os.environ.pop(MULTIPROC_ENV, None)
        else:
            os.environ[MULTIPROC_ENV] = previous
        shutil.rmtree(path, ignore_errors=True)


def multiprocess_path() -> str | None:
    """The multiprocess directory this process writes to, if any."""
    return os.environ.get(MULTIPROC_ENV) or None
