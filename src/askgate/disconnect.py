"""Stop work for a client that has gone away."""

import asyncio
from collections.abc import Awaitable
from types import TracebackType
from typing import TypeVar

from starlette.requests import Request
from starlette.types import Receive

T = TypeVar("T")

# nginx's "client closed request": logged, never seen by anyone.
CLIENT_CLOSED_REQUEST = 499


class ClientDisconnected(Exception):
    """The client disconnected before the work finished; the work was cancelled."""


class DisconnectWatch:
    """`with DisconnectWatch(receive):` cancels the block when the client leaves,
    which then raises ClientDisconnected.

    Call it once the request body has been read: the next ASGI message is then
    the disconnect. One plain asyncio task watches (a task group would cost
    several times more on every question). Only the cancellation it caused is
    turned into ClientDisconnected; any other (a server shutdown) goes on.
    """

    def __init__(self, receive: Receive) -> None:
        self._receive = receive
        self._client_left = False

    def __enter__(self) -> "DisconnectWatch":
        task = asyncio.current_task()
        assert task is not None
        self._task = task
        self._watcher = asyncio.create_task(self._watch())
        return self

    async def _watch(self) -> None:
        while (await self._receive())["type"] != "http.disconnect":
            pass
        self.client_left()

    def client_left(self) -> None:
        """The client is gone (seen here, by a failed send, or by a send that
        waited too long: askgate.sse): cancel the block."""
        if not self._client_left:
            self._client_left = True
            self._task.cancel()

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self._watcher.cancel()
        if (
            kind is not None
            and issubclass(kind, asyncio.CancelledError)
            and self._client_left
            and self._task.uncancel() == 0
        ):
            raise ClientDisconnected from None


async def unless_disconnected(request: Request, work: Awaitable[T]) -> T:
    """`work`'s result, or ClientDisconnected once the client has left.

    Without this, uvicorn lets a plain handler run to the end for nobody: an LLM
    answer paid for and stored as answered although no one received it.
    """
    with DisconnectWatch(request.receive):
        return await work
