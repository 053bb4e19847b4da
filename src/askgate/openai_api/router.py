from collections.abc import AsyncGenerator
from typing import Any

from fastapi import APIRouter, Request, Response, status

from askgate.auth.deps import CallerOrKey
from askgate.errors import RETRY_AFTER_HEADER, NotFound
from askgate.jsonbytes import dumps
from askgate.openai_api import catalog, service
from askgate.openai_api.errors import OpenAIRoute
from askgate.openai_api.schemas import ChatCompletionRequest, OpenAIError
from askgate.questions.responding import respond
from askgate.runtime import Runtime, RuntimeDep

router = APIRouter(prefix="/v1", tags=["openai"], route_class=OpenAIRoute)

_DESCRIPTIONS = {
    400: "Bad request (validation errors too)",
    401: "Missing or invalid API key (`invalid_api_key`)",
    404: "Unknown model (`model_not_found`) or path",
    413: "Request body too large",
    429: (
        "Too many requests (`rate_limit_exceeded`) or the daily token quota "
        "spent (`insufficient_quota`): wait `Retry-After` seconds"
    ),
    502: "The LLM upstream failed",
    503: "The LLM upstream is unavailable",
    504: "The LLM upstream timed out",
}


def _errors(*codes: int) -> dict[int | str, dict[str, Any]]:
    responses: dict[int | str, dict[str, Any]] = {
        code: {"model": OpenAIError, "description": _DESCRIPTIONS[code]}
        for code in codes
    }
    if 429 in responses:
        responses[429]["headers"] = {"Retry-After": RETRY_AFTER_HEADER}
    return responses


def _model(name: str) -> dict[str, Any]:
    return {
        "id": name,
        "object": "model",
        "created": catalog.LISTED_SINCE,
        "owned_by": "askgate",
    }


@router.post(
    "/chat/completions",
    summary="Chat Completions (OpenAI)",
    description=(
        "OpenAI's Chat Completions: the parameters askgate passes on are "
        "`model` (one of GET /v1/models), `messages` (text only), `max_tokens` "
        "or `max_completion_tokens` (ASKGATE_LLM_DEFAULT_MAX_TOKENS when "
        "omitted, lowered to the model's `max_tokens_limit`; above that limit, "
        "a 400), "
        "`temperature`, `top_p`, `stop`, `seed`, `presence_penalty`, "
        "`frequency_penalty`, `n` (1 only), `user`, `tools`, `tool_choice`, "
        "`response_format`, `stream` and `stream_options.include_usage`; any "
        "other is a 400. Each call is a question (stored, in GET /questions/me, "
        "under the same rate limit, concurrency cap and daily quota as POST "
        "/questions). Errors come in OpenAI's shape. Authenticated by a "
        "personal API key (`Authorization: Bearer ag-...`, the SDKs' `api_key`), "
        "recorded as the question's `api_key_id`, or by a login."
    ),
    responses={
        200: {
            "description": (
                "A `chat.completion`; with `stream`, server-sent "
                "`chat.completion.chunk` events ending with `data: [DONE]`"
            ),
            "content": {
                "application/json": {"schema": {"type": "object"}},
                "text/event-stream": {"schema": {"type": "string"}},
            },
        },
        **_errors(400, 401, 404, 413, 429, 502, 503, 504),
    },
)
async def chat_completions(
    request: Request, data: ChatCompletionRequest, user: CallerOrKey
) -> Response:
    runtime: Runtime = request.app.state.runtime
    # An unknown model (404) or a max_tokens over the model's limit (400) is
    # refused before the call counts against the rate limit, as on /questions.
    model = catalog.find(runtime, data.model)
    params = service.chat_params(data, model, runtime.settings)

    async def stream() -> AsyncGenerator[dict[str, Any]]:
        return await service.stream(
            ledger=runtime.ledger,
            model=model,
            params=params,
            settings=runtime.settings,
            caller=user,
            data=data,
        )

    async def complete() -> bytes:
        completion = await service.complete(
            ledger=runtime.ledger,
            model=model,
            params=params,
            settings=runtime.settings,
            caller=user,
            data=data,
        )
        return dumps(completion)

    return await respond(
        request,
        runtime,
        user,
        stream=stream if data.stream else None,
        complete=complete,
        status_code=status.HTTP_200_OK,
        last_event=service.DONE_EVENT,
        cut_event=service.CUT_EVENT,
    )


@router.get(
    "/models",
    summary="The models (OpenAI)",
    description=(
        "The models askgate offers (ASKGATE_MODELS_FILE, in its order: the "
        "first is the default of POST /questions), in OpenAI's list shape."
    ),
    responses=_errors(401),
)
async def list_models(user: CallerOrKey, runtime: RuntimeDep) -> dict[str, Any]:
    models = runtime.models or ()  # none: no upstream is configured at all
    return {"object": "list", "data": [_model(model.name) for model in models]}


@router.get(
    "/models/{name}",
    summary="A model (OpenAI)",
    description="One model, in OpenAI's shape; 404 `model_not_found` if unknown.",
    responses=_errors(401, 404),
)
async def read_model(
    name: str, user: CallerOrKey, runtime: RuntimeDep
) -> dict[str, Any]:
    return _model(catalog.find(runtime, name).name)


@router.api_route(
    "/{path:path}",
    methods=["GET", "POST", "PUT", "PATCH", "DELETE"],
    include_in_schema=False,
)
async def unknown_route(request: Request) -> None:
    """Any other /v1 path: OpenAI's 404, in its shape."""
    raise NotFound(f"Invalid URL ({request.method} {request.url.path})")
