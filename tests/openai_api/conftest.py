from collections.abc import AsyncIterator

import httpx
import httpx2
import openai
import pytest
from fastapi import FastAPI

from tests.factories import create_api_key


@pytest.fixture
async def user_key(client: httpx.AsyncClient, user_headers: dict[str, str]) -> str:
    """A personal API key of the user: what an OpenAI client is given."""
    created = await create_api_key(client, user_headers, name="openai sdk")
    key: str = created["key"]
    return key


@pytest.fixture
async def sdk(app: FastAPI, user_key: str) -> AsyncIterator[openai.AsyncOpenAI]:
    """The real openai SDK, talking to the app in process, with the user's
    personal API key; no retries, so each error is seen once."""
    transport = httpx2.ASGITransport(app=app)
    async with httpx2.AsyncClient(transport=transport) as http:
        yield openai.AsyncOpenAI(
            api_key=user_key,
            base_url="http://test/v1",
            http_client=http,
            max_retries=0,
        )
