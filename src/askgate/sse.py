"""A server-sent-events response that notices at once when the client leaves."""

import json
from collections.abc import AsyncGenerator
from contextlib import aclosing
from typing import Any

import anyio
from starlette.background import BackgroundTask
from starlette.responses import Response
from starlette.types import Receive, Scope, Send


def encode_event(data: dict[str, Any]) -> bytes:
    # ensure_ascii: any text the upstream sent stays encodable.
    return f"data: {json.dumps(data, separators=(',', ':'))}\n\n".encode()


class EventStreamResponse(Response):
    """Streams `data:` events from an async iterator of JSON objects.

    A task watches for `http.disconnect` and cancels the stream the moment it
    arrives, so the producer (and the upstream request behind it) stops at once
    instead of at its next write. The producer is always closed (`aclose`), so its
    cleanup runs whether the stream ended, failed or was cut.
    """

    media_type = "text/event-stream"

    def __init__(
        self,
        events: AsyncGenerator[dict[str, Any]],
        status_code: int = 200,
        headers: dict[str, str] | None = None,
    ) -> None:
        self.events = events
        self.status_code = status_code
        self.background: BackgroundTask | None = None
        self.init_headers(
            {"Cache-Control": "no-cache", "X-Accel-Buffering": "no", **(headers or {})}
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        async with anyio.create_task_group() as group:

            async def watch_disconnect() -> None:
                while (await receive())["type"] != "http.disconnect":
                    pass
                group.cancel_scope.cancel()

            group.start_soon(watch_disconnect)
            try:
                await send(
                    {
                        "type": "http.response.start",
                        "status": self.status_code,
                        "headers": self.raw_headers,
                    }
                )
                async with aclosing(self.events) as events:
                    async for event in events:
                        await send(
                            {
                                "type": "http.response.body",
                                "body": encode_event(event),
                                "more_body": True,
                            }
                        )
                await send({"type": "http.response.body", "body": b""})
            except OSError:
                pass  # the client is gone; the producer was closed above
            group.cancel_scope.cancel()
