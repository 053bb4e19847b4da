"""The floor askgate is measured against: a bare aiohttp pass-through.

`POST /questions` reads `{"content", "stream", "max_tokens"}`, sends it on to the
upstream's /v1/chat/completions with one long-lived aiohttp.ClientSession, and
returns the upstream's JSON (201) or streams its bytes straight through (200,
text/event-stream). No authentication, no database, no validation beyond JSON.

`--workers N` runs N processes sharing the port (SO_REUSEPORT), like
`askgate serve --workers N`.

Usage: python passthrough.py --port PORT --upstream http://127.0.0.1:U/v1
"""

import argparse
import contextlib
import os
from collections.abc import AsyncIterator

import aiohttp
from aiohttp import web

MODEL = "bench-model"
SESSION = web.AppKey("session", aiohttp.ClientSession)


def build_app(upstream: str) -> web.Application:
    url = f"{upstream}/chat/completions"

    async def client_session(app: web.Application) -> AsyncIterator[None]:
        connector = aiohttp.TCPConnector(limit=10_000)
        async with aiohttp.ClientSession(connector=connector) as session:
            app[SESSION] = session
            yield

    async def ask(request: web.Request) -> web.StreamResponse:
        question = await request.json()
        stream = bool(question.get("stream"))
        body = {
            "model": MODEL,
            "messages": [{"role": "user", "content": question["content"]}],
            "max_tokens": question.get("max_tokens"),
            "stream": stream,
        }
        async with request.app[SESSION].post(url, json=body) as upstream_response:
            if not stream:
                answer = await upstream_response.read()
                return web.Response(
                    body=answer, status=201, content_type="application/json"
                )
            response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
            # wrk hangs up on the streams in flight when a run ends: not an error.
            with contextlib.suppress(ConnectionResetError):
                await response.prepare(request)
                async for data in upstream_response.content.iter_any():
                    await response.write(data)
                await response.write_eof()
            return response

    app = web.Application()
    app.cleanup_ctx.append(client_session)
    app.router.add_post("/questions", ask)
    return app


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--upstream", required=True, help="base URL, ending in /v1")
    parser.add_argument("--workers", type=int, default=1)
    args = parser.parse_args()
    # Fork before any event loop exists; the benchmark stops the whole group.
    for _ in range(args.workers - 1):
        if os.fork() == 0:
            break
    web.run_app(
        build_app(args.upstream),
        host="127.0.0.1",
        port=args.port,
        reuse_port=args.workers > 1,
        backlog=4096,
        access_log=None,
        print=None,
    )


if __name__ == "__main__":
    main()
