"""A server-sent-events response that keeps a quiet stream alive, notices at once
when the client leaves, and ends the stream of a client that stops reading."""

import asyncio
import logging
from collections.abc import AsyncGenerator
from contextlib import aclosing
from typing import Any

from starlette.background import BackgroundTask
from starlette.responses import Response
from starlette.types import Message, Receive, Scope, Send

from askgate.disconnect import ClientDisconnected, DisconnectWatch
from askgate.jsonbytes import dumps
from askgate.shutdown import absorb_cut

# Proxies cut a connection that stays silent for their idle timeout (nginx's
# proxy_read_timeout is 60 s): a comment line every 15 s of silence, while the
# model thinks, keeps the stream open. Clients ignore comments.
KEEP_ALIVE_INTERVAL = 15.0
KEEP_ALIVE_COMMENT = b": keep-alive\n\n"
# How long the last event of a stream cut by a stop may take to send.
CUT_SEND_SECONDS = 5.0

logger = logging.getLogger("askgate.sse")


def encode_event(data: dict[str, Any]) -> bytes:
    return b"data: %b\n\n" % dumps(data)


class EventStreamResponse(Response):
    """Streams `data:` events from an async iterator of JSON objects.

    A watcher (askgate.disconnect) cancels the stream the moment the client
    leaves, so the producer (and the upstream request behind it) stops at once
    instead of at its next write. The producer is always closed (`aclose`), so its
    cleanup runs whether the stream ended, failed or was cut. After each
    `keep_alive` seconds without an event, a comment line is sent. A client that
    reads nothing for `send_timeout` seconds is treated as gone (see _SendDeadline).
    `background` runs once the response has ended, however it ended (even before
    its first event, when the producer's own cleanup never runs). `last_event`,
    already encoded, follows the producer's events when it ends without failing
    (the OpenAI API's `data: [DONE]`); `cut_event` ends a stream that a stop of
    askgate cut (askgate.shutdown), instead of a broken connection.
    """

    media_type = "text/event-stream"

    def __init__(
        self,
        events: AsyncGenerator[dict[str, Any]],
        status_code: int = 200,
        headers: dict[str, str] | None = None,
        keep_alive: float | None = None,
        send_timeout: float | None = None,
        background: BackgroundTask | None = None,
        last_event: bytes | None = None,
        cut_event: bytes | None = None,
    ) -> None:
        self.events = events
        self.last_event = last_event
        self.cut_event = cut_event
        self._started = False
        self.send_timeout = send_timeout
        self.status_code = status_code
        self.keep_alive = KEEP_ALIVE_INTERVAL if keep_alive is None else keep_alive
        self.background = background
        self.init_headers(
            {"Cache-Control": "no-cache", "X-Accel-Buffering": "no", **(headers or {})}
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await self._watched(receive, send)
        finally:
            if self.background is not None:
                await self.background()

    async def _watched(self, receive: Receive, send: Send) -> None:
        try:
            with DisconnectWatch(receive) as watch:
                if self.send_timeout is None:
                    await self._stream(send, watch)
                    return
                deadline = _SendDeadline(send, self.send_timeout, watch)
                try:
                    await self._stream(deadline.send, watch)
                finally:
                    deadline.stop()
        except (ClientDisconnected, OSError):
            pass  # the client is gone; the producer was closed in _stream
        except asyncio.CancelledError:
            if not absorb_cut():
                raise
            # The producer stored what arrived; the client is told.
            await self._end_cut(send)

    async def _end_cut(self, send: Send) -> None:
        # Bounded: a client that reads nothing must not hold up the stop.
        try:
            async with asyncio.timeout(CUT_SEND_SECONDS):
                if not self._started:
                    await self._start(send)
                if self.cut_event is not None:
                    await send(_body(self.cut_event))
                await send({"type": "http.response.body", "body": b""})
        except (OSError, TimeoutError):
            pass

    async def _start(self, send: Send) -> None:
        self._started = True
        await send(
            {
                "type": "http.response.start",
                "status": self.status_code,
                "headers": self.raw_headers,
            }
        )

    async def _stream(self, send: Send, watch: DisconnectWatch) -> None:
        await self._start(send)
        keep_alive = _KeepAlive(send, self.keep_alive, watch)
        try:
            async with aclosing(self.events) as events:
                async for event in events:
                    await send(_body(encode_event(event)))
                    keep_alive.sent()
            if self.last_event is not None:
                await send(_body(self.last_event))
        finally:
            keep_alive.stop()
        await send({"type": "http.response.body", "body": b""})


class _SendDeadline:
    """Treats the client as gone once a send has waited `timeout` seconds.

    An ASGI server's send waits while the connection's buffers are full: a
    client that stops reading would otherwise hold its stream, and the upstream
    call behind it, forever (the upstream's own read timeout does not run while
    askgate is the one not reading). One timer per stream checks, rather than a
    timeout around each send: what a delta costs stays the same.
    """

    def __init__(self, send: Send, timeout: float, watch: DisconnectWatch) -> None:
        self._send = send
        self._timeout = timeout
        self._watch = watch
        self._loop = asyncio.get_running_loop()
        self._pending = 0
        self._since = 0.0  # when the sends now pending started to wait
        self._timer = self._loop.call_later(timeout, self._check)

    async def send(self, message: Message) -> None:
        if not self._pending:
            self._since = self._loop.time()
        self._pending += 1
        try:
            await self._send(message)
        finally:
            self._pending -= 1
            self._since = self._loop.time()  # progress: a send still pending waits anew

    def stop(self) -> None:
        self._timer.cancel()

    def _check(self) -> None:
        now = self._loop.time()
        if self._pending and now - self._since >= self._timeout:
            logger.warning(
                "A client read nothing of its stream for %gs: the stream is ended",
                self._timeout,
            )
            self._watch.client_left()
            return
        start = self._since if self._pending else now
        self._timer = self._loop.call_later(start + self._timeout - now, self._check)


class _KeepAlive:
    """A comment after each `interval` seconds without a send.

    A timer checks once per interval, not once per event, and sends from a task
    of its own: the producer is never touched (a pending `__anext__` cancelled
    on a timeout would throw into it halfway through its work). Sends stay whole
    whatever their order: an ASGI server writes each message at once.
    """

    def __init__(self, send: Send, interval: float, watch: DisconnectWatch) -> None:
        self._send = send
        self._interval = interval
        self._watch = watch
        self._loop = asyncio.get_running_loop()
        self._last = self._loop.time()
        self._sending: asyncio.Task[None] | None = None
        self._timer = self._loop.call_later(interval, self._due)

    def sent(self) -> None:
        self._last = self._loop.time()

    def stop(self) -> None:
        """Before the last message: no comment may follow it."""
        self._timer.cancel()
        if self._sending is not None:
            self._sending.cancel()

    def _due(self) -> None:
        silence = self._loop.time() - self._last
        if silence >= self._interval and self._sending is None:
            self._sending = self._loop.create_task(self._comment())
            silence = 0.0
        self._timer = self._loop.call_later(self._interval - silence, self._due)

    async def _comment(self) -> None:
        try:
            if self._loop.time() - self._last < self._interval:
                return  # an event went out since the timer decided
            await self._send(_body(KEEP_ALIVE_COMMENT))
            self.sent()
        except OSError:
            self._watch.client_left()
        finally:
            self._sending = None


def _body(chunk: bytes) -> Message:
    return {"type": "http.response.body", "body": chunk, "more_body": True}
