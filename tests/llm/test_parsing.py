"""What the parsers make of an upstream's bytes, however they are cut into chunks
and whatever odd JSON they hold."""

import json
from collections.abc import AsyncIterator
from typing import Any

import pytest

from askgate.llm.errors import UpstreamError
from askgate.llm.parsing import (
    MAX_MODEL_NAME,
    MAX_STREAM_LINE_BYTES,
    parse_completion,
    parse_events,
)
from askgate.llm.types import Completion, Delta, StreamEnd, Usage


def chunk(
    text: str | None = None, *, model: Any = "m", finish: str | None = None
) -> dict[str, Any]:
    delta = {} if text is None else {"content": text}
    return {
        "object": "chat.completion.chunk",
        "model": model,
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
    }


def sse(*events: dict[str, Any] | bytes) -> bytes:
    return b"".join(
        b"data: %b\n\n" % (e if isinstance(e, bytes) else json.dumps(e).encode())
        for e in events
    )


async def pieces(body: bytes, size: int) -> AsyncIterator[bytes]:
    for start in range(0, len(body), size):
        yield body[start : start + size]


async def parse(
    body: bytes, *, size: int | None = None, limit: int = 4096
) -> list[Delta | StreamEnd]:
    events = parse_events(
        pieces(body, size or len(body)), default_model="default", limit=limit
    )
    return [event async for event in events]


USAGE = {"prompt_tokens": 2, "completion_tokens": 5}
BODY = sse(
    chunk("Hel"),
    chunk("lo"),
    chunk(finish="stop"),
    {"model": "m", "choices": [], "usage": USAGE},
    b"[DONE]",
)


@pytest.mark.parametrize("size", [1, 7, 64, len(BODY)])
async def test_events_do_not_depend_on_where_the_body_is_cut(size: int) -> None:
    assert await parse(BODY, size=size) == [
        Delta("Hel"),
        Delta("lo"),
        StreamEnd(model="m", usage=Usage(2, 5), finish_reason="stop"),
    ]


async def test_comments_other_fields_and_crlf_are_skipped() -> None:
    body = BODY.replace(b"\n", b"\r\n")
    body = b": keep-alive\r\n\r\nevent: message\r\nid: 1\r\n" + body

    assert await parse(body) == await parse(BODY)


async def test_without_usage_the_usage_stays_unknown() -> None:
    # Not one token per delta: the quota estimates from the text instead.
    events = await parse(sse(chunk("a"), chunk("b"), chunk(finish="stop")))

    assert events[-1] == StreamEnd(
        model="m", usage=Usage(None, None), finish_reason="stop"
    )


@pytest.mark.parametrize(
    "value",
    [2**63, 10**9 + 1, -1, 1.5, True, False, "3", None, [1]],
    ids=repr,
)
async def test_implausible_token_counts_are_unknown(value: Any) -> None:
    usage = {"prompt_tokens": value, "completion_tokens": 10**9}
    body = sse(chunk("a", finish="stop"), {"choices": [], "usage": usage})
    completion = json.dumps(
        {"choices": [{"message": {"content": "a"}}], "usage": usage}
    ).encode()

    assert (await parse(body))[-1].usage == Usage(None, 10**9)  # type: ignore[union-attr]
    assert parse_completion(completion, default_model="d").usage == Usage(None, 10**9)


async def test_the_model_name_follows_the_chunks() -> None:
    first = await parse(sse(chunk("a", model="one"), chunk(finish="stop", model=None)))
    second = await parse(
        sse(chunk("a", model="one"), chunk(finish="stop", model="two"), b"[DONE]")
    )
    unnamed = await parse(sse(chunk("a", model=7), chunk(finish="stop", model="")))

    assert first[-1] == StreamEnd(
        model="one", usage=Usage(None, None), finish_reason="stop"
    )
    assert second[-1] == StreamEnd(
        model="two", usage=Usage(None, None), finish_reason="stop"
    )
    assert unnamed[-1] == StreamEnd(
        model="default", usage=Usage(None, None), finish_reason="stop"
    )


async def test_unstorable_characters_are_replaced() -> None:
    # orjson refuses the lone surrogate; the standard parser takes the event.
    body = (
        b'data: {"model":"x\\udfff\\u0000","choices":[{"delta":'
        b'{"content":"a\\ud800b\\u0000c"},"finish_reason":"stop"}]}\n\n'
    )

    assert await parse(body) == [
        Delta("a\ufffdb\ufffdc"),
        StreamEnd(model="x\ufffd\ufffd", usage=Usage(None, None), finish_reason="stop"),
    ]


async def test_a_long_model_name_is_cut_to_the_column_width() -> None:
    events = await parse(sse(chunk("a", model="n" * 500, finish="stop")))

    assert events[-1] == StreamEnd(
        model="n" * MAX_MODEL_NAME, usage=Usage(None, None), finish_reason="stop"
    )


async def test_json_orjson_refuses_is_accepted_as_before() -> None:
    body = (
        b'data: {"model":"m","temperature":NaN,"choices":[{"delta":{"content":"x"},'
        b'"finish_reason":"stop"}],"usage":{"prompt_tokens":1,'
        b'"completion_tokens":100000000000000000000}}\n\n'
    )

    assert await parse(body) == [
        Delta("x"),
        StreamEnd(
            model="m", usage=Usage(1, None), finish_reason="stop"
        ),  # 10**20: implausible
    ]


