"""A stream reaches the client chunk by chunk, not once the upstream is done:
the upstream here stalls after its first pieces and never ends, so any chunk
received proves nothing waited for the whole answer."""

import asyncio
import json
import shutil
from collections.abc import AsyncIterator

import httpx2
import openai
import pytest

from askgate.config import Settings
from tests.fake_upstream import MODEL, FakeUpstream


@pytest.fixture
def settings(settings: Settings) -> Settings:
    return settings.model_copy(update={"llm_read_timeout": 30.0})


@pytest.fixture
def stalling(fake_upstream: FakeUpstream) -> FakeUpstream:
    fake_upstream.mode = "stall_stream"
    fake_upstream.stall_after = 1
    return fake_upstream


@pytest.fixture
async def real_sdk(server_url: str, user_key: str) -> AsyncIterator[openai.AsyncOpenAI]:
    async with httpx2.AsyncClient(timeout=30) as http:
        yield openai.AsyncOpenAI(
            api_key=user_key,
            base_url=f"{server_url}/v1",
            http_client=http,
            max_retries=0,
        )


async def test_the_sdk_gets_the_first_chunk_before_the_upstream_ends(
    real_sdk: openai.AsyncOpenAI, stalling: FakeUpstream
) -> None:
    stream = await real_sdk.chat.completions.create(
        model=MODEL, messages=[{"role": "user", "content": "Hi"}], stream=True
    )
    first = await asyncio.wait_for(anext(aiter(stream)), 10)
    await stream.close()

    assert first.choices[0].delta.content == "You"


@pytest.mark.skipif(shutil.which("curl") is None, reason="needs curl")
async def test_curl_gets_the_first_chunk_before_the_upstream_ends(
    server_url: str, user_key: str, stalling: FakeUpstream
) -> None:
    body = {"model": MODEL, "messages": [{"role": "user", "content": "Hi"}]}
    curl = await asyncio.create_subprocess_exec(
        "curl",
        "-sN",
        f"{server_url}/v1/chat/completions",
        "-H",
        f"Authorization: Bearer {user_key}",
        "-H",
        "Content-Type: application/json",
        "-d",
        json.dumps({**body, "stream": True}),
        stdout=asyncio.subprocess.PIPE,
    )
    try:
        assert curl.stdout is not None
        line = await asyncio.wait_for(curl.stdout.readline(), 10)
    finally:
        curl.kill()
        await curl.wait()

    chunk = json.loads(line.removeprefix(b"data: "))
    assert chunk["object"] == "chat.completion.chunk"
    assert chunk["choices"][0]["delta"]["content"] == "You"
