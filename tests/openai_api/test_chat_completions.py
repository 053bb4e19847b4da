"""The OpenAI API through the real openai SDK: answers, streams, tool calls and
the model list, each call stored as a question."""

import json
from typing import Any

import httpx
import openai
import pytest

from tests.fake_upstream import MODEL, TOOL_ARGUMENTS, TOOL_CALL_ID, FakeUpstream

WEATHER_TOOL: Any = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "The weather in a city",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}},
            "required": ["city"],
        },
    },
}


async def history(
    client: httpx.AsyncClient, headers: dict[str, str]
) -> list[dict[str, Any]]:
    response = await client.get("/questions/me", headers=headers)
    assert response.status_code == 200, response.text
    questions: list[dict[str, Any]] = response.json()
    return questions


async def test_a_completion_answers_in_openai_shape_and_is_stored(
    sdk: openai.AsyncOpenAI,
    client: httpx.AsyncClient,
    user_headers: dict[str, str],
    fake_upstream: FakeUpstream,
) -> None:
    completion = await sdk.chat.completions.create(
        model=MODEL,
        messages=[
            {"role": "developer", "content": "Be brief."},
            {"role": "user", "content": [{"type": "text", "text": "Hello?"}]},
        ],
        max_completion_tokens=50,
        temperature=0.5,
        top_p=0.9,
        stop=["\n\n"],
        seed=7,
        presence_penalty=0.1,
        frequency_penalty=0.2,
        n=1,
        user="someone",
        response_format={"type": "text"},
    )

    assert completion.object == "chat.completion"
    assert completion.id.startswith("chatcmpl-")
    assert completion.model == MODEL
    assert completion.created > 0
    [choice] = completion.choices
    assert choice.message.role == "assistant"
    assert choice.message.content == "You asked: Hello?"
    assert choice.finish_reason == "stop"
    assert completion.usage is not None
    assert completion.usage.total_tokens == (
        completion.usage.prompt_tokens + completion.usage.completion_tokens
    )
    [sent] = fake_upstream.requests
    assert sent["model"] == MODEL
    assert sent["messages"] == [
        {"role": "system", "content": "Be brief."},  # developer, for the upstream
        {"role": "user", "content": [{"type": "text", "text": "Hello?"}]},
    ]
    assert sent["max_tokens"] == 50
    assert sent["stream"] is False
    for name, value in {
        "temperature": 0.5,
        "top_p": 0.9,
        "stop": ["\n\n"],
        "seed": 7,
        "presence_penalty": 0.1,
        "frequency_penalty": 0.2,
        "user": "someone",
        "response_format": {"type": "text"},
    }.items():
        assert sent[name] == value, name

    [question] = await history(client, user_headers)
    assert question["status"] == "answered"
    assert question["content"] == "Hello?"  # the last user message
    assert question["answer"] == "You asked: Hello?"
    assert question["model"] == MODEL
    assert question["tool_calls"] is None
    assert question["usage"] == {
        "prompt_tokens": completion.usage.prompt_tokens,
        "completion_tokens": completion.usage.completion_tokens,
    }


@pytest.mark.parametrize("include_usage", [False, True])
async def test_a_stream_ends_with_done_and_usage_only_when_asked(
    sdk: openai.AsyncOpenAI,
    client: httpx.AsyncClient,
    user_headers: dict[str, str],
    fake_upstream: FakeUpstream,
    include_usage: bool,
) -> None:
    stream = await sdk.chat.completions.create(
        model=MODEL,
        messages=[{"role": "user", "content": "Stream me"}],
        stream=True,
        stream_options={"include_usage": True} if include_usage else openai.omit,
    )
    chunks = [chunk async for chunk in stream]

    assert {chunk.object for chunk in chunks} == {"chat.completion.chunk"}
    assert len({chunk.id for chunk in chunks}) == 1
    assert {chunk.model for chunk in chunks} == {MODEL}
    text = "".join(
        chunk.choices[0].delta.content or "" for chunk in chunks if chunk.choices
    )
    assert text == "You asked: Stream me"
    assert chunks[0].choices[0].delta.role == "assistant"
    finishes = [c.choices[0].finish_reason for c in chunks if c.choices]
    assert finishes[-1] == "stop"
    assert finishes[:-1] == [None] * (len(finishes) - 1)
    # askgate always asks the upstream for the usage...
    assert fake_upstream.requests[0]["stream_options"] == {"include_usage": True}
    usage_chunks = [chunk for chunk in chunks if chunk.usage is not None]
    [question] = await history(client, user_headers)
    assert question["status"] == "answered"
    assert question["answer"] == "You asked: Stream me"
    assert question["usage"] == {"prompt_tokens": 2, "completion_tokens": 4}
    if include_usage:  # ...and gives it on only when the client asked
        [last] = usage_chunks
        assert last is chunks[-1]
        assert last.choices == []
        assert last.usage is not None
        assert (last.usage.prompt_tokens, last.usage.completion_tokens) == (2, 4)
        assert last.usage.total_tokens == 6
    else:
        assert usage_chunks == []


