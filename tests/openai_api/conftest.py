from collections.abc import AsyncIterator

import httpx2
import openai
import pytest
from fastapi import FastAPI


@pytest.fixture
async def sdk(
    app: FastAPI, user_headers: dict[str, str]
) -> AsyncIterator[openai.AsyncOpenAI]:
    """The real openai SDK, talking to the app in process, with the user's
    access token as its API key; no retries, so each error is seen once."""
    token = user_headers["Authorization"].removeprefix("Bearer ")
    transport = httpx2.ASGITransport(app=app)
    async with httpx2.AsyncClient(transport=transport) as http:
        yield openai.AsyncOpenAI(
            api_key=token,
            base_url="http://test/v1",
            http_client=http,
            max_retries=0,
        )
