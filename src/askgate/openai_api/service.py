"""Chat Completions: an OpenAI request asked as a question, its answer in
OpenAI's shapes.

A call costs what a question costs (askgate.questions.service): one
reservation under a quota, one group-committed store. The conversation goes to
the upstream as the client sent it (a `developer` message as `system`, which
OpenAI-compatible servers know), without askgate's system prompt, which belongs
to POST /questions. Its prompt is bounded for the quota by the bytes of its
JSON (messages and tools), which errs high as quota.token_bound does.
"""

import secrets
import time
from collections.abc import AsyncGenerator
from contextlib import aclosing
from typing import Any

from askgate.auth.cache import Caller
from askgate.config import Settings
from askgate.jsonbytes import dumps
from askgate.llm.registry import Model
from askgate.llm.types import ChatParams, Delta, Usage
from askgate.openai_api.errors import error_body
from askgate.openai_api.schemas import PASSED_THROUGH, ChatCompletionRequest
from askgate.questions import service as questions
from askgate.questions.ledger import Ledger
from askgate.quota import service as quota
from askgate.shutdown import CUT_DETAIL
from askgate.sse import encode_event

# Sent after the last chunk of a stream that ended (OpenAI's end marker).
DONE_EVENT = b"data: [DONE]\n\n"
# The last event of a stream cut by a stop of askgate (askgate.shutdown).
CUT_EVENT = encode_event(
    error_body(CUT_DETAIL, type="server_error", code="server_restarting")
)


def _completion_id() -> str:
    return f"chatcmpl-{secrets.token_urlsafe(18)}"


def _usage_body(usage: Usage) -> dict[str, int]:
    prompt = usage.prompt_tokens or 0
    completion = usage.completion_tokens or 0
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
    }


def chat_params(
    data: ChatCompletionRequest, model: Model, settings: Settings
) -> ChatParams:
    """The upstream call's parameters: the conversation and the options passed
    through; raises MaxTokensOverLimit (400) above the model's limit."""
    sent = tuple(
        {**message, "role": "system"} if message["role"] == "developer" else message
        for message in _stored(data)
    )
    return ChatParams(
        content="",
        max_tokens=model.max_tokens(data.answer_limit, settings.llm_default_max_tokens),
        messages=sent,
        options=data.model_dump(include=set(PASSED_THROUGH), exclude_none=True),
    )


def _stored(data: ChatCompletionRequest) -> list[dict[str, Any]]:
    return [message.model_dump(exclude_none=True) for message in data.messages]


async def _begin(
    *,
    ledger: Ledger,
    model: Model,
    params: ChatParams,
    settings: Settings,
    caller: Caller,
    data: ChatCompletionRequest,
) -> questions.Attempt:
    users = [message for message in data.messages if message.role == "user"]
    return await questions.open_attempt(
        ledger=ledger,
        model=model,
        settings=settings,
        caller=caller,
        params=params,
        content=users[-1].text() if users else "",
        prompt_estimate=len(dumps([params.messages, params.options]))
        + quota.PROMPT_OVERHEAD_TOKENS,
        streaming=data.stream,
        messages=_stored(data),
    )


async def complete(
    *,
    ledger: Ledger,
    model: Model,
    params: ChatParams,
    settings: Settings,
    caller: Caller,
    data: ChatCompletionRequest,
) -> dict[str, Any]:
    """The `chat.completion`; raises the HTTP error of a failed upstream call."""
    attempt = await _begin(
        ledger=ledger,
        model=model,
        params=params,
        settings=settings,
        caller=caller,
        data=data,
    )
    _, completion = await questions.complete(
        ledger=ledger, llm=model.client, params=params, attempt=attempt
    )
    calls = list(completion.tool_calls)
    message: dict[str, Any] = {
        "role": "assistant",
        "content": completion.text if completion.text or not calls else None,
        "refusal": None,
    }
    if calls:
        message["tool_calls"] = calls
    return {
        "id": _completion_id(),
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model.name,
        "choices": [
            {
                "index": 0,
                "message": message,
                "logprobs": None,
                "finish_reason": completion.finish_reason
                or ("tool_calls" if calls else "stop"),
            }
        ],
        "usage": _usage_body(attempt.counted(completion.usage)),
    }


async def stream(
    *,
    ledger: Ledger,
    model: Model,
    params: ChatParams,
    settings: Settings,
    caller: Caller,
    data: ChatCompletionRequest,
) -> AsyncGenerator[dict[str, Any]]:
    """Reserve the call's tokens, then return its `chat.completion.chunk`s.

    Awaited before the response starts, so a call over quota is a plain 429
    rather than a stream that fails.
    """
    attempt = await _begin(
        ledger=ledger,
        model=model,
        params=params,
        settings=settings,
        caller=caller,
        data=data,
    )
    return _chunks(
        ledger=ledger,
        model=model,
        params=params,
        attempt=attempt,
        include_usage=data.include_usage,
    )


async def _chunks(
    *,
    ledger: Ledger,
    model: Model,
    params: ChatParams,
    attempt: questions.Attempt,
    include_usage: bool,
) -> AsyncGenerator[dict[str, Any]]:
    """A chunk per delta, one with the finish reason, then the usage chunk if
    the client asked for it (askgate always asks the upstream for it), or an
    `error` event if the upstream failed or the call could not be stored."""
    head = {
        "id": _completion_id(),
        "object": "chat.completion.chunk",
        "created": int(time.time()),
        "model": model.name,
    }
    role: dict[str, Any] = {"role": "assistant"}  # in the first chunk only

    def chunk(delta: dict[str, Any], finish_reason: str | None) -> dict[str, Any]:
        choice = {"index": 0, "delta": delta, "finish_reason": finish_reason}
        return {**head, "choices": [choice]}

    async with aclosing(
        questions.relay(ledger=ledger, llm=model.client, params=params, attempt=attempt)
    ) as events:
        async for event in events:
            if isinstance(event, Delta):
                delta = {**role}
                role = {}
                if event.text:
                    delta["content"] = event.text
                if event.tool_calls:
                    delta["tool_calls"] = list(event.tool_calls)
                yield chunk(delta, None)
            elif event.error is not None:
                yield error_body(
                    event.error, type="server_error", code="upstream_error"
                )
            else:
                reason = event.finish_reason or (
                    "tool_calls" if attempt.calls else "stop"
                )
                yield chunk(role, reason)
                if include_usage:
                    usage = _usage_body(attempt.counted(event.usage))
                    yield {**head, "choices": [], "usage": usage}
