"""`"stream": true`: server-sent events, and what is stored however a stream ends.

Most tests go through ASGITransport, which buffers the whole response. The
client-disconnect test needs a real connection to drop, so it serves the app with
uvicorn in-process.
"""

import asyncio
import json
from typing import Any

import httpx
import pytest

from askgate import sse
from askgate.questions.service import CLIENT_LEFT
from tests.fake_upstream import MODEL, FakeUpstream, answer_for

Event = dict[str, Any]


def parse_events(body: str) -> list[Event]:
    """Every event of a complete SSE body; each must be one `data:` JSON line.
    Keep-alive comments are skipped."""
    assert body.endswith("\n\n"), body
    events = []
    for block in body.removesuffix("\n\n").split("\n\n"):
        if block == ": keep-alive":
            continue
        assert block.startswith("data: "), block
        assert "\n" not in block, block
        events.append(json.loads(block.removeprefix("data: ")))
    return events


async def post_streaming(
    client: httpx.AsyncClient, headers: dict[str, str], content: str
) -> str:
    """The whole SSE body of a streamed question."""
    response = await client.post(
        "/questions", json={"content": content, "stream": True}, headers=headers
    )
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/event-stream")
    assert response.headers["cache-control"] == "no-cache"
    return response.text


async def ask_streaming(
    client: httpx.AsyncClient, headers: dict[str, str], content: str
) -> list[Event]:
    return parse_events(await post_streaming(client, headers, content))


async def history(
    client: httpx.AsyncClient, headers: dict[str, str]
) -> list[dict[str, Any]]:
    response = await client.get("/questions/me", headers=headers)
    assert response.status_code == 200, response.text
    questions: list[dict[str, Any]] = response.json()
    return questions


def split_terminal(events: list[Event]) -> tuple[str, Event]:
    """The text of the deltas, and the one terminal event, which comes last."""
    *deltas, last = events
    assert [event["type"] for event in deltas] == ["delta"] * len(deltas)
    assert last["type"] in {"done", "error"}
    return "".join(event["text"] for event in deltas), last


async def test_stream_sends_deltas_then_one_done(
    client: httpx.AsyncClient,
    user_headers: dict[str, str],
    fake_upstream: FakeUpstream,
) -> None:
    events = await ask_streaming(client, user_headers, "What is up?")

    assert [event.get("text") for event in events[:-1]] == [
        "You",
        " asked:",
        " What",
        " is",
        " up?",
    ]
    answer, last = split_terminal(events)
    assert answer == answer_for("What is up?")
    assert last["type"] == "done"
    question = last["question"]
    assert question["answer"] == answer
    assert question["content"] == "What is up?"
    assert question["status"] == "answered"
    assert question["model"] == MODEL
    assert question["error"] is None
    assert question["usage"] == {"prompt_tokens": 3, "completion_tokens": 5}
    assert await history(client, user_headers) == [question]


async def test_stream_forwards_parameters_and_asks_for_usage(
    client: httpx.AsyncClient,
    user_headers: dict[str, str],
    fake_upstream: FakeUpstream,
) -> None:
    response = await client.post(
        "/questions",
        json={"content": "Go", "stream": True, "max_tokens": 9, "temperature": 1.5},
        headers=user_headers,
    )

    assert response.status_code == 200, response.text
    sent = fake_upstream.requests[-1]
    assert sent["stream"] is True
    assert sent["stream_options"] == {"include_usage": True}
    assert sent["max_tokens"] == 9
    assert sent["temperature"] == 1.5


async def test_stream_cut_by_the_upstream_stores_the_partial_answer(
    client: httpx.AsyncClient,
    user_headers: dict[str, str],
    fake_upstream: FakeUpstream,
) -> None:
    fake_upstream.mode = "cut_stream"

    events = await ask_streaming(client, user_headers, "Tell me more")

    answer, last = split_terminal(events)
    assert answer == "You asked:"
    assert last["type"] == "error"
    assert "closed the connection mid-answer" in last["detail"]
    [question] = await history(client, user_headers)
    assert last["question_id"] == question["id"]
    assert question["status"] == "failed"
    assert question["answer"] == answer
    assert question["error"] == last["detail"]


async def test_stream_stalled_by_the_upstream_times_out(
    client: httpx.AsyncClient,
    user_headers: dict[str, str],
    fake_upstream: FakeUpstream,
) -> None:
    fake_upstream.mode = "stall_stream"

    events = await ask_streaming(client, user_headers, "Still there?")

    answer, last = split_terminal(events)
    assert answer == "You asked:"
    assert last["type"] == "error"
    assert "Timed out" in last["detail"]
    [question] = await history(client, user_headers)
    assert question["status"] == "failed"
    assert question["answer"] == "You asked:"


@pytest.mark.parametrize(
    ("mode", "reason"),
    [
        pytest.param("status_500", "HTTP 500", id="http-500"),
        pytest.param("status_429", "HTTP 429", id="http-429"),
        pytest.param("garbage_json", "expected text/event-stream", id="garbage"),
        pytest.param("wrong_content_type", "sent text/html", id="content-type"),
        pytest.param("no_choices", "expected text/event-stream", id="no-choices"),
        pytest.param("hang", "Timed out", id="hang"),
    ],
)
async def test_stream_failing_before_any_text_sends_one_error_event(
    client: httpx.AsyncClient,
    user_headers: dict[str, str],
    fake_upstream: FakeUpstream,
    mode: str,
    reason: str,
) -> None:
    fake_upstream.mode = mode

    events = await ask_streaming(client, user_headers, "Will it stream?")

    [event] = events
    assert event["type"] == "error"
    assert reason in event["detail"]
    [question] = await history(client, user_headers)
    assert event["question_id"] == question["id"]
    assert question["status"] == "failed"
    assert question["answer"] is None
    assert question["error"] == event["detail"]


