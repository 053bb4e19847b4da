"""The OpenAI API on a models file: /v1/models lists its models in order, a
chat completion goes to the model it names (its upstream, key and limit), and
the call is kept with the public name and the upstream's model."""

from typing import Any

import httpx
import openai
import pytest

from askgate.config import Settings
from tests.fake_upstream import FakeUpstream, answer_for
from tests.openai_api.test_errors import error_of
from tests.questions.test_models import BETA_KEY, BETA_LIMIT, models_file

HELLO: Any = [{"role": "user", "content": "Hello there"}]


@pytest.fixture
def settings(
    settings: Settings,
    tmp_path: Any,
    monkeypatch: pytest.MonkeyPatch,
    fake_upstream: FakeUpstream,
    second_upstream: FakeUpstream,
) -> Settings:
    """alpha (the default, on fake_upstream) and beta (on second_upstream,
    with a max_tokens_limit)."""
    monkeypatch.setenv("ASKGATE_TEST_BETA_KEY", BETA_KEY)
    fake_upstream.model = "alpha-upstream"
    second_upstream.model = "beta-upstream"
    return settings.model_copy(
        update={
            "llm_base_url": None,
            "llm_model": None,
            "models_file": models_file(
                tmp_path, ".yaml", fake_upstream, second_upstream
            ),
            "llm_max_retries": 0,
        }
    )


async def test_the_models_are_listed_in_the_files_order(
    sdk: openai.AsyncOpenAI,
) -> None:
    listed = [model.id async for model in sdk.models.list()]
    beta = await sdk.models.retrieve("beta")

    assert listed == ["alpha", "beta"]
    assert (beta.id, beta.object, beta.owned_by) == ("beta", "model", "askgate")


async def test_a_completion_goes_to_the_model_it_names(
    sdk: openai.AsyncOpenAI,
    client: httpx.AsyncClient,
    user_headers: dict[str, str],
    fake_upstream: FakeUpstream,
    second_upstream: FakeUpstream,
) -> None:
    plain = await sdk.chat.completions.create(model="beta", messages=HELLO)
    stream = await sdk.chat.completions.create(
        model="beta",
        messages=HELLO,
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = [chunk async for chunk in stream]

    assert plain.model == "beta"
    assert plain.choices[0].message.content == answer_for("Hello there")
    assert {chunk.model for chunk in chunks} == {"beta"}
    assert fake_upstream.requests == []
    assert [r["model"] for r in second_upstream.requests] == ["beta-upstream"] * 2
    assert [h["Authorization"] for h in second_upstream.headers] == [
        f"Bearer {BETA_KEY}"
    ] * 2
    # The omitted max_tokens is lowered to beta's limit.
    assert [r["max_tokens"] for r in second_upstream.requests] == [BETA_LIMIT] * 2
    history = (await client.get("/questions/me", headers=user_headers)).json()
    assert [(q["model"], q["upstream_model"], q["status"]) for q in history] == [
        ("beta", "beta-upstream", "answered"),
        ("beta", "beta-upstream", "answered"),
    ]


async def test_the_default_model_is_the_first(
    sdk: openai.AsyncOpenAI,
    client: httpx.AsyncClient,
    user_headers: dict[str, str],
    fake_upstream: FakeUpstream,
) -> None:
    completion = await sdk.chat.completions.create(model="alpha", messages=HELLO)

    assert completion.model == "alpha"
    assert [r["model"] for r in fake_upstream.requests] == ["alpha-upstream"]
    history = (await client.get("/questions/me", headers=user_headers)).json()
    assert [(q["model"], q["upstream_model"]) for q in history] == [
        ("alpha", "alpha-upstream")
    ]


@pytest.mark.parametrize("field", ["max_tokens", "max_completion_tokens"])
async def test_max_tokens_above_the_models_limit_is_a_400(
    sdk: openai.AsyncOpenAI,
    client: httpx.AsyncClient,
    user_headers: dict[str, str],
    second_upstream: FakeUpstream,
    field: str,
) -> None:
    over: Any = {field: BETA_LIMIT + 1}
    with pytest.raises(openai.BadRequestError) as raised:
        await sdk.chat.completions.create(model="beta", messages=HELLO, **over)

    error = error_of(raised.value)
    assert error["type"] == "invalid_request_error"
    assert error["param"] == "max_tokens"
    assert error["message"] == (
        f"max_tokens is {BETA_LIMIT + 1}; model 'beta' allows at most {BETA_LIMIT}"
    )
    assert second_upstream.requests == []
    assert (await client.get("/questions/me", headers=user_headers)).json() == []


async def test_an_unknown_model_names_every_model(
    sdk: openai.AsyncOpenAI,
    fake_upstream: FakeUpstream,
    second_upstream: FakeUpstream,
) -> None:
    with pytest.raises(openai.NotFoundError) as raised:
        await sdk.chat.completions.create(model="gamma", messages=HELLO)

    error = error_of(raised.value)
    assert error["code"] == "model_not_found"
    assert error["message"] == "No model is named 'gamma'; the models are: alpha, beta"
    assert fake_upstream.requests == second_upstream.requests == []


async def test_a_long_unknown_name_is_quoted_back_cut(sdk: openai.AsyncOpenAI) -> None:
    with pytest.raises(openai.NotFoundError) as raised:
        await sdk.models.retrieve("g" * 5000)

    error = error_of(raised.value)
    assert error["code"] == "model_not_found"
    assert error["message"] == (
        f"No model is named {'g' * 200!r}; the models are: alpha, beta"
    )
