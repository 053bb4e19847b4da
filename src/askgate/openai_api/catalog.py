"""The models the OpenAI API offers, by public name.

Today there is one: the configured upstream (with its fallbacks), under its
model name. The models file (ASKGATE_MODELS_FILE) replaces what is in here.
"""

import time

from askgate.errors import NotFound, UpstreamUnavailable
from askgate.llm.types import ChatClient
from askgate.runtime import Runtime

# OpenAI's `created`: when the model became available; here, since this process.
LISTED_SINCE = int(time.time())
_SHOWN_NAME = 200  # an unknown name is quoted back, cut to this length


class ModelNotFound(NotFound):
    def __init__(self, name: str, names: list[str]) -> None:
        super().__init__(
            f"The model `{name[:_SHOWN_NAME]}` does not exist; the models are: "
            f"{', '.join(names) or 'none'}"
        )


def models(runtime: Runtime) -> dict[str, ChatClient]:
    return {} if runtime.llm is None else {runtime.llm.model: runtime.llm}


def find(runtime: Runtime, name: str) -> ChatClient:
    """The model called `name`; 404 with the names that exist, or 503 when no
    upstream is configured at all."""
    offered = models(runtime)
    if not offered:
        raise UpstreamUnavailable("No LLM upstream is configured")
    try:
        return offered[name]
    except KeyError:
        raise ModelNotFound(name, list(offered)) from None
