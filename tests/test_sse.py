"""EventStreamResponse on its own: keep-alive comments through a silence, and the
producer's life (never cancelled by a keep-alive, cancelled at once when the
client leaves, always closed).

These talk ASGI to the response directly: the timing of a silence and of a
departure is what is tested, which HTTP clients hide. Streams through the whole
app are in tests/questions/test_streaming.py.
"""

import asyncio
import json
import time
from collections.abc import AsyncGenerator
from typing import Any

import anyio
import pytest
from starlette.types import Message

from askgate.sse import KEEP_ALIVE_COMMENT, EventStreamResponse, encode_event

KEEP_ALIVE = 0.05


class Exchange:
    """One response's side of an ASGI connection: what was sent, and a client
    that leaves after `leave_after` seconds or whose sends fail after `sends`."""

    def __init__(
        self, *, leave_after: float | None = None, sends: int | None = None
    ) -> None:
        self.messages: list[Message] = []
        self._leave_after = leave_after
        self._sends = sends

    async def receive(self) -> Message:
        if self._leave_after is None:
            await asyncio.Event().wait()  # the client stays
        await asyncio.sleep(self._leave_after or 0)
        return {"type": "http.disconnect"}

    async def send(self, message: Message) -> None:
        if self._sends is not None and len(self.messages) >= self._sends:
            raise OSError("the client is gone")
        self.messages.append(message)

    @property
    def chunks(self) -> list[bytes]:
        return [
            message["body"]
            for message in self.messages
            if message["type"] == "http.response.body" and message["body"]
        ]

    @property
    def ended(self) -> bool:
        last = self.messages[-1]
        return last["type"] == "http.response.body" and not last.get("more_body")


class Producer:
    """An event source that pauses before each event and records its life."""

    def __init__(self, pauses: list[float]) -> None:
        self.pauses = pauses
        self.seen: list[str] = []

    async def events(self) -> AsyncGenerator[dict[str, Any]]:
        try:
            for i, pause in enumerate(self.pauses):
                await asyncio.sleep(pause)
                yield {"type": "delta", "text": f"part {i}"}
            self.seen.append("finished")
        except asyncio.CancelledError:
            self.seen.append("cancelled")
            raise
        except GeneratorExit:
            self.seen.append("closed")
            raise
        finally:
            # Cleanup that awaits, shielded as the questions service stores a
            # question the client left.
            with anyio.CancelScope(shield=True):
                await asyncio.sleep(0)
            self.seen.append("cleaned up")


async def serve(producer: Producer, exchange: Exchange) -> None:
    response = EventStreamResponse(producer.events(), keep_alive=KEEP_ALIVE)
    await response({"type": "http"}, exchange.receive, exchange.send)


def data(text: str) -> bytes:
    return encode_event({"type": "delta", "text": text})


async def test_events_are_sent_as_data_lines_then_the_stream_ends() -> None:
    producer, exchange = Producer([0, 0]), Exchange()

    await serve(producer, exchange)

    assert exchange.messages[0]["type"] == "http.response.start"
    assert exchange.chunks == [data("part 0"), data("part 1")]
    assert exchange.ended
    assert producer.seen == ["finished", "cleaned up"]


async def test_a_silence_is_filled_with_comments_the_producer_never_sees() -> None:
    producer, exchange = Producer([0.3, 0.2]), Exchange()

    await serve(producer, exchange)

    chunks = exchange.chunks
    first, second = chunks.index(data("part 0")), chunks.index(data("part 1"))
    assert first >= 3
    assert set(chunks[:first]) == {KEEP_ALIVE_COMMENT}
    assert second - first >= 3
    assert set(chunks[first + 1 : second]) == {KEEP_ALIVE_COMMENT}
    assert chunks[second + 1 :] == []
    assert exchange.ended
    # The pending step was waited on, never cancelled, through every keep-alive.
    assert producer.seen == ["finished", "cleaned up"]


async def test_no_comment_while_events_keep_coming() -> None:
    producer, exchange = Producer([0.01] * 10), Exchange()

    await serve(producer, exchange)

    assert KEEP_ALIVE_COMMENT not in exchange.chunks
    assert len(exchange.chunks) == 10


async def test_a_client_leaving_a_silence_cancels_the_producer_at_once() -> None:
    producer, exchange = Producer([30]), Exchange(leave_after=0.2)
    started = time.monotonic()

    await asyncio.wait_for(serve(producer, exchange), timeout=5)

    assert time.monotonic() - started < 2
    assert KEEP_ALIVE_COMMENT in exchange.chunks
    assert producer.seen == ["cancelled", "cleaned up"]
    assert not exchange.ended


@pytest.mark.parametrize(
    ("pauses", "sends", "seen"),
    [
        # The second body message is a comment, sent while an event is pending.
        pytest.param([30], 2, ["cancelled", "cleaned up"], id="during-a-silence"),
        # It is the first event: the producer waits at its `yield`.
        pytest.param([0, 0], 1, ["closed", "cleaned up"], id="on-an-event"),
    ],
)
async def test_a_failed_send_ends_quietly_and_closes_the_producer(
    pauses: list[float], sends: int, seen: list[str]
) -> None:
    producer, exchange = Producer(pauses), Exchange(sends=sends)

    await asyncio.wait_for(serve(producer, exchange), timeout=5)

    assert producer.seen == seen


async def test_a_producer_error_is_not_hidden() -> None:
    async def failing() -> AsyncGenerator[dict[str, Any]]:
        await asyncio.sleep(0.2)
        raise RuntimeError("bug")
        yield {}  # an async generator

    response = EventStreamResponse(failing(), keep_alive=KEEP_ALIVE)
    exchange = Exchange()

    with pytest.raises(RuntimeError, match="bug"):
        await response({"type": "http"}, exchange.receive, exchange.send)


def test_events_are_compact_json_in_utf8() -> None:
    assert encode_event({"type": "delta", "text": "café ☕"}) == (
        'data: {"type":"delta","text":"café ☕"}\n\n'.encode()
    )


def test_what_orjson_refuses_is_still_encoded() -> None:
    encoded = encode_event({"text": "lone \ud800"})

    assert encoded == b'data: {"text":"lone \\ud800"}\n\n'
    assert json.loads(encoded.removeprefix(b"data: ")) == {"text": "lone \ud800"}
