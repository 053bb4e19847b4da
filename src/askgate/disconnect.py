"""Stop work for a client that has gone away."""

from collections.abc import Awaitable
from typing import TypeVar

import anyio
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
    """
    results: list[T] = []
    failure: Exception | None = None
    async with anyio.create_task_group() as group:

        async def watch_disconnect() -> None:
            while (await request.receive())["type"] != "http.disconnect":
                pass
            group.cancel_scope.cancel()

        group.start_soon(watch_disconnect)
        try:
            results.append(await work)
        except Exception as exc:  # re-raised below, not wrapped in a group
            failure = exc
        group.cancel_scope.cancel()
    if failure is not None:
        raise failure
    if not results:
        raise ClientDisconnected
    return results[0]
