"""Stop work for a client that has gone away."""

import asyncio
from collections.abc import Awaitable
from typing import TypeVar

from starlette.requests import Request

T = TypeVar("T")

# nginx's "client closed request": logged, never seen by anyone.
CLIENT_CLOSED_REQUEST = 499


class ClientDisconnected(Exception):
    """The client disconnected before `work` finished; `work` was cancelled."""


async def unless_disconnected(request: Request, work: Awaitable[T]) -> T:
    """`work`'s result, or ClientDisconnected once the client has left.

    The body has been read already, so the next ASGI message is the disconnect.
    Without this, uvicorn lets a plain handler run to the end for nobody: an LLM
    answer paid for and stored as answered although no one received it.

    One plain asyncio task watches, and cancels this one when the client leaves
    (a task group would cost several times more on every question).
    """
    current = asyncio.current_task()
    assert current is not None
    client_left = False

    async def watch_disconnect() -> None:
        nonlocal client_left
        while (await request.receive())["type"] != "http.disconnect":
            pass
        client_left = True
        current.cancel()

    watcher = asyncio.create_task(watch_disconnect())
    try:
        return await work
    except asyncio.CancelledError:
        # Our own cancellation only: any other (server shutdown) goes on.
        if client_left and current.uncancel() == 0:
            raise ClientDisconnected from None
        raise
    finally:
        watcher.cancel()
