"""A real OpenAI-compatible HTTP server for tests, built on aiohttp.web.

It answers, streams, fails (500, 429, 502, 503, 504, 400, garbage JSON, wrong
content type, no choices, text that cannot be stored, a body too large), hangs,
cuts a stream, ends one early or stalls one, as `mode` says. Knobs: `fail_times`
makes the next N requests answer `fail_status` whatever the mode; `retry_after`
adds that Retry-After header to every error status; `gate`, when set, holds each
request until it is set; `first_chunk_delay` makes a stream wait that long after
its headers before its first chunk, as a model slow to start does; `usage`, when
set, replaces the reported usage (None: no usage at all, as many upstreams
send); `stall_after` is how many pieces `stall_stream` sends first; `model` is
the model it says answered. In "tool_calls" mode it calls the first tool of the
request instead of answering (streamed: the arguments in pieces, as OpenAI sends
them). It records
every request, counts requests in flight, and notices when a client drops a stream.
"""

import asyncio
import json
from collections.abc import Awaitable, Callable
from typing import Any, Literal

from aiohttp import web

MODEL = "fake-model"
MODES = {
    "ok",
    "status_500",
    "status_429",
    "status_400",
    "status_502",
    "status_503",
    "status_504",
    "oversized",
    "early_eof_stream",
    "garbage_json",
    "wrong_content_type",
    "no_choices",
    "hang",
    "cut_stream",
    "slow_stream",
    "stall_stream",
    "unstorable_text",
    "tool_calls",
}
# What "tool_calls" mode answers: a call of the first tool the request offers.
TOOL_CALL_ID = "call_fake_1"
TOOL_ARGUMENTS = '{"city": "Paris", "unit": "celsius"}'


def answer_for(content: str) -> str:
    return f"You asked: {content}"


# Valid JSON ("\\ud800", "\\u0000"), but UTF-8 cannot encode a lone surrogate
# and PostgreSQL text cannot hold NUL.
UNSTORABLE_ANSWER = "lone \ud800 and nul \x00 here"


def _text(content: Any) -> str:
    """A message's text: its string, or its text parts joined."""
    if isinstance(content, list):
        return "".join(part.get("text", "") for part in content)
    return content if isinstance(content, str) else ""


def _tool_name(body: dict[str, Any]) -> str:
    tools = body.get("tools") or [{"function": {"name": "unnamed"}}]
    return str(tools[0]["function"]["name"])


def _answer(content: str, mode: str) -> str:
    return UNSTORABLE_ANSWER if mode == "unstorable_text" else answer_for(content)


