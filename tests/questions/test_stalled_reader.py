"""A streaming client that stops reading is treated as gone after
ASKGATE_LLM_READ_TIMEOUT: its stream ends, the upstream call is cancelled and the
question is stored as cancelled with the part of the answer produced so far."""

import asyncio
import json
import socket
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest

from askgate.config import Settings
from askgate.questions.service import CLIENT_LEFT
from tests.fake_upstream import FakeUpstream

FLOOD_BYTES = 1024**3  # far more than every buffer between the two ends holds


@pytest.fixture
def settings(settings: Settings) -> Settings:
    return settings.model_copy(
        update={"llm_read_timeout": 1.0, "llm_max_response_bytes": 2 * FLOOD_BYTES}
    )


async def _stored_question(
    client: httpx.AsyncClient, headers: dict[str, str]
) -> dict[str, Any]:
    while not (
        questions := (await client.get("/questions/me", headers=headers)).json()
    ):
        await asyncio.sleep(0.05)
    [question] = questions
    return dict(question)


async def _upstream_closed(fake_upstream: FakeUpstream) -> None:
    await fake_upstream.stream_closed_by_client.wait()


async def test_a_client_that_stops_reading_loses_its_stream(
    server_url: str,
    client: httpx.AsyncClient,
    user_headers: dict[str, str],
    fake_upstream: FakeUpstream,
) -> None:
    fake_upstream.mode = "oversized"  # 1 KiB deltas, as fast as askgate takes them
    fake_upstream.oversized_bytes = FLOOD_BYTES
    address = urlsplit(server_url)
    body = json.dumps({"content": "Flood me", "stream": True}).encode()
    request = (
        b"POST /questions HTTP/1.1\r\nHost: %b\r\nAuthorization: %b\r\n"
        b"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n%b"
        % (
            address.netloc.encode(),
            user_headers["Authorization"].encode(),
            len(body),
            body,
        )
    )
    loop = asyncio.get_running_loop()
    with socket.socket() as reader:
        # A small receive window that the client never empties.
        reader.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        reader.setblocking(False)
        await loop.sock_connect(reader, (address.hostname, address.port))
        await loop.sock_sendall(reader, request)

        question = await asyncio.wait_for(_stored_question(client, user_headers), 60)
        await asyncio.wait_for(_upstream_closed(fake_upstream), 10)

    assert question["status"] == "cancelled"
    assert question["error"] == CLIENT_LEFT
    assert question["answer"].startswith("x" * 1024)
    assert fake_upstream.streams_closed_by_client == 1
