"""A real OpenAI-compatible HTTP server for tests, built on aiohttp.web.

It answers, streams, fails (500, 429, garbage JSON, wrong content type, no
choices, text that cannot be stored), hangs, cuts a stream or stalls one, as
`mode` says; it records every request and notices when a client drops a stream.
"""

import asyncio
import json
from typing import Any

from aiohttp import web

MODEL = "fake-model"
MODES = {
    "ok",
    "status_500",
    "status_429",
    "garbage_json",
    "wrong_content_type",
    "no_choices",
    "hang",
    "cut_stream",
    "slow_stream",
    "stall_stream",
    "unstorable_text",
}


def answer_for(content: str) -> str:
    return f"You asked: {content}"


# Valid JSON ("\\ud800", "\\u0000"), but UTF-8 cannot encode a lone surrogate
# and PostgreSQL text cannot hold NUL.
UNSTORABLE_ANSWER = "lone \ud800 and nul \x00 here"


def _answer(content: str, mode: str) -> str:
    return UNSTORABLE_ANSWER if mode == "unstorable_text" else answer_for(content)


class FakeUpstream:
    def __init__(self) -> None:
        self.mode = "ok"
        self.requests: list[dict[str, Any]] = []
        self.headers: list[dict[str, str]] = []
        self.stream_closed_by_client = asyncio.Event()
        self.slow_stream_interval = 0.1
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

    async def stop(self) -> None:
        self._released.set()
        if self._runner is not None:
            await self._runner.cleanup()

    async def _models(self, request: web.Request) -> web.Response:
        return web.json_response({"object": "list", "data": [{"id": MODEL}]})

    async def _chat(self, request: web.Request) -> web.StreamResponse:
        body = await request.json()
        self.requests.append(body)
        self.headers.append(dict(request.headers))
        content = body["messages"][-1]["content"]
        mode = self.mode
        if mode == "status_500":
            return web.json_response({"error": {"message": "boom"}}, status=500)
        if mode == "status_429":
            return web.json_response({"error": {"message": "slow down"}}, status=429)
        if mode == "garbage_json":
            return web.Response(body=b"{not json", content_type="application/json")
        if mode == "wrong_content_type":
            return web.Response(text="<html>hello</html>", content_type="text/html")
        if mode == "no_choices":
            return web.json_response({"id": "x", "object": "chat.completion"})
        if mode == "hang":
            await self._released.wait()
        if body.get("stream"):
            return await self._stream(request, content, mode)
        text = _answer(content, mode)
        return web.json_response(
            {
                "id": "chatcmpl-1",
                "object": "chat.completion",
                "model": MODEL,
                "choices": [
                    {
                        "index": 0,
                        "message": {"role": "assistant", "content": text},
                        "finish_reason": "stop",
                    }
                ],
                "usage": {
                    "prompt_tokens": len(content.split()),
                    "completion_tokens": len(text.split()),
                    "total_tokens": len(content.split()) + len(text.split()),
                },
            }
        )

    async def _stream(
        self, request: web.Request, content: str, mode: str
    ) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
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
                "model": MODEL,
                "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
            }

        try:
            if mode == "cut_stream":
                for piece in pieces[:2]:
                    await send(chunk(piece))
                assert request.transport is not None
                request.transport.close()
                return response
            if mode == "stall_stream":
                for piece in pieces[:2]:
                    await send(chunk(piece))
                await self._released.wait()
                return response
            if mode == "slow_stream":
                for i in range(10_000):
                    await send(chunk(f" tick{i}"))
                    await asyncio.sleep(self.slow_stream_interval)
            for piece in pieces:
                await send(chunk(piece))
            await send(chunk(None, finish="stop"))
            await send(
                {
                    "id": "chatcmpl-1",
                    "object": "chat.completion.chunk",
                    "model": MODEL,
                    "choices": [],
                    "usage": {
                        "prompt_tokens": len(content.split()),
                        "completion_tokens": len(pieces),
                        "total_tokens": len(content.split()) + len(pieces),
                    },
                }
            )
            await send("[DONE]")
        except (ConnectionError, asyncio.CancelledError):
            self.stream_closed_by_client.set()
            raise
        await response.write_eof()
        return response
