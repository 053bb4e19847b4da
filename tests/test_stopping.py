"""A stop of askgate (askgate.shutdown) as each API sees it: the probes' flag is
set at once, a question still running when the grace runs out is cut, its client
is told so (a 503 for a plain question, a last event for a stream, in each API's
shape), and it is stored as cancelled. The signal path is tested on a real
`askgate serve` (tests/test_graceful_shutdown.py)."""

import asyncio
import json
from typing import Any

import httpx
import pytest

from askgate.config import Settings
from askgate.runtime import Runtime
from askgate.shutdown import CUT_DETAIL
from tests.fake_upstream import MODEL, FakeUpstream

GUARD = 30  # seconds: against hanging, not a speed


@pytest.fixture
def settings(settings: Settings) -> Settings:
    settings.shutdown_grace_seconds = 0  # cut at once when the stop begins
    return settings


async def _stored(client: httpx.AsyncClient, headers: dict[str, str]) -> Any:
    response = await client.get("/questions/me", headers=headers)
    assert response.status_code == 200, response.text
    return response.json()


async def _cut_while(
    runtime: Runtime, fake_upstream: FakeUpstream, request: Any
) -> httpx.Response:
    """`request` started, then the stop begun once the upstream has it."""
    task = asyncio.create_task(request)
    async with asyncio.timeout(GUARD):
        while not fake_upstream.in_flight:
            await asyncio.sleep(0.01)
    assert not runtime.shutting_down
    runtime.stopping.begin()
    assert runtime.shutting_down  # at once: the probes say so
    async with asyncio.timeout(GUARD):
        response: httpx.Response = await task
    return response


@pytest.mark.parametrize("path", ["/questions", "/v1/chat/completions"])
async def test_a_plain_question_cut_by_a_stop_is_a_503_and_stored_cancelled(
    client: httpx.AsyncClient,
    runtime: Runtime,
    fake_upstream: FakeUpstream,
    user_headers: dict[str, str],
    path: str,
) -> None:
    fake_upstream.mode = "hang"
    body: dict[str, Any] = {"content": "cut me"}
    if path.startswith("/v1"):
        body = {"model": MODEL, "messages": [{"role": "user", "content": "cut me"}]}
    response = await _cut_while(
        runtime, fake_upstream, client.post(path, json=body, headers=user_headers)
    )

    assert response.status_code == 503, response.text
    if path.startswith("/v1"):
        assert response.json()["error"]["message"] == CUT_DETAIL
    else:
        assert response.json() == {"detail": CUT_DETAIL}
    [question] = await _stored(client, user_headers)
    assert question["content"] == "cut me"
    assert question["status"] == "cancelled"
    assert question["error"] == CUT_DETAIL


@pytest.mark.parametrize("path", ["/questions", "/v1/chat/completions"])
async def test_a_stream_cut_by_a_stop_ends_with_an_event_saying_so(
    client: httpx.AsyncClient,
    server_url: str,
    runtime: Runtime,
    fake_upstream: FakeUpstream,
    user_headers: dict[str, str],
    path: str,
) -> None:
    fake_upstream.mode = "slow_stream"
    body: dict[str, Any] = {"content": "cut me", "stream": True}
    if path.startswith("/v1"):
        body = {
            "model": MODEL,
            "messages": [{"role": "user", "content": "cut me"}],
            "stream": True,
        }
    lines: list[str] = []
    async with (
        httpx.AsyncClient(base_url=server_url, timeout=GUARD) as real,
        real.stream("POST", path, json=body, headers=user_headers) as r,
    ):
        assert r.status_code == 200
        async with asyncio.timeout(GUARD):
            async for line in r.aiter_lines():
                if line.startswith("data: "):
                    lines.append(line.removeprefix("data: "))
                    if len(lines) == 3:
                        runtime.stopping.begin()

    events = [json.loads(line) for line in lines]
    if path.startswith("/v1"):
        assert events[-1] == {
            "error": {
                "message": CUT_DETAIL,
                "type": "server_error",
                "param": None,
                "code": "server_restarting",
            }
        }
        sent = "".join(
            e["choices"][0]["delta"].get("content") or "" for e in events[:-1]
        )
    else:
        assert events[-1] == {"type": "error", "detail": CUT_DETAIL}
        sent = "".join(e["text"] for e in events[:-1])
    assert " tick2" in sent
    [question] = await _stored(client, user_headers)
    assert question["status"] == "cancelled"
    assert question["error"] == CUT_DETAIL
    assert question["answer"].startswith(sent)


async def test_the_probes_say_stopping_as_soon_as_the_stop_begins(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    assert (await client.get("/health/live")).status_code == 200
    assert (await client.get("/health/ready")).status_code == 200
    runtime.stopping.begin()
    live = await client.get("/health/live")
    ready = await client.get("/health/ready")
    assert live.status_code == 503
    assert ready.status_code == 503
    assert ready.json()["status"] == "shutting_down"
