"""How an upstream fails: the error types, and the translation of what aiohttp
raises and what the upstream answers (status, Retry-After, content type) into them.

Every `detail` here is safe to show a user: none carries the API key, a URL or the
upstream's own error text.
"""

import math
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime

import aiohttp

# Statuses that say "try again shortly"; any other 4xx is about the request itself.
TRANSIENT_STATUSES = frozenset({429, 502, 503, 504})


class UpstreamError(Exception):
    """The upstream failed; `detail` is safe to show (never holds the API key).

    `transient`: the same request may succeed if sent again (connection errors,
    429/502/503/504). `upstream_fault`: the failure says the upstream is unwell, so
    it counts towards its circuit breaker (a 400 about the request does not).
    `retry_after`: the upstream's Retry-After, in seconds, when it sent one.
    """

    def __init__(
        self,
        detail: str,
        *,
        transient: bool = False,
        upstream_fault: bool = True,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(detail)
        self.detail = detail
        self.transient = transient
        self.upstream_fault = upstream_fault
        self.retry_after = retry_after


class UpstreamTimeout(UpstreamError):
    pass


def question_too_long() -> UpstreamTimeout:
    """The question ran past ASKGATE_LLM_MAX_QUESTION_SECONDS (a 504): neither
    retried nor sent to a fallback, which would only wait longer."""
    return UpstreamTimeout(
        "The LLM upstream did not finish within the time askgate allows one "
        "question (ASKGATE_LLM_MAX_QUESTION_SECONDS)",
        upstream_fault=False,
    )


class UpstreamBusy(UpstreamError):
    """askgate did not call the upstream: its circuit is open or too many requests
    are in flight. Answer 503 with `Retry-After: retry_after`."""

    def __init__(self, detail: str, *, retry_after: float) -> None:
        super().__init__(detail, upstream_fault=False, retry_after=retry_after)
        self.retry_after: float = retry_after


def retry_after_header(error: UpstreamBusy) -> dict[str, str]:
    """The Retry-After header for a 503 caused by `error`."""
    return {"Retry-After": str(math.ceil(error.retry_after))}


def invalid_response(what: str) -> UpstreamError:
    return UpstreamError(f"The LLM upstream sent an invalid response: {what}")


def too_large(limit: int) -> UpstreamError:
    return UpstreamError(f"The LLM upstream response is too large (over {limit} bytes)")


def translate(exc: BaseException, read_timeout: float) -> UpstreamError:
    """The UpstreamError for what aiohttp (or a timeout) raised."""
    # A read timeout is not retried: the upstream may be busy generating, and
    # asking again would multiply the wait.
    if isinstance(exc, aiohttp.ConnectionTimeoutError):
        return UpstreamTimeout(
            "Timed out connecting to the LLM upstream", transient=True
        )
    if isinstance(exc, TimeoutError):
        return UpstreamTimeout(
            "Timed out waiting for the LLM upstream "
            f"(nothing received for {read_timeout:g}s)"
        )
    if isinstance(exc, aiohttp.ClientSSLError):
        return UpstreamError("Could not connect to the LLM upstream (TLS failed)")
    if isinstance(exc, aiohttp.ClientConnectorError):
        return UpstreamError("Could not connect to the LLM upstream", transient=True)
    if isinstance(exc, aiohttp.ClientPayloadError | aiohttp.ServerDisconnectedError):
        return UpstreamError(
            "The LLM upstream closed the connection mid-answer", transient=True
        )
    if isinstance(exc, aiohttp.ClientConnectionError):
        return UpstreamError(
            f"The connection to the LLM upstream failed ({type(exc).__name__})",
            transient=True,
        )
    return UpstreamError(f"LLM upstream request failed ({type(exc).__name__})")


def check_status(response: aiohttp.ClientResponse) -> None:
    """Raises the UpstreamError an answer other than 200 means."""
    status = response.status
    if status == 200:
        return
    transient = status in TRANSIENT_STATUSES
    retry_after = parse_retry_after(response.headers.get("Retry-After"))
    if status == 429:
        detail = "The LLM upstream is rate limiting requests (HTTP 429)"
    else:
        detail = f"The LLM upstream answered HTTP {status}"
    raise UpstreamError(
        detail,
        transient=transient,
        upstream_fault=transient or status >= 500,
        retry_after=retry_after if transient else None,
    )


def check_content_type(response: aiohttp.ClientResponse, expected: str) -> None:
    if response.content_type != expected:
        raise UpstreamError(
            f"The LLM upstream sent {response.content_type or 'no content type'}, "
            f"expected {expected}"
        )


def parse_retry_after(value: str | None) -> float | None:
    """Retry-After as seconds from now: delta-seconds or an HTTP date."""
    if value is None:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - datetime.now(UTC)).total_seconds())