class FakeUpstream:
    def __init__(self) -> None:
        self.mode = "ok"
        self.model = MODEL  # the model it reports answering with
        self.requests: list[dict[str, Any]] = []
        self.model_lists = 0  # GET /models requests (what a health check asks)
        self.headers: list[dict[str, str]] = []
        self.stream_closed_by_client = asyncio.Event()
        self.slow_stream_interval = 0.1
        # How many pieces a slow stream sends before its answer, by question.
        self.slow_stream_ticks: Callable[[str], int] = lambda content: 10_000
        self.fail_times = 0
        self.fail_status = 503
        self.retry_after: str | None = None
        self.gate: asyncio.Event | None = None
        self.first_chunk_delay = 0.0
        self.usage: dict[str, Any] | Literal["counted"] | None = "counted"
        self.stall_after = 2
        self.oversized_bytes = 64 * 1024
        self.in_flight = 0
        self.max_in_flight = 0
        self.streams_started = 0
        self.streams_closed_by_client = 0
        self.hangs_abandoned_by_client = 0
        # Set on stop: hanging handlers return, so cleanup does not wait for them
        # (aiohttp would give them its 60 s shutdown timeout).
        self._released = asyncio.Event()
        self._runner: web.AppRunner | None = None
        self.port = 0

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    async def start(self) -> None:
        app = web.Application()
        app.router.add_post("/v1/chat/completions", self._chat)
        app.router.add_get("/v1/models", self._models)
        self._runner = web.AppRunner(app, handle_signals=False)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        server = site._server
        assert server is not None
        self.port = server.sockets[0].getsockname()[1]  # type: ignore[attr-defined]

    @property
    def open_connections(self) -> int:
        """Client connections the server holds open, idle keep-alive ones too."""
        assert self._runner is not None
        assert self._runner.server is not None
        return len(self._runner.server.connections)

    async def stop(self) -> None:
        self._released.set()
        if self.gate is not None:
            self.gate.set()
        if self._runner is not None:
            await self._runner.cleanup()

    async def _hang(self, request: web.Request) -> None:
        """Answer nothing until stopped, noticing when the client hangs up."""
        while not self._released.is_set():
            if request.transport is None or request.transport.is_closing():
                self.hangs_abandoned_by_client += 1
                raise ConnectionResetError("the client hung up")
            await asyncio.sleep(0.02)

    async def _pause(self, request: web.Request, seconds: float) -> None:
        """Wait `seconds` (or until stopped), noticing when the client hangs up."""
        deadline = asyncio.get_running_loop().time() + seconds
        while asyncio.get_running_loop().time() < deadline:
            if self._released.is_set():
                return
            if request.transport is None or request.transport.is_closing():
                raise ConnectionResetError("the client hung up")
            await asyncio.sleep(0.01)

    async def _models(self, request: web.Request) -> web.Response:
        self.model_lists += 1
        return web.json_response({"object": "list", "data": [{"id": MODEL}]})

    async def _chat(self, request: web.Request) -> web.StreamResponse:
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            return await self._answer(request)
        finally:
            self.in_flight -= 1

    def _error(self, status: int) -> web.Response:
        headers = {"Retry-After": self.retry_after} if self.retry_after else None
        return web.json_response(
            {"error": {"message": f"failed with {status}"}},
            status=status,
            headers=headers,
        )

    async def _answer(self, request: web.Request) -> web.StreamResponse:
        body = await request.json()
        self.requests.append(body)
        self.headers.append(dict(request.headers))
        content = _text(body["messages"][-1].get("content"))
        mode = self.mode
        if self.gate is not None:
            await self.gate.wait()
        if self.fail_times > 0:
            self.fail_times -= 1
            return self._error(self.fail_status)
        if mode.startswith("status_"):
            return self._error(int(mode.removeprefix("status_")))
        if mode == "garbage_json":
            return web.Response(body=b"{not json", content_type="application/json")
        if mode == "wrong_content_type":
            return web.Response(text="<html>hello</html>", content_type="text/html")
        if mode == "no_choices":
            return web.json_response({"id": "x", "object": "chat.completion"})
        if mode == "hang":
            await self._hang(request)
        tool = _tool_name(body) if mode == "tool_calls" else None
        if body.get("stream"):
            return await self._stream(request, content, mode, tool)
        text = _answer(content, mode)
        if mode == "oversized":
            text = "x" * self.oversized_bytes
        message: dict[str, Any] = {"role": "assistant", "content": text}
        if tool is not None:
            message = {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {
                        "id": TOOL_CALL_ID,
                        "type": "function",
                        "function": {"name": tool, "arguments": TOOL_ARGUMENTS},
                    }
                ],
            }
            text = TOOL_ARGUMENTS
        body = {
            "id": "chatcmpl-1",
            "object": "chat.completion",
            "model": self.model,
            "choices": [
                {
                    "index": 0,
                    "message": message,
                    "finish_reason": "stop" if tool is None else "tool_calls",
                }
            ],
        }
        usage = self._usage(len(content.split()), len(text.split()))
        if usage is not None:
            body["usage"] = usage
        return web.json_response(body)

    def _usage(self, prompt: int, completion: int) -> dict[str, Any] | None:
        if self.usage == "counted":
            return {
                "prompt_tokens": prompt,
                "completion_tokens": completion,
                "total_tokens": prompt + completion,
            }
        return self.usage

    async def _stream(
        self, request: web.Request, content: str, mode: str, tool: str | None
    ) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        self.streams_started += 1
        words = _answer(content, mode).split(" ")
        pieces = [word if i == 0 else f" {word}" for i, word in enumerate(words)]

        async def send(data: dict[str, Any] | str) -> None:
            payload = data if isinstance(data, str) else json.dumps(data)
            await response.write(f"data: {payload}\n\n".encode())

        def chunk(text: str | None, finish: str | None = None) -> dict[str, Any]:
            delta = {"content": text} if text is not None else {}
            return {
                "id": "chatcmpl-1",
                "object": "chat.completion.chunk",
                "model": self.model,
                "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
            }

        try:
            if self.first_chunk_delay:
                await self._pause(request, self.first_chunk_delay)
            if mode == "cut_stream":
                for piece in pieces[:2]:
                    await send(chunk(piece))
                assert request.transport is not None
                request.transport.close()
                return response
            if mode == "early_eof_stream":
                for piece in pieces[:2]:
                    await send(chunk(piece))
                await response.write_eof()
                return response
            if mode == "oversized":
                piece = "x" * 1024
                for _ in range(self.oversized_bytes // len(piece) + 1):
                    await send(chunk(piece))
            if mode == "stall_stream":
                for piece in pieces[: self.stall_after]:
                    await send(chunk(piece))
                await self._released.wait()
                return response
            if tool is not None:
                await self._stream_tool_call(send, tool)
                await response.write_eof()
                return response
            if mode == "slow_stream":
                for i in range(self.slow_stream_ticks(content)):
                    await send(chunk(f" tick{i}"))
                    await asyncio.sleep(self.slow_stream_interval)
            for piece in pieces:
                await send(chunk(piece))
            await send(chunk(None, finish="stop"))
            usage = self._usage(len(content.split()), len(pieces))
            if usage is not None:
                await send(
                    {
                        "id": "chatcmpl-1",
                        "object": "chat.completion.chunk",
                        "model": self.model,
                        "choices": [],
                        "usage": usage,
                    }
                )
            await send("[DONE]")
        except (ConnectionError, asyncio.CancelledError):
            self.streams_closed_by_client += 1
            self.stream_closed_by_client.set()
            raise
        await response.write_eof()
        return response

    async def _stream_tool_call(
        self, send: Callable[[dict[str, Any] | str], Awaitable[None]], tool: str
    ) -> None:
        def chunk(delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
            return {
                "id": "chatcmpl-1",
                "object": "chat.completion.chunk",
                "model": self.model,
                "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
            }

        half = len(TOOL_ARGUMENTS) // 2
        first = {
            "index": 0,
            "id": TOOL_CALL_ID,
            "type": "function",
            "function": {"name": tool, "arguments": TOOL_ARGUMENTS[:half]},
        }
        rest = {"index": 0, "function": {"arguments": TOOL_ARGUMENTS[half:]}}
        await send(chunk({"role": "assistant", "tool_calls": [first]}))
        await send(chunk({"tool_calls": [rest]}))
        await send(chunk({}, finish="tool_calls"))
        usage = self._usage(3, 7)
        if usage is not None:
            await send({"model": self.model, "choices": [], "usage": usage})
        await send("[DONE]")
