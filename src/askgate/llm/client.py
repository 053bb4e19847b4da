"""An OpenAI-compatible chat-completions client over the process's aiohttp session.

No SDK: one POST to `{base_url}/chat/completions`, JSON or server-sent events.
Timeouts are per phase (connect, and the gap between two reads), not one total
timeout, which would cut long streams. Retries, fallbacks, the circuit breaker and
the concurrency cap wrap this client in `askgate.llm.resilience`.
"""

import json
import re
from collections.abc import AsyncGenerator
from contextlib import aclosing
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any, Protocol

import aiohttp

DEFAULT_MAX_RESPONSE_BYTES = 4 * 1024 * 1024
MAX_STREAM_LINE_BYTES = 256 * 1024
MAX_MODEL_NAME = 200  # the width of questions.model
# JSON can escape a lone surrogate ("\ud800"), which UTF-8 cannot encode, and NUL,
# which PostgreSQL text cannot hold: either would fail the answer's storage.
_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")


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


class UpstreamBusy(UpstreamError):
    """askgate did not call the upstream: its circuit is open or too many requests
    are in flight. Answer 503 with `Retry-After: retry_after`."""

    def __init__(self, detail: str, *, retry_after: float) -> None:
        super().__init__(detail, upstream_fault=False, retry_after=retry_after)
        self.retry_after: float = retry_after


@dataclass(frozen=True, slots=True)
class ChatParams:
    content: str
    max_tokens: int
    temperature: float | None = None


@dataclass(frozen=True, slots=True)
class Usage:
    prompt_tokens: int | None
    completion_tokens: int | None


@dataclass(frozen=True, slots=True)
class Completion:
    text: str
    model: str
    usage: Usage


@dataclass(frozen=True, slots=True)
class Delta:
    text: str


@dataclass(frozen=True, slots=True)
class StreamEnd:
    model: str
    usage: Usage


class ChatClient(Protocol):
    """What the questions service needs: one upstream, or several behind retries."""

    @property
    def model(self) -> str: ...

    async def complete(self, params: ChatParams) -> Completion: ...

    def stream(self, params: ChatParams) -> AsyncGenerator[Delta | StreamEnd]: ...

    async def check(self) -> bool: ...


class LLMClient:
    """One upstream, one attempt per call."""

    def __init__(
        self,
        http: aiohttp.ClientSession,
        *,
        base_url: str,
        model: str,
        api_key: str | None = None,
        connect_timeout: float = 5.0,
        read_timeout: float = 60.0,
        system_prompt: str = "",
        max_response_bytes: int = DEFAULT_MAX_RESPONSE_BYTES,
    ) -> None:
        self._http = http
        self.base_url = base_url.rstrip("/")
        self.model = model
        self._api_key = api_key
        self._system_prompt = system_prompt
        self._timeout = aiohttp.ClientTimeout(
            total=None, sock_connect=connect_timeout, sock_read=read_timeout
        )
        self._read_timeout = read_timeout
        self._max_response_bytes = max_response_bytes

    def __repr__(self) -> str:  # the key stays out of reprs and logs
        return f"LLMClient(base_url={self.base_url!r}, model={self.model!r})"

    def _headers(self) -> dict[str, str]:
        headers = {"Content-Type": "application/json"}
        if self._api_key:
            headers["Authorization"] = f"Bearer {self._api_key}"
        return headers

    def _payload(self, params: ChatParams, *, stream: bool) -> dict[str, Any]:
        messages = []
        if self._system_prompt:
            messages.append({"role": "system", "content": self._system_prompt})
        messages.append({"role": "user", "content": params.content})
        payload: dict[str, Any] = {
            "model": self.model,
            "messages": messages,
            "max_tokens": params.max_tokens,
            "stream": stream,
        }
        if params.temperature is not None:
            payload["temperature"] = params.temperature
        if stream:
            payload["stream_options"] = {"include_usage": True}
        return payload

    async def complete(self, params: ChatParams) -> Completion:
        try:
            async with self._http.post(
                f"{self.base_url}/chat/completions",
                json=self._payload(params, stream=False),
                headers=self._headers(),
                timeout=self._timeout,
            ) as response:
                _check_status(response)
                _check_content_type(response, "application/json")
                body = await _read_capped(response, self._max_response_bytes)
        except (TimeoutError, aiohttp.ClientError) as exc:
            raise _translate(exc, self._read_timeout) from None
        return _parse_completion(body, default_model=self.model)

    async def stream(self, params: ChatParams) -> AsyncGenerator[Delta | StreamEnd]:
        """Deltas as they arrive, then one StreamEnd; raises UpstreamError.

        If the consumer stops (the client left), leaving the `async with` closes
        the upstream connection, which cancels the generation upstream.
        """
        try:
            async with self._http.post(
                f"{self.base_url}/chat/completions",
                json=self._payload(params, stream=True),
                headers=self._headers(),
                timeout=self._timeout,
            ) as response:
                try:
                    _check_status(response)
                    _check_content_type(response, "text/event-stream")
                    events = _parse_events(
                        response, self.model, self._max_response_bytes
                    )
                    async with aclosing(events):
                        async for event in events:
                            yield event
                except BaseException:
                    response.close()  # drop the connection, don't drain it
                    raise
        except (TimeoutError, aiohttp.ClientError) as exc:
            raise _translate(exc, self._read_timeout) from None

    async def check(self) -> bool:
        """Cheap liveness probe: GET {base_url}/models."""
        try:
            async with self._http.get(
                f"{self.base_url}/models",
                headers=self._headers(),
                timeout=aiohttp.ClientTimeout(total=3),
            ) as response:
                return response.status == 200
        except (TimeoutError, aiohttp.ClientError):
            return False


