"""A question's HTTP response, whichever API asked it (POST /questions or the
OpenAI API): counted against its user's rate limit, holding one of the user's
slots until it ends however it ends, streamed, or cancelled with its client."""

import asyncio
from collections.abc import AsyncGenerator, Awaitable, Callable
from typing import Any

from fastapi import Request, Response
from starlette.background import BackgroundTask

from askgate.auth.cache import Caller
from askgate.disconnect import (
    CLIENT_CLOSED_REQUEST,
    ClientDisconnected,
    unless_disconnected,
)
from askgate.errors import ServiceUnavailable
from askgate.runtime import Runtime
from askgate.shutdown import CUT_DETAIL, Stopping, absorb_cut
from askgate.sse import EventStreamResponse
from askgate.throttle import QuestionSlot, Throttle


async def respond(
    request: Request,
    runtime: Runtime,
    caller: Caller,
    *,
    stream: Callable[[], Awaitable[AsyncGenerator[dict[str, Any]]]] | None,
    complete: Callable[[], Awaitable[bytes]],
    status_code: int,
    last_event: bytes | None = None,
    cut_event: bytes,
) -> Response:
    """`stream()`'s events as server-sent events (ending with `last_event`, or
    with `cut_event` when a stop of askgate cut it), or with no `stream`,
    `complete()`'s JSON with `status_code`.

    Both are awaited only once the caller holds a slot, and before any response
    starts: a question over quota is a plain 429, not a stream that fails.
    """
    limiter = runtime.limiter
    rate_limit = await limiter.count_question(caller.id)
    # Held until the question ends: by the stream's response once it is
    # returned, by this function until then.
    slot = await limiter.take_question_slot(caller.id, rate_limit)
    task = runtime.stopping.track()
    handed_over = False
    try:
        if stream is not None:
            events = await stream()
            handed_over = True
            return EventStreamResponse(
                events,
                headers=rate_limit.headers(),
                # A client that reads nothing for that long is treated as gone:
                # the patience askgate has with a silent upstream.
                send_timeout=runtime.settings.llm_read_timeout,
                background=BackgroundTask(_end, limiter, slot, runtime.stopping, task),
                last_event=last_event,
                cut_event=cut_event,
            )
        body = await unless_disconnected(request, complete())
    except ClientDisconnected:  # stored as cancelled by the service
        return Response(status_code=CLIENT_CLOSED_REQUEST)
    except asyncio.CancelledError:
        if not absorb_cut():
            raise
        # Stored as cancelled by the service; the client is told.
        raise ServiceUnavailable(CUT_DETAIL) from None
    finally:
        if not handed_over:
            await _end(limiter, slot, runtime.stopping, task)
    return Response(
        body,
        status_code=status_code,
        headers=rate_limit.headers(),
        media_type="application/json",
    )


async def _end(
    limiter: Throttle, slot: QuestionSlot, stopping: Stopping, task: asyncio.Task[Any]
) -> None:
    # Done first: a stop's cut must not land on a question that has ended.
    stopping.done(task)
    await limiter.end_question(slot)
