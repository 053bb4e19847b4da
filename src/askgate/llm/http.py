"""An OpenAI-compatible chat-completions client over the process's aiohttp session.

No SDK: one POST to `{base_url}/chat/completions`, JSON or server-sent events.
Timeouts are per phase (connect, and the gap between two reads), not one total
timeout, which would cut long streams. What is constant for an upstream (URLs,
headers, timeouts, the system message) is built once, in `__init__`. Retries,
fallbacks, the circuit breaker and the concurrency cap wrap this client in
`askgate.llm.resilience`.
"""

import asyncio
from collections.abc import AsyncGenerator
from contextlib import aclosing
from typing import Any, Final

import aiohttp

from askgate.jsonbytes import dumps
from askgate.llm.errors import (
    check_content_type,
    check_status,
    question_too_long,
    too_large,
    translate,
)
from askgate.llm.parsing import parse_completion, parse_events
from askgate.llm.types import ChatParams, Completion, Delta, StreamEnd

DEFAULT_MAX_RESPONSE_BYTES = 4 * 1024 * 1024
_CHECK_TIMEOUT: Final = aiohttp.ClientTimeout(total=3)
_INCLUDE_USAGE: Final = {"include_usage": True}


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
        self._completions_url = f"{self.base_url}/chat/completions"
        self._models_url = f"{self.base_url}/models"
        # aiohttp copies the headers into each request; this dict is never changed.
        self._headers = {"Content-Type": "application/json"}
        if api_key:
            self._headers["Authorization"] = f"Bearer {api_key}"
        self._system_messages: tuple[dict[str, str], ...] = (
            ({"role": "system", "content": system_prompt},) if system_prompt else ()
        )
        self._timeout = aiohttp.ClientTimeout(
            total=None, sock_connect=connect_timeout, sock_read=read_timeout
        )
        self._connect_timeout = connect_timeout
        self._read_timeout = read_timeout
        self._max_response_bytes = max_response_bytes

    def __repr__(self) -> str:  # the key stays out of reprs and logs
        return f"LLMClient(base_url={self.base_url!r}, model={self.model!r})"

    def _body(self, params: ChatParams, *, stream: bool) -> bytes:
        messages = (
            params.messages
            if params.messages is not None
            else (*self._system_messages, {"role": "user", "content": params.content})
        )
        payload: dict[str, Any] = {
            **(params.options or {}),
            "model": self.model,
            "messages": messages,
            "max_tokens": params.max_tokens,
            "stream": stream,
        }
        if params.temperature is not None:
            payload["temperature"] = params.temperature
        if stream:  # always: the quota and the records need the real usage
            payload["stream_options"] = _INCLUDE_USAGE
        return dumps(payload)

    async def complete(self, params: ChatParams) -> Completion:
        try:
            async with self._http.post(
                self._completions_url,
                data=self._body(params, stream=False),
                headers=self._headers,
                timeout=self._timeout,
            ) as response:
                check_status(response)
                check_content_type(response, "application/json")
                body = await _read_capped(response, self._max_response_bytes)
        except (TimeoutError, aiohttp.ClientError) as exc:
            raise translate(exc, self._read_timeout) from None
        return parse_completion(body, default_model=self.model)

    async def stream(
        self, params: ChatParams, *, deadline: float | None = None
    ) -> AsyncGenerator[Delta | StreamEnd]:
        """Deltas as they arrive, then one StreamEnd; raises UpstreamError.

        `deadline` (the event loop's clock): the request is cut then, wherever
        it is (askgate.llm.resilience bounds a whole question with it).
        If the consumer stops (the client left), leaving the `async with` closes
        the upstream connection, which cancels the generation upstream.
        """
        timeout = self._timeout if deadline is None else self._until(deadline)
        try:
            async with self._http.post(
                self._completions_url,
                data=self._body(params, stream=True),
                headers=self._headers,
                timeout=timeout,
            ) as response:
                try:
                    check_status(response)
                    check_content_type(response, "text/event-stream")
                    events = parse_events(
                        response.content.iter_any(),
                        default_model=self.model,
                        limit=self._max_response_bytes,
                    )
                    async with aclosing(events):
                        async for event in events:
                            yield event
                except BaseException:
                    response.close()  # drop the connection, don't drain it
                    raise
        except (TimeoutError, aiohttp.ClientError) as exc:
            if deadline is not None and asyncio.get_running_loop().time() >= deadline:
                raise question_too_long() from None
            raise translate(exc, self._read_timeout) from None

    def _until(self, deadline: float) -> aiohttp.ClientTimeout:
        """The per-phase timeouts, and in total what is left until `deadline`
        (aiohttp arms one timer per request for it, and checks it only while
        waiting for the upstream: a delta costs nothing more)."""
        left = deadline - asyncio.get_running_loop().time()
        if left <= 0:
            raise question_too_long()
        return aiohttp.ClientTimeout(
            total=left, sock_connect=self._connect_timeout, sock_read=self._read_timeout
        )

    async def check(self) -> bool:
        """Cheap liveness probe: GET {base_url}/models."""
        try:
            async with self._http.get(
                self._models_url, headers=self._headers, timeout=_CHECK_TIMEOUT
            ) as response:
                return response.status == 200
        except (TimeoutError, aiohttp.ClientError):
            return False


async def _read_capped(response: aiohttp.ClientResponse, limit: int) -> bytes:
    if (response.content_length or 0) > limit:
        raise too_large(limit)
    chunks: list[bytes] = []
    size = 0
    async for chunk in response.content.iter_chunked(64 * 1024):
        size += len(chunk)
        if size > limit:
            raise too_large(limit)
        chunks.append(chunk)
    return b"".join(chunks)
