"""The models askgate offers, by public name, each a client ready to ask.

From the models file (askgate.llm.models_file) when ASKGATE_MODELS_FILE is set;
otherwise the one model of the ASKGATE_LLM_* settings (ASKGATE_LLM_FALLBACK_URLS
as its fallbacks), named ASKGATE_LLM_MODEL: `askgate serve` points those at the
bundled model when nothing is configured.

Each entry of the file has one upstream (askgate.llm.resilience.Upstream) with
its own concurrency cap, retries and circuit breaker. A model asks its own
upstream, then its fallbacks' upstreams in order: the very Upstream objects that
answer for those models, so that an upstream failing trips one breaker, whoever
asked it. Fallbacks do not chain: a fallback's own fallbacks are not tried.
"""

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import aiohttp

from askgate.config import Settings
from askgate.errors import InvalidInput, NotFound
from askgate.llm.models_file import ModelEntry
from askgate.llm.resilience import (
    ResilientClient,
    Upstream,
    build_client,
    build_upstream,
)

# An unknown name is quoted back cut to this length: GET /v1/models/{name}
# takes any length the URL allows.
_SHOWN_NAME = 200


class UnknownModel(NotFound):
    """No model has that name (a 404); `names` are the ones there are."""

    def __init__(self, name: str, names: Sequence[str]) -> None:
        super().__init__(
            f"No model is named {name[:_SHOWN_NAME]!r}; the models are: "
            f"{', '.join(names)}"
        )
        self.name = name
        self.names = tuple(names)


class MaxTokensOverLimit(InvalidInput):
    """`max_tokens` above the model's `max_tokens_limit` (a 400)."""


@dataclass(frozen=True, slots=True)
class Model:
    name: str  # the public name, stored with each question
    client: ResilientClient  # its own upstream, then its fallbacks'
    max_tokens_limit: int | None = None

    @property
    def upstream(self) -> Upstream:
        """The model's own upstream (not a fallback's)."""
        return self.client.upstreams[0]

    def max_tokens(self, requested: int | None, default: int) -> int:
        """The answer's token bound for this model: the one asked for, refused
        (MaxTokensOverLimit) above the model's limit; when none was asked for,
        `default`, lowered to the limit."""
        limit = self.max_tokens_limit
        if requested is None:
            return default if limit is None else min(default, limit)
        if limit is not None and requested > limit:
            raise MaxTokensOverLimit(
                f"max_tokens is {requested}; model {self.name!r} allows at most {limit}"
            )
        return requested


class ModelRegistry:
    """The models by name, the default (the first) included."""

    def __init__(self, models: Sequence[Model]) -> None:
        if not models:
            raise ValueError("at least one model is required")
        self._by_name = {model.name: model for model in models}
        if len(self._by_name) != len(models):
            raise ValueError("model names must be unique")
        self.default = models[0]

    def __iter__(self) -> Iterator[Model]:
        return iter(self._by_name.values())

    def __repr__(self) -> str:
        return f"ModelRegistry({list(self._by_name.values())!r})"

    def names(self) -> list[str]:
        return list(self._by_name)

    def get(self, name: str | None = None) -> Model:
        """The model of that name, the default for None; raises UnknownModel."""
        if name is None:
            return self.default
        try:
            return self._by_name[name]
        except KeyError:
            raise UnknownModel(name, self.names()) from None

    @property
    def upstreams(self) -> list[Upstream]:
        """Every upstream once: each model's own, then the other fallbacks."""
        own = [model.upstream for model in self]
        every = [upstream for model in self for upstream in model.client.upstreams]
        return list(dict.fromkeys([*own, *every]))


def build_registry(
    settings: Settings,
    http: aiohttp.ClientSession,
    entries: Sequence[ModelEntry] | None,
) -> ModelRegistry | None:
    """The models of the file's `entries`, else of the ASKGATE_LLM_* settings;
    None when neither configures one."""
    if entries:
        return _from_entries(settings, http, entries)
    if settings.llm_base_url is None or settings.llm_model is None:
        return None
    return ModelRegistry([Model(settings.llm_model, build_client(settings, http))])


def _from_entries(
    settings: Settings, http: aiohttp.ClientSession, entries: Sequence[ModelEntry]
) -> ModelRegistry:
    upstreams = {
        entry.name: build_upstream(
            settings,
            http,
            base_url=entry.base_url,
            model=entry.model,
            api_key=entry.key(),
            name=entry.name,
        )
        for entry in entries
    }
    return ModelRegistry(
        [
            Model(
                entry.name,
                ResilientClient(
                    [upstreams[name] for name in (entry.name, *entry.fallbacks)],
                    max_seconds=settings.llm_max_question_seconds,
                ),
                entry.max_tokens_limit,
            )
            for entry in entries
        ]
    )
