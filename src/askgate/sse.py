"""A server-sent-events response that keeps a quiet stream alive and notices at once
when the client leaves."""

import asyncio
import json
from collections.abc import AsyncGenerator
from contextlib import aclosing
from typing import Any

import anyio
import orjson
from starlette.background import BackgroundTask
from starlette.responses import Response
from starlette.types import Message, Receive, Scope, Send

# Proxies cut a connection that stays silent for their idle timeout (nginx's
# proxy_read_timeout is 60 s): a comment line every 15 s of silence, while the
# model thinks, keeps the stream open. Clients ignore comments.
KEEP_ALIVE_INTERVAL = 15.0
KEEP_ALIVE_COMMENT = b": keep-alive\n\n"


def encode_event(data: dict[str, Any]) -> bytes:
    try:
        return b"data: %b\n\n" % orjson.dumps(data)
    except orjson.JSONEncodeError:
        # What orjson refuses (a lone surrogate, a non-string key) json writes,
        # ASCII-escaped, as before.
        return f"data: {json.dumps(data, separators=(',', ':'))}\n\n".encode()


class EventStreamResponse(Response):
    """Streams `data:` events from an async iterator of JSON objects.

    A task watches for `http.disconnect` and cancels the stream the moment it
    arrives, so the producer (and the upstream request behind it) stops at once
    instead of at its next write. The producer is always closed (`aclose`), so its
    cleanup runs whether the stream ended, failed or was cut. After each
    `keep_alive` seconds without an event, a comment line is sent.
    """

    media_type = "text/event-stream"

    def __init__(
        self,
        events: AsyncGenerator[dict[str, Any]],
        status_code: int = 200,
        headers: dict[str, str] | None = None,
        keep_alive: float | None = None,
    ) -> None:
        self.events = events
        self.status_code = status_code
        self.keep_alive = KEEP_ALIVE_INTERVAL if keep_alive is None else keep_alive
        self.background: BackgroundTask | None = None
        self.init_headers(
            {"Cache-Control": "no-cache", "X-Accel-Buffering": "no", **(headers or {})}
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        loop = asyncio.get_running_loop()
        # The producer runs in this task, as it would without keep-alives; a
        # second task sends the comments. The lock keeps their sends apart.
        sending = asyncio.Lock()
        last_sent = loop.time()
        ended = False

        async with anyio.create_task_group() as group:

            async def watch_disconnect() -> None:
                while (await receive())["type"] != "http.disconnect":
                    pass
                group.cancel_scope.cancel()

            async def keep_alive() -> None:
                # Never touches the producer: a pending `__anext__` cancelled on a
                # timeout would throw into it halfway through its work.
                nonlocal last_sent
                while True:
                    silence = loop.time() - last_sent
                    if silence < self.keep_alive:
                        await anyio.sleep(self.keep_alive - silence)
                        continue
                    async with sending:
                        if ended:
                            return
                        try:
                            await send(_body(KEEP_ALIVE_COMMENT))
                        except OSError:  # the client is gone
                            group.cancel_scope.cancel()
                            return
                    last_sent = loop.time()

            group.start_soon(watch_disconnect)
            try:
                await send(
                    {
                        "type": "http.response.start",
                        "status": self.status_code,
                        "headers": self.raw_headers,
                    }
                )
                group.start_soon(keep_alive)
                async with aclosing(self.events) as events:
                    async for event in events:
                        message = _body(encode_event(event))
                        async with sending:
                            await send(message)
                        last_sent = loop.time()
                async with sending:
                    ended = True
                    await send({"type": "http.response.body", "body": b""})
            except OSError:
                pass  # the client is gone; the producer was closed above
            group.cancel_scope.cancel()


def _body(chunk: bytes) -> Message:
    return {"type": "http.response.body", "body": chunk, "more_body": True}