def _translate(exc: BaseException, read_timeout: float) -> UpstreamError:
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


def _check_status(response: aiohttp.ClientResponse) -> None:
    status = response.status
    if status == 200:
        return
    transient = status in TRANSIENT_STATUSES
    retry_after = _retry_after(response.headers.get("Retry-After"))
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


def _retry_after(value: str | None) -> float | None:
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


def _check_content_type(response: aiohttp.ClientResponse, expected: str) -> None:
    if response.content_type != expected:
        raise UpstreamError(
            f"The LLM upstream sent {response.content_type or 'no content type'}, "
            f"expected {expected}"
        )


def _too_large(limit: int) -> UpstreamError:
    return UpstreamError(f"The LLM upstream response is too large (over {limit} bytes)")


async def _read_capped(response: aiohttp.ClientResponse, limit: int) -> bytes:
    if (response.content_length or 0) > limit:
        raise _too_large(limit)
    chunks: list[bytes] = []
    size = 0
    async for chunk in response.content.iter_chunked(64 * 1024):
        size += len(chunk)
        if size > limit:
            raise _too_large(limit)
        chunks.append(chunk)
    return b"".join(chunks)


def _invalid(what: str) -> UpstreamError:
    return UpstreamError(f"The LLM upstream sent an invalid response: {what}")


def _usage(data: Any) -> Usage:
    if not isinstance(data, dict):
        return Usage(None, None)

    def count(key: str) -> int | None:
        value = data.get(key)
        return value if isinstance(value, int) and value >= 0 else None

    return Usage(count("prompt_tokens"), count("completion_tokens"))


def _parse_completion(body: bytes, *, default_model: str) -> Completion:
    try:
        data = json.loads(body)
    except (ValueError, RecursionError):
        raise _invalid("not JSON") from None
    if not isinstance(data, dict):
        raise _invalid("not a JSON object")
    choices = data.get("choices")
    if not isinstance(choices, list) or not choices:
        raise _invalid("no choices")
    message = choices[0].get("message") if isinstance(choices[0], dict) else None
    text = message.get("content") if isinstance(message, dict) else None
    if not isinstance(text, str):
        raise _invalid("no message content")
    model = data.get("model")
    return Completion(
        text=_storable(text),
        model=_model_name(model, default_model),
        usage=_usage(data.get("usage")),
    )


async def _parse_events(
    response: aiohttp.ClientResponse, default_model: str, limit: int
) -> AsyncGenerator[Delta | StreamEnd]:
    """The stream's events; memory stays bounded: one line of at most
    MAX_STREAM_LINE_BYTES is buffered, and the answer's text may reach `limit`
    bytes (the service keeps it whole to store it)."""
    model = default_model
    usage = Usage(None, None)
    deltas = 0
    text_bytes = 0
    finished = False
    buffer = b""
    async for chunk in response.content.iter_any():
        buffer += chunk
        *lines, buffer = buffer.split(b"\n")
        if len(buffer) > MAX_STREAM_LINE_BYTES:
            raise _invalid("an event line is too long")
        for raw in lines:
            line = raw.strip()
            if not line.startswith(b"data:"):
                continue  # comments, event names, ids, blank separators
            data = line[5:].strip()
            if data == b"[DONE]":
                yield StreamEnd(model=model, usage=_settled(usage, deltas))
                return
            event = _parse_event(data)
            model = _model_name(event.get("model"), model)
            if event.get("usage"):
                usage = _usage(event["usage"])
            for choice in event.get("choices") or []:
                if not isinstance(choice, dict):
                    continue
                delta = choice.get("delta")
                text = delta.get("content") if isinstance(delta, dict) else None
                if isinstance(text, str) and text:
                    deltas += 1
                    text_bytes += len(text.encode("utf-8", "surrogatepass"))
                    if text_bytes > limit:
                        raise _too_large(limit)
                    yield Delta(_storable(text))
                if choice.get("finish_reason"):
                    finished = True
    if not finished:
        raise UpstreamError("The LLM upstream stream ended before the answer did")
    yield StreamEnd(model=model, usage=_settled(usage, deltas))


def _parse_event(data: bytes) -> dict[str, Any]:
    try:
        event = json.loads(data)
    except (ValueError, RecursionError):
        raise _invalid("an event is not JSON") from None
    if not isinstance(event, dict):
        raise _invalid("an event is not a JSON object")
    if "error" in event:
        raise UpstreamError("The LLM upstream reported an error mid-stream")
    return event


def _storable(text: str) -> str:
    return _UNSTORABLE.sub("\ufffd", text)


def _model_name(value: Any, default: str) -> str:
    if not isinstance(value, str) or not value:
        return default
    return _storable(value)[:MAX_MODEL_NAME]


def _settled(usage: Usage, deltas: int) -> Usage:
    # Upstreams that ignore stream_options send no usage; each delta is then
    # counted as one token (how OpenAI-compatible servers chunk their output).
    if usage.completion_tokens is None:
        return Usage(usage.prompt_tokens, deltas)
    return usage


__all__ = [
    "ChatClient",
    "ChatParams",
    "Completion",
    "Delta",
    "LLMClient",
    "StreamEnd",
    "UpstreamBusy",
    "UpstreamError",
    "UpstreamTimeout",
    "Usage",
]
