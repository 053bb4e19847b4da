"""A fake OpenAI-compatible upstream for the benchmark: it answers at once.

`POST /v1/chat/completions` answers JSON, or server-sent events (`--chunks` deltas,
a finish chunk, a usage chunk and `data: [DONE]`) when the body asks to stream;
`--chunk-delay` spaces the events out (the open-streams test). `GET /v1/models`
lists the one model. Every body is built once at start, so the upstream costs as
little CPU per request as aiohttp allows: it shares the cores with what is measured.

Usage: python upstream.py --port PORT [--chunks 8] [--chunk-delay 0]
"""

import argparse
import asyncio
import contextlib
import json
from typing import Any

from aiohttp import web

MODEL = "bench-model"
PROMPT_TOKENS = 14


def _event(data: dict[str, Any] | str) -> bytes:
    payload = data if isinstance(data, str) else json.dumps(data)
    return f"data: {payload}\n\n".encode()


def _chunk(delta: dict[str, str], finish: str | None = None) -> dict[str, Any]:
    return {
        "id": "chatcmpl-bench",
        "object": "chat.completion.chunk",
        "model": MODEL,
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
    }


def _usage(completion_tokens: int) -> dict[str, int]:
    return {
        "prompt_tokens": PROMPT_TOKENS,
        "completion_tokens": completion_tokens,
        "total_tokens": PROMPT_TOKENS + completion_tokens,
    }


def stream_events(chunks: int) -> list[bytes]:
    pieces = ["Paris"] + [f" word{i}" for i in range(1, chunks)]
    events = [_event(_chunk({"content": piece})) for piece in pieces]
    events.append(_event(_chunk({}, finish="stop")))
    usage = {**_chunk({}), "choices": [], "usage": _usage(chunks)}
    events.append(_event(usage))
    events.append(_event("[DONE]"))
    return events


def completion_body(chunks: int) -> bytes:
    text = "Paris" + "".join(f" word{i}" for i in range(1, chunks))
    body = {
        "id": "chatcmpl-bench",
        "object": "chat.completion",
        "model": MODEL,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": text},
                "finish_reason": "stop",
            }
        ],
        "usage": _usage(chunks),
    }
    return json.dumps(body).encode()


def build_app(chunks: int, chunk_delay: float) -> web.Application:
    events = stream_events(chunks)
    answer = completion_body(chunks)
    models = json.dumps({"object": "list", "data": [{"id": MODEL}]}).encode()

    async def chat(request: web.Request) -> web.StreamResponse:
        body = await request.json()
        if not body.get("stream"):
            return web.Response(body=answer, content_type="application/json")
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        # A client may hang up mid-stream (wrk does at the end of a run).
        with contextlib.suppress(ConnectionResetError):
            await response.prepare(request)
            if chunk_delay:
                for event in events:
                    await asyncio.sleep(chunk_delay)
                    await response.write(event)
            else:
                await response.write(b"".join(events))
            await response.write_eof()
        return response

    async def list_models(request: web.Request) -> web.Response:
        return web.Response(body=models, content_type="application/json")

    app = web.Application()
    app.router.add_post("/v1/chat/completions", chat)
    app.router.add_get("/v1/models", list_models)
    return app


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--chunks", type=int, default=8)
    parser.add_argument("--chunk-delay", type=float, default=0.0)
    args = parser.parse_args()
    app = build_app(args.chunks, args.chunk_delay)
    web.run_app(
        app, host="127.0.0.1", port=args.port, access_log=None, print=None, backlog=4096
    )


if __name__ == "__main__":
    main()