async def test_stream_replaces_unstorable_characters(
    client: httpx.AsyncClient,
    user_headers: dict[str, str],
    fake_upstream: FakeUpstream,
) -> None:
    fake_upstream.mode = "unstorable_text"

    events = await ask_streaming(client, user_headers, "Odd?")

    answer, last = split_terminal(events)
    assert answer == "lone \ufffd and nul \ufffd here"
    assert last["type"] == "done"
    assert last["question"]["answer"] == answer
    [question] = await history(client, user_headers)
    assert question["answer"] == answer


async def _read_deltas(response: httpx.Response, count: int) -> list[str]:
    texts: list[str] = []
    async for line in response.aiter_lines():
        if line.startswith("data: "):
            event = json.loads(line.removeprefix("data: "))
            assert event["type"] == "delta", event
            texts.append(event["text"])
            if len(texts) == count:
                break
    return texts


async def test_client_disconnect_cancels_the_upstream_and_stores_the_partial(
    server_url: str,
    client: httpx.AsyncClient,
    user_headers: dict[str, str],
    fake_upstream: FakeUpstream,
) -> None:
    fake_upstream.mode = "slow_stream"

    async with (
        httpx.AsyncClient(base_url=server_url) as real_client,
        real_client.stream(
            "POST",
            "/questions",
            json={"content": "Count forever", "stream": True},
            headers=user_headers,
        ) as response,
    ):
        assert response.status_code == 200
        received = await asyncio.wait_for(_read_deltas(response, 2), timeout=5)
    # Leaving the blocks closed the response without reading it: the connection
    # is dropped, as when a browser tab is closed.

    await asyncio.wait_for(fake_upstream.stream_closed_by_client.wait(), timeout=5)
    question = await asyncio.wait_for(_stored_question(client, user_headers), timeout=5)
    assert question["status"] == "cancelled"
    assert question["error"] == "The client disconnected before the answer was complete"
    assert question["answer"].startswith("".join(received))
    assert question["usage"] == {"prompt_tokens": None, "completion_tokens": None}


async def _stored_question(
    client: httpx.AsyncClient, headers: dict[str, str]
) -> dict[str, Any]:
    while not (questions := await history(client, headers)):
        await asyncio.sleep(0.05)
    [question] = questions
    return question


# Keep-alive: a model slow to start must not let a proxy's idle timeout cut the
# stream.

KEEP_ALIVE = 0.05


@pytest.fixture
def quick_keep_alive(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sse, "KEEP_ALIVE_INTERVAL", KEEP_ALIVE)


@pytest.mark.usefixtures("quick_keep_alive")
async def test_a_slow_first_token_is_preceded_by_keep_alive_comments(
    client: httpx.AsyncClient,
    user_headers: dict[str, str],
    fake_upstream: FakeUpstream,
) -> None:
    fake_upstream.first_chunk_delay = 0.5  # under the tests' 1 s read timeout

    body = await post_streaming(client, user_headers, "What is up?")

    blocks = body.removesuffix("\n\n").split("\n\n")
    first_data = next(i for i, b in enumerate(blocks) if b.startswith("data: "))
    assert first_data >= 2
    assert set(blocks[:first_data]) == {": keep-alive"}
    events = parse_events(body)
    assert [event.get("text") for event in events[:-1]] == [
        "You",
        " asked:",
        " What",
        " is",
        " up?",
    ]
    answer, last = split_terminal(events)
    assert answer == answer_for("What is up?")
    assert last["type"] == "done"
    assert last["question"]["status"] == "answered"
    assert last["question"]["usage"] == {"prompt_tokens": 3, "completion_tokens": 5}
    assert await history(client, user_headers) == [last["question"]]


async def _first_comment(response: httpx.Response) -> str:
    async for line in response.aiter_lines():
        assert not line.startswith("data: "), line
        if line.startswith(":"):
            return line
    raise AssertionError("the stream ended without a comment")


@pytest.mark.usefixtures("quick_keep_alive")
async def test_a_client_leaving_during_the_silence_cancels_the_question(
    server_url: str,
    client: httpx.AsyncClient,
    user_headers: dict[str, str],
    fake_upstream: FakeUpstream,
) -> None:
    fake_upstream.first_chunk_delay = 0.9  # under the tests' 1 s read timeout

    async with (
        httpx.AsyncClient(base_url=server_url) as real_client,
        real_client.stream(
            "POST",
            "/questions",
            json={"content": "Take your time", "stream": True},
            headers=user_headers,
        ) as response,
    ):
        assert response.status_code == 200
        comment = await asyncio.wait_for(_first_comment(response), timeout=5)
    # The connection is dropped while the upstream has sent nothing yet.

    assert comment == ": keep-alive"
    await asyncio.wait_for(fake_upstream.stream_closed_by_client.wait(), timeout=5)
    question = await asyncio.wait_for(_stored_question(client, user_headers), timeout=5)
    assert question["status"] == "cancelled"
    assert question["error"] == CLIENT_LEFT
    assert question["answer"] is None