async def test_choices_that_are_not_a_list_are_ignored() -> None:
    body = sse({"model": "m", "choices": 5}, chunk("a", finish="stop"))

    assert await parse(body) == [Delta("a"), StreamEnd("m", Usage(None, None), "stop")]


@pytest.mark.parametrize(
    ("texts", "limit"),
    [
        pytest.param(["abc", "de"], 5, id="ascii"),
        pytest.param(["é", "é"], 4, id="two-byte"),
        pytest.param(["☕"], 3, id="three-byte"),
    ],
)
async def test_the_answer_may_reach_the_limit_in_utf8_bytes(
    texts: list[str], limit: int
) -> None:
    body = sse(*(chunk(text) for text in texts), chunk(finish="stop"))

    events = await parse(body, limit=limit)
    with pytest.raises(UpstreamError, match=f"too large \\(over {limit - 1} bytes"):
        await parse(body, limit=limit - 1)

    assert [e.text for e in events if isinstance(e, Delta)] == texts


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        pytest.param(b"data: {not json\n\n", "an event is not JSON", id="not-json"),
        pytest.param(b"data: [1]\n\n", "not a JSON object", id="not-object"),
        pytest.param(b'data: {"error":{}}\n\n', "reported an error", id="error"),
        pytest.param(
            b"data: " + b"x" * MAX_STREAM_LINE_BYTES, "line is too long", id="line"
        ),
        pytest.param(sse(chunk("a")), "ended before the answer", id="unfinished"),
    ],
)
async def test_broken_streams_raise(body: bytes, reason: str) -> None:
    with pytest.raises(UpstreamError, match=reason):
        await parse(body)


def completion_body(content: Any, model: Any = "m") -> bytes:
    return json.dumps(
        {
            "model": model,
            "choices": [{"message": {"content": content}}],
            "usage": {"prompt_tokens": 3, "completion_tokens": -1},
        }
    ).encode()


def test_a_completion_is_parsed() -> None:
    assert parse_completion(completion_body("Hi\ud800"), default_model="d") == (
        Completion(
            text="Hi\ufffd", model="m", usage=Usage(3, None), finish_reason="stop"
        )
    )


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        pytest.param(b"{not json", "not JSON", id="not-json"),
        pytest.param(b"[]", "not a JSON object", id="not-object"),
        pytest.param(b'{"choices":[]}', "no choices", id="no-choices"),
        pytest.param(completion_body(None), "no message content", id="no-content"),
    ],
)
def test_broken_completions_raise(body: bytes, reason: str) -> None:
    with pytest.raises(UpstreamError, match=reason):
        parse_completion(body, default_model="d")


# Tool calls (the OpenAI API): passed on as sent, but storable.

CALL = {
    "id": "call_1",
    "type": "function",
    "function": {"name": "f\u0000", "arguments": '{"a": "\ud800"}'},
}
CLEAN_CALL = {
    "id": "call_1",
    "type": "function",
    "function": {"name": "f\ufffd", "arguments": '{"a": "\ufffd"}'},
}


def test_a_completion_of_tool_calls_is_parsed() -> None:
    body = json.dumps(
        {
            "model": "m",
            "choices": [
                {
                    "message": {"content": None, "tool_calls": [CALL, "junk"]},
                    "finish_reason": "tool_calls",
                }
            ],
        }
    ).encode()

    assert parse_completion(body, default_model="d") == Completion(
        text="",
        model="m",
        usage=Usage(None, None),
        tool_calls=(CLEAN_CALL,),
        finish_reason="tool_calls",
    )


async def test_streamed_tool_calls_come_as_deltas() -> None:
    first = {"index": 0, **CALL}
    rest = {"index": 0, "function": {"arguments": "}"}}
    body = sse(
        {
            "model": "m",
            "choices": [{"delta": {"role": "assistant", "tool_calls": [first]}}],
        },
        {"model": "m", "choices": [{"delta": {"tool_calls": [rest]}}]},
        {"model": "m", "choices": [{"delta": {}, "finish_reason": "tool_calls"}]},
    )

    assert await parse(body) == [
        Delta("", ({"index": 0, **CLEAN_CALL},)),
        Delta("", (rest,)),
        StreamEnd("m", Usage(None, None), "tool_calls"),
    ]


async def test_streamed_tool_calls_count_towards_the_size_limit() -> None:
    calls = [{"index": 0, "function": {"arguments": "x" * 3000}}]
    body = sse(*[{"choices": [{"delta": {"tool_calls": calls}}]}] * 2)

    with pytest.raises(UpstreamError, match="too large"):
        await parse(body, limit=4096)


def test_tool_calls_nested_too_deeply_are_an_invalid_response() -> None:
    nested: Any = "x"
    for _ in range(900):
        nested = [nested]
    call = {"id": "c", "function": {"name": "f", "arguments": nested}}
    body = json.dumps(
        {"choices": [{"message": {"content": None, "tool_calls": [call]}}]}
    ).encode()

    with pytest.raises(UpstreamError, match="nested too deeply"):
        parse_completion(body, default_model="d")


def test_an_odd_finish_reason_is_stop() -> None:
    body = json.dumps(
        {"choices": [{"message": {"content": "a"}, "finish_reason": {"x": 1}}]}
    ).encode()

    assert parse_completion(body, default_model="d").finish_reason == "stop"
