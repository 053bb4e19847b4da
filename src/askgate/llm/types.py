"""What a chat with the LLM takes and gives: parameters, answers, stream events,
and the `ChatClient` protocol the questions service is written against."""

from collections.abc import AsyncGenerator
from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True, slots=True)
class ChatParams:
    content: str
    max_tokens: int
    temperature: float | None = None


@dataclass(frozen=True, slots=True)
class Usage:
    prompt_tokens: int | None
    completion_tokens: int | None


@dataclass(frozen=True, slots=True)
class Completion:
    text: str
    model: str
    usage: Usage


@dataclass(frozen=True, slots=True)
class Delta:
    text: str


@dataclass(frozen=True, slots=True)
class StreamEnd:
    model: str
    usage: Usage


class ChatClient(Protocol):
    """What the questions service needs: one upstream, or several behind retries."""

    @property
    def model(self) -> str: ...

    async def complete(self, params: ChatParams) -> Completion: ...

    def stream(self, params: ChatParams) -> AsyncGenerator[Delta | StreamEnd]: ...

    async def check(self) -> bool: ...
