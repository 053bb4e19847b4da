"""What a chat with the LLM takes and gives: parameters, answers, stream events,
and the `ChatClient` protocol the questions service is written against."""

from collections.abc import AsyncGenerator, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

# A tool call as the upstream sent it (OpenAI's shape), its strings storable.
ToolCall = dict[str, Any]


@dataclass(frozen=True, slots=True)
class ChatParams:
    """A question (`content`, after the configured system prompt), or with
    `messages` a whole conversation sent as it is (the OpenAI API); `options`
    are further Chat Completions parameters, passed through."""

    content: str
    max_tokens: int
    temperature: float | None = None
    messages: tuple[dict[str, Any], ...] | None = None
    options: Mapping[str, Any] | None = None


@dataclass(frozen=True, slots=True)
class Usage:
    prompt_tokens: int | None
    completion_tokens: int | None


@dataclass(frozen=True, slots=True)
class Completion:
    text: str
    model: str
    usage: Usage
    tool_calls: tuple[ToolCall, ...] = ()
    finish_reason: str | None = None


@dataclass(frozen=True, slots=True)
class Delta:
    """A piece of the answer: text, or pieces of tool calls (OpenAI's deltas,
    each with the `index` of the call it continues), or both."""

    text: str
    tool_calls: tuple[ToolCall, ...] = ()


@dataclass(frozen=True, slots=True)
class StreamEnd:
    model: str
    usage: Usage
    finish_reason: str | None = None


class ChatClient(Protocol):
    """What the questions service needs: one upstream, or several behind retries."""

    @property
    def model(self) -> str: ...

    async def complete(self, params: ChatParams) -> Completion: ...

    def stream(self, params: ChatParams) -> AsyncGenerator[Delta | StreamEnd]: ...

    async def check(self) -> bool: ...
