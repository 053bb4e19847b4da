"""Without a models file, the ASKGATE_LLM_* settings are the one model: named
ASKGATE_LLM_MODEL, its fallbacks (ASKGATE_LLM_FALLBACK_URLS) no models of their
own."""

from collections.abc import AsyncIterator

import httpx
import pytest

from askgate.config import Settings, UpstreamConfig
from tests.fake_upstream import MODEL, FakeUpstream

BACKUP = "backup-model"


@pytest.fixture
async def second_upstream() -> AsyncIterator[FakeUpstream]:
    upstream = FakeUpstream()
    upstream.model = BACKUP
    await upstream.start()
    yield upstream
    await upstream.stop()


@pytest.fixture
def settings(settings: Settings, second_upstream: FakeUpstream) -> Settings:
    return settings.model_copy(
        update={
            "llm_fallback_urls": [
                UpstreamConfig(base_url=second_upstream.base_url, model=BACKUP)
            ],
            "llm_max_retries": 0,
        }
    )


async def ask(
    client: httpx.AsyncClient, headers: dict[str, str], **body: str
) -> httpx.Response:
    return await client.post(
        "/questions", json={"content": "Hello there", **body}, headers=headers
    )


async def test_the_one_model_is_named_by_the_llm_settings(
    client: httpx.AsyncClient,
    user_headers: dict[str, str],
    admin_headers: dict[str, str],
) -> None:
    named = await ask(client, user_headers, model=MODEL)
    fallback = await ask(client, user_headers, model=BACKUP)
    health = (await client.get("/health", headers=admin_headers)).json()

    assert named.status_code == 201, named.text
    assert (named.json()["model"], named.json()["upstream_model"]) == (MODEL, MODEL)
    assert fallback.status_code == 404, fallback.text
    assert fallback.json()["detail"] == (
        f"No model is named {BACKUP!r}; the models are: {MODEL}"
    )
    assert health["status"] == "ok"
    assert health["upstreams"] == [
        {"model": MODEL, "circuit": "closed", "in_flight": 0},
        {"model": BACKUP, "circuit": "closed", "in_flight": 0},
    ]


async def test_an_answer_from_a_fallback_keeps_the_models_name(
    client: httpx.AsyncClient,
    user_headers: dict[str, str],
    fake_upstream: FakeUpstream,
    second_upstream: FakeUpstream,
) -> None:
    fake_upstream.mode = "status_503"

    response = await ask(client, user_headers)

    assert response.status_code == 201, response.text
    assert (response.json()["model"], response.json()["upstream_model"]) == (
        MODEL,
        BACKUP,
    )
    assert [r["model"] for r in second_upstream.requests] == [BACKUP]
