"""Reading what an OpenAI-compatible upstream sends: a completion as one JSON
object, or a stream of server-sent events, each a JSON chunk.

This runs for every chunk of every stream, so the loop stays lean: orjson parses
each event, the model name is cleaned once rather than per chunk, and nothing is
allocated for a line that is not a `data:` line. Whatever the upstream sends, the
text that comes out can be stored (see `_storable`), and token counts are only
ever plausible ones (see `_count`).
"""

import json
import re
from collections.abc import AsyncGenerator, AsyncIterable
from typing import Any

import orjson

from askgate.jsonbytes import dumps
from askgate.llm.errors import UpstreamError, invalid_response, too_large
from askgate.llm.types import Completion, Delta, StreamEnd, ToolCall, Usage

MAX_STREAM_LINE_BYTES = 256 * 1024
MAX_MODEL_NAME = 200  # the width of questions.upstream_model
# No question comes near a billion tokens; a larger count is a broken upstream's,
# and would overflow the database's integer columns.
MAX_TOKEN_COUNT = 10**9
# JSON can escape a lone surrogate ("\ud800"), which UTF-8 cannot encode, and NUL,
# which PostgreSQL text cannot hold: either would fail the answer's storage.
_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")


def parse_completion(body: bytes, *, default_model: str) -> Completion:
    data = _loads(body, "not JSON")
    if not isinstance(data, dict):
        raise invalid_response("not a JSON object")
    choices = data.get("choices")
    if not isinstance(choices, list) or not choices:
        raise invalid_response("no choices")
    choice = choices[0] if isinstance(choices[0], dict) else {}
    message = choice.get("message")
    if not isinstance(message, dict):
        raise invalid_response("no message")
    text = message.get("content")
    tool_calls = _tool_calls(message.get("tool_calls"))
    if text is None and tool_calls:
        text = ""  # an answer made of tool calls only
    if not isinstance(text, str):
        raise invalid_response("no message content")
    return Completion(
        text=_storable(text),
        model=_model_name(data.get("model"), default_model),
        usage=_usage(data.get("usage")),
        tool_calls=tool_calls,
        finish_reason=_finish_reason(choice.get("finish_reason")),
    )


async def parse_events(
    chunks: AsyncIterable[bytes], *, default_model: str, limit: int
) -> AsyncGenerator[Delta | StreamEnd]:
    """The stream's events from its body's chunks; raises UpstreamError.

    Memory stays bounded: one line of at most MAX_STREAM_LINE_BYTES is buffered,
    and the answer's text may reach `limit` bytes (the service keeps it whole to
    store it).
    """
    model = default_model
    sent_model: Any = None  # the raw name `model` was cleaned from
    usage = Usage(None, None)
    text_bytes = 0
    finish_reason = None
    buffer = b""
    async for chunk in chunks:
        buffer += chunk
        *lines, buffer = buffer.split(b"\n")
        if len(buffer) > MAX_STREAM_LINE_BYTES:
            raise invalid_response("an event line is too long")
        for raw in lines:
            line = raw.strip()
            if not line.startswith(b"data:"):
                continue  # comments, event names, ids, blank separators
            data = line[5:].strip()
            if data == b"[DONE]":
                yield StreamEnd(model, usage, finish_reason)
                return
            event = _parse_event(data)
            name = event.get("model")
            if name != sent_model:  # the same name comes with every chunk
                sent_model = name
                model = _model_name(name, model)
            if event.get("usage"):
                usage = _usage(event["usage"])
            choices = event.get("choices")
            if not isinstance(choices, list):
                continue
            for choice in choices:
                if not isinstance(choice, dict):
                    continue
                delta = choice.get("delta")
                if isinstance(delta, dict):
                    text = delta.get("content")
                    if not isinstance(text, str):
                        text = ""
                    calls = delta.get("tool_calls")
                    tool_calls = _tool_calls(calls) if calls else ()
                    if text or tool_calls:
                        # isascii() is O(1): most deltas skip the encoding
                        text_bytes += (
                            len(text)
                            if text.isascii()
                            else len(text.encode("utf-8", "surrogatepass"))
                        )
                        if tool_calls:  # rare: measured as the JSON they make
                            text_bytes += len(dumps(tool_calls))
                        if text_bytes > limit:
                            raise too_large(limit)
                        yield Delta(_storable(text), tool_calls)
                if choice.get("finish_reason"):
                    finish_reason = _finish_reason(choice["finish_reason"])
    if finish_reason is None:
        raise UpstreamError("The LLM upstream stream ended before the answer did")
    yield StreamEnd(model, usage, finish_reason)


def _loads(data: bytes, not_json: str) -> Any:
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError:
        pass
    # What orjson refuses and the standard parser accepts is accepted as before:
    # a lone surrogate escape (replaced by _storable), NaN, integers over 64 bits.
    try:
        return json.loads(data)
    except (ValueError, RecursionError):
        raise invalid_response(not_json) from None


def _parse_event(data: bytes) -> dict[str, Any]:
    event = _loads(data, "an event is not JSON")
    if not isinstance(event, dict):
        raise invalid_response("an event is not a JSON object")
    if "error" in event:
        raise UpstreamError("The LLM upstream reported an error mid-stream")
    return event


def _usage(data: Any) -> Usage:
    if not isinstance(data, dict):
        return Usage(None, None)
    return Usage(
        _count(data.get("prompt_tokens")), _count(data.get("completion_tokens"))
    )


def _count(value: Any) -> int | None:
    """A reported token count, or None (missing: the quota then estimates it)
    for anything but an integer in 0..MAX_TOKEN_COUNT; `true` is no count."""
    if type(value) is not int or not 0 <= value <= MAX_TOKEN_COUNT:
        return None
    return value


def _tool_calls(value: Any) -> tuple[ToolCall, ...]:
    """The tool calls of a message or delta, as sent but storable: objects
    only, each string cleaned (see `_storable`)."""
    if not isinstance(value, list):
        return ()
    try:
        return tuple(_clean(call) for call in value if isinstance(call, dict))
    except RecursionError:
        raise invalid_response("tool calls nested too deeply") from None


def _clean(value: Any) -> Any:
    if isinstance(value, str):
        return _storable(value)
    if isinstance(value, dict):
        return {_storable(str(key)): _clean(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_clean(item) for item in value]
    return value


def _finish_reason(value: Any) -> str:
    """Why the answer ended: OpenAI's word for it, or "stop" for anything
    that is no short string (any true value ends an answer)."""
    if isinstance(value, str) and 0 < len(value) <= 32:
        return _storable(value)
    return "stop"


def _storable(text: str) -> str:
    return _UNSTORABLE.sub("\ufffd", text)


def _model_name(value: Any, default: str) -> str:
    if not isinstance(value, str) or not value:
        return default
    return _storable(value)[:MAX_MODEL_NAME]
