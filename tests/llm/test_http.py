"""What LLMClient sends: one JSON request per call, built from per-client
constants, against the fake upstream."""

import aiohttp

from askgate.llm.http import LLMClient
from askgate.llm.types import ChatParams, Delta
from tests.fake_upstream import MODEL, FakeUpstream, answer_for


def make_client(http: aiohttp.ClientSession, fake: FakeUpstream) -> LLMClient:
    return LLMClient(
        http,
        base_url=f"{fake.base_url}/",
        model=MODEL,
        api_key="sk-test",
        system_prompt="Be brief.",
    )


async def test_requests_are_json_with_the_system_prompt_first(
    http: aiohttp.ClientSession, fake_upstream: FakeUpstream
) -> None:
    client = make_client(http, fake_upstream)
    params = ChatParams(content="Hi there", max_tokens=5, temperature=0.5)

    completion = await client.complete(params)
    deltas = [e async for e in client.stream(params) if isinstance(e, Delta)]

    assert completion.text == "".join(d.text for d in deltas) == answer_for("Hi there")
    messages = [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Hi there"},
    ]
    common = {"model": MODEL, "messages": messages, "max_tokens": 5}
    assert fake_upstream.requests == [
        {**common, "stream": False, "temperature": 0.5},
        {
            **common,
            "stream": True,
            "temperature": 0.5,
            "stream_options": {"include_usage": True},
        },
    ]
    for headers in fake_upstream.headers:
        assert headers["Content-Type"] == "application/json"
        assert headers["Authorization"] == "Bearer sk-test"


async def test_a_question_without_temperature_sends_none(
    http: aiohttp.ClientSession, fake_upstream: FakeUpstream
) -> None:
    await make_client(http, fake_upstream).complete(ChatParams("Hi", max_tokens=5))

    assert "temperature" not in fake_upstream.requests[-1]


async def test_text_orjson_refuses_is_still_sent(
    http: aiohttp.ClientSession, fake_upstream: FakeUpstream
) -> None:
    # A lone surrogate: validation rejects it in questions, but the client does
    # not rely on that.
    completion = await make_client(http, fake_upstream).complete(
        ChatParams("odd \ud800 text", max_tokens=5)
    )

    assert fake_upstream.requests[-1]["messages"][-1]["content"] == "odd \ud800 text"
    assert completion.text == "You asked: odd \ufffd text"


async def test_check_lists_the_models(
    http: aiohttp.ClientSession, fake_upstream: FakeUpstream
) -> None:
    client = make_client(http, fake_upstream)

    assert await client.check() is True
    await fake_upstream.stop()
    assert await client.check() is False