async def test_a_stream_without_upstream_usage_reports_counted_text(
    sdk: openai.AsyncOpenAI, fake_upstream: FakeUpstream
) -> None:
    fake_upstream.usage = None
    stream = await sdk.chat.completions.create(
        model=MODEL,
        messages=[{"role": "user", "content": "Count me"}],
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = [chunk async for chunk in stream]

    usage = chunks[-1].usage
    assert usage is not None
    # the streamed text's UTF-8 bytes: an estimate that errs high
    assert usage.completion_tokens == len("You asked: Count me")
    assert usage.prompt_tokens > len("Count me")


async def test_the_stream_ends_with_done_on_the_wire(
    client: httpx.AsyncClient, user_headers: dict[str, str]
) -> None:
    response = await client.post(
        "/v1/chat/completions",
        json={
            "model": MODEL,
            "messages": [{"role": "user", "content": "Hi"}],
            "stream": True,
        },
        headers=user_headers,
    )

    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/event-stream")
    events = [line for line in response.text.split("\n\n") if line]
    assert events[-1] == "data: [DONE]"
    assert all(event.startswith("data: {") for event in events[:-1])
    assert "X-RateLimit-Remaining" in response.headers


async def test_tool_calls_pass_through_and_are_stored(
    sdk: openai.AsyncOpenAI,
    client: httpx.AsyncClient,
    user_headers: dict[str, str],
    fake_upstream: FakeUpstream,
) -> None:
    fake_upstream.mode = "tool_calls"
    completion = await sdk.chat.completions.create(
        model=MODEL,
        messages=[{"role": "user", "content": "Weather in Paris?"}],
        tools=[WEATHER_TOOL],
        tool_choice="auto",
    )

    [choice] = completion.choices
    assert choice.finish_reason == "tool_calls"
    assert choice.message.content is None
    assert choice.message.tool_calls is not None
    [call] = choice.message.tool_calls
    assert call.type == "function"
    assert call.id == TOOL_CALL_ID
    assert call.function.name == "get_weather"
    assert json.loads(call.function.arguments) == {"city": "Paris", "unit": "celsius"}
    sent = fake_upstream.requests[0]
    assert sent["tools"] == [WEATHER_TOOL]
    assert sent["tool_choice"] == "auto"

    # The tool's answer goes back with the assistant's call in the history.
    fake_upstream.mode = "ok"
    follow_up = await sdk.chat.completions.create(
        model=MODEL,
        messages=[
            {"role": "user", "content": "Weather in Paris?"},
            choice.message,  # type: ignore[list-item]
            {"role": "tool", "tool_call_id": call.id, "content": "18 C, sunny"},
        ],
        tools=[WEATHER_TOOL],
    )
    assert follow_up.choices[0].message.content == "You asked: 18 C, sunny"
    assert fake_upstream.requests[1]["messages"][1] == {
        "role": "assistant",
        "tool_calls": [
            {
                "id": TOOL_CALL_ID,
                "type": "function",
                "function": {"name": "get_weather", "arguments": TOOL_ARGUMENTS},
            }
        ],
    }

    second, first = await history(client, user_headers)
    assert first["status"] == "answered"
    assert first["answer"] is None
    assert first["tool_calls"] == [
        {
            "id": TOOL_CALL_ID,
            "type": "function",
            "function": {"name": "get_weather", "arguments": TOOL_ARGUMENTS},
        }
    ]
    assert second["content"] == "Weather in Paris?"  # the last *user* message


async def test_streamed_tool_calls_pass_through_and_are_stored_whole(
    sdk: openai.AsyncOpenAI,
    client: httpx.AsyncClient,
    user_headers: dict[str, str],
    fake_upstream: FakeUpstream,
) -> None:
    fake_upstream.mode = "tool_calls"
    stream = await sdk.chat.completions.create(
        model=MODEL,
        messages=[{"role": "user", "content": "Weather in Paris?"}],
        tools=[WEATHER_TOOL],
        stream=True,
    )
    chunks = [chunk async for chunk in stream]

    pieces = [
        call
        for chunk in chunks
        if chunk.choices
        for call in chunk.choices[0].delta.tool_calls or ()
    ]
    assert len(pieces) == 2  # as the upstream sent them
    assert pieces[0].id == TOOL_CALL_ID
    assert pieces[0].function is not None
    assert pieces[0].function.name == "get_weather"
    arguments = "".join(
        piece.function.arguments or "" for piece in pieces if piece.function
    )
    assert arguments == TOOL_ARGUMENTS
    assert chunks[-1].choices[0].finish_reason == "tool_calls"

    [question] = await history(client, user_headers)
    assert question["status"] == "answered"
    assert question["tool_calls"] == [
        {
            "id": TOOL_CALL_ID,
            "type": "function",
            "function": {"name": "get_weather", "arguments": TOOL_ARGUMENTS},
        }
    ]
    assert question["usage"] == {"prompt_tokens": 3, "completion_tokens": 7}


async def test_the_models_are_listed(sdk: openai.AsyncOpenAI) -> None:
    models = [model async for model in sdk.models.list()]

    assert [model.id for model in models] == [MODEL]
    assert models[0].object == "model"
    assert models[0].owned_by == "askgate"
    model = await sdk.models.retrieve(MODEL)
    assert model.id == MODEL
