"""The models the OpenAI API offers: the registry's (askgate.llm.registry), in
its order, by public name."""

import time

from askgate.errors import UpstreamUnavailable
from askgate.llm.registry import Model, ModelRegistry
from askgate.runtime import Runtime

# OpenAI's `created`: when the model became available; here, since this process.
LISTED_SINCE = int(time.time())


def registry(runtime: Runtime) -> ModelRegistry:
    """The models; 503 when no upstream is configured at all."""
    if runtime.models is None:
        raise UpstreamUnavailable("No LLM upstream is configured")
    return runtime.models


def find(runtime: Runtime, name: str) -> Model:
    """The model called `name`; raises UnknownModel (404 `model_not_found`,
    naming the models that exist)."""
    return registry(runtime).get(name)
