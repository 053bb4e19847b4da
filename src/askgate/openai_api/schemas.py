"""The Chat Completions request as askgate takes it: exactly the parameters it
passes on (see ChatCompletionRequest); anything else is a 400 naming it.

Messages keep only the fields askgate knows (what a client echoes back of an
answer, such as `refusal`, is dropped); every string in them must be storable,
since the conversation is stored with the question.
"""

from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BeforeValidator,
    ConfigDict,
    Field,
    StrictBool,
    StringConstraints,
    model_validator,
)

from askgate.questions.schemas import MAX_TOKENS_LIMIT
from askgate.schemas import InputSchema, Schema, Storable

Text = Annotated[str, Storable]
_MEDIA_PARTS = {"image_url": "Image", "input_audio": "Audio", "file": "File"}


def _refuse_media(value: Any) -> Any:
    """A clear word for image, audio and file parts, not a schema mismatch."""
    if isinstance(value, list):
        for part in value:
            kind = part.get("type") if isinstance(part, dict) else None
            if kind in _MEDIA_PARTS:
                raise ValueError(
                    f"{_MEDIA_PARTS[kind]} content parts are not supported: "
                    "askgate's models take text only"
                )
    return value


def _only_one(value: int) -> int:
    if value != 1:
        raise ValueError("only n=1 is supported: askgate answers with one choice")
    return value


class TextPart(InputSchema):
    type: Literal["text"]
    text: Text


Content = Annotated[Text | list[TextPart], BeforeValidator(_refuse_media)]


class FunctionCall(Schema):
    name: Text
    arguments: Text


class ToolCall(Schema):
    id: Text
    type: Literal["function"] = "function"
    function: FunctionCall


class Message(Schema):
    model_config = ConfigDict(extra="ignore")

    role: Literal["system", "developer", "user", "assistant", "tool"]
    content: Content | None = None
    name: Text | None = None
    tool_calls: list[ToolCall] | None = None  # an assistant's, in the history
    tool_call_id: Text | None = None  # what a tool message answers

    @model_validator(mode="after")
    def _complete(self) -> "Message":
        if self.content is None and not (self.role == "assistant" and self.tool_calls):
            raise ValueError(f"a {self.role} message needs content")
        if self.role == "tool" and self.tool_call_id is None:
            raise ValueError("a tool message needs tool_call_id")
        return self

    def text(self) -> str:
        if isinstance(self.content, list):
            return "\n".join(part.text for part in self.content)
        return self.content or ""


class FunctionDefinition(Schema):
    model_config = ConfigDict(extra="forbid")

    name: Annotated[str, StringConstraints(min_length=1, max_length=64)]
    description: str | None = None
    parameters: dict[str, Any] | None = None
    strict: StrictBool | None = None


class Tool(InputSchema):
    type: Literal["function"]
    function: FunctionDefinition


class ResponseFormat(InputSchema):
    type: Literal["text", "json_object", "json_schema"]
    json_schema: dict[str, Any] | None = None


class StreamOptions(InputSchema):
    include_usage: StrictBool = False


TokenCount = Annotated[int, Field(strict=True, ge=1, le=MAX_TOKENS_LIMIT)]
Penalty = Annotated[float, Field(strict=True, ge=-2, le=2)]
Stop = Annotated[str, StringConstraints(min_length=1, max_length=256)]


class ChatCompletionRequest(InputSchema):
    model: Annotated[str, StringConstraints(min_length=1, max_length=200)]
    messages: Annotated[list[Message], Field(min_length=1)]
    max_tokens: TokenCount | None = None
    max_completion_tokens: TokenCount | None = None
    temperature: Annotated[float, Field(strict=True, ge=0, le=2)] | None = None
    top_p: Annotated[float, Field(strict=True, ge=0, le=1)] | None = None
    stop: Stop | Annotated[list[Stop], Field(max_length=4)] | None = None
    seed: Annotated[int, Field(strict=True, ge=-(2**63), lt=2**63)] | None = None
    presence_penalty: Penalty | None = None
    frequency_penalty: Penalty | None = None
    n: Annotated[int, Field(strict=True), AfterValidator(_only_one)] | None = Field(
        default=None, description="Only 1: askgate answers with one choice"
    )
    user: Annotated[str, StringConstraints(max_length=256)] | None = None
    tools: Annotated[list[Tool], Field(max_length=128)] | None = None
    tool_choice: Literal["none", "auto", "required"] | dict[str, Any] | None = None
    response_format: ResponseFormat | None = None
    stream: StrictBool = False
    stream_options: StreamOptions | None = None

    model_config = {
        "json_schema_extra": {
            "examples": [
                {
                    "model": "smollm2-135m-instruct",
                    "messages": [{"role": "user", "content": "Say hello."}],
                    "max_tokens": 64,
                }
            ]
        }
    }

    @model_validator(mode="after")
    def _consistent(self) -> "ChatCompletionRequest":
        if self.max_tokens is not None and self.max_completion_tokens is not None:
            raise ValueError("give max_tokens or max_completion_tokens, not both")
        if self.stream_options is not None and not self.stream:
            raise ValueError("stream_options is only allowed when stream is true")
        return self

    @property
    def answer_limit(self) -> int | None:
        return self.max_completion_tokens or self.max_tokens

    @property
    def include_usage(self) -> bool:
        return self.stream_options is not None and self.stream_options.include_usage


# The parameters passed to the upstream as they are (besides model, messages,
# max_tokens and stream, which askgate sets).
PASSED_THROUGH = frozenset(
    {
        "temperature",
        "top_p",
        "stop",
        "seed",
        "presence_penalty",
        "frequency_penalty",
        "user",
        "tools",
        "tool_choice",
        "response_format",
    }
)


class ErrorInfo(Schema):
    message: str
    type: str = Field(description="OpenAI's error type, such as invalid_request_error")
    param: str | None = Field(description="The request parameter at fault, if one")
    code: str | None = Field(description="OpenAI's error code, such as model_not_found")


class OpenAIError(Schema):
    """Every error under /v1: OpenAI's shape."""

    error: ErrorInfo
