from collections.abc import AsyncGenerator
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request, Response, status

from askgate.auth.deps import AdminUser, CallerOrKey
from askgate.db import SessionDep
from askgate.errors import UpstreamUnavailable, error_responses
from askgate.questions import history, service
from askgate.questions.deps import Filters, OwnedQuestion
from askgate.questions.responding import respond
from askgate.questions.schemas import QuestionCreate, QuestionDetail, QuestionRead
from askgate.runtime import Runtime, RuntimeDep
from askgate.schemas import ErrorDetail
from askgate.throttle import RATE_LIMIT_HEADERS
from askgate.users import service as users_service

router = APIRouter(prefix="/questions", tags=["questions"])

_STREAM_EXAMPLE = (
    'data: {"type":"delta","text":"Paris"}\n\n'
    'data: {"type":"delta","text":" is the capital."}\n\n'
    'data: {"type":"done","question":{"id":8,"status":"answered","...":"..."}}\n\n'
)
_RATE_LIMITED = error_responses(429)[429]
_ASK_RESPONSES: dict[int | str, dict[str, Any]] = {
    201: {"description": "The stored question", "headers": RATE_LIMIT_HEADERS},
    200: {
        "description": (
            'With `"stream": true`: server-sent events. Each `data:` is JSON: '
            '`{"type":"delta","text":...}` per chunk, then exactly one '
            '`{"type":"done","question":{...}}` or `{"type":"error","detail":...}`.'
        ),
        "content": {
            "text/event-stream": {
                # One event: `data` holds the JSON described above.
                "schema": {
                    "type": "object",
                    "required": ["data"],
                    "properties": {
                        "data": {
                            "type": "string",
                            "contentMediaType": "application/json",
                        }
                    },
                },
                "example": _STREAM_EXAMPLE,
            }
        },
        "headers": RATE_LIMIT_HEADERS,
    },
    **error_responses(400, 401, 404, 502, 503, 504),
    # The body limit (ASKGATE_MAX_BODY_BYTES) can be below the longest question
    # the schema allows, once escaped as JSON.
    413: {"model": ErrorDetail, "description": "The request body is too large"},
    429: {
        **_RATE_LIMITED,
        "headers": {**_RATE_LIMITED["headers"], **RATE_LIMIT_HEADERS},
    },
}


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    response_model=QuestionRead,
    summary="Ask a question",
    description=(
        "Sends the question to the LLM and stores it with the answer. Upstream "
        "failures answer 502 and timeouts 504; the question is stored anyway, with "
        'status `failed`. With `"stream": true` the answer arrives as server-sent '
        "events and is stored when the stream ends. If the client disconnects, "
        "streaming or not, the upstream request is cancelled and the question is "
        "stored as `cancelled` (with the partial answer of a stream); so is a "
        "stream whose client reads nothing for `ASKGATE_LLM_READ_TIMEOUT`.\n\n"
        "Each user may ask `ASKGATE_QUESTIONS_PER_MINUTE` (default 30) questions "
        "per minute; more answer 429 with `Retry-After`. Every answer carries "
        "`X-RateLimit-Limit`, `X-RateLimit-Remaining` and `X-RateLimit-Reset`.\n\n"
        "Each question first reserves its `max_tokens` plus its length from the "
        "user's daily token quota (`GET /users/me/usage`); over quota it answers 429 "
        "with `Retry-After` (seconds until 00:00 UTC). When the upstream's circuit "
        "is open or no slot frees up in time, it answers 503 with `Retry-After`.\n\n"
        "Each user may have `ASKGATE_MAX_CONCURRENT_QUESTIONS_PER_USER` (default "
        "4) questions being answered at once, streams included, across every "
        "worker and instance sharing `ASKGATE_REDIS_URL`; one more answers 429 "
        "with `Retry-After`, and a slot frees up as soon as a question ends "
        "(answered, failed or cancelled).\n\n"
        "`model` picks one of the models askgate offers (ASKGATE_MODELS_FILE); "
        "without it the default model answers. An unknown model answers 404 "
        "listing the models, and a `max_tokens` above the model's "
        "`max_tokens_limit` answers 400 (an omitted `max_tokens` is lowered to "
        "the limit). The question is stored with the model's name.\n\n"
        "With a login or a personal API key (`Authorization: Bearer ag-...`): "
        "both share the user's rate limits and quota; a question asked with a "
        "key records its `api_key_id`."
    ),
    responses=_ASK_RESPONSES,
)
async def ask(
    request: Request,
    data: QuestionCreate,
    user: CallerOrKey,
) -> Response:
    # The runtime straight from the app rather than through a dependency:
    # FastAPI spends ~15 us solving each one, on the busiest route.
    runtime: Runtime = request.app.state.runtime
    if runtime.models is None:
        raise UpstreamUnavailable("No LLM upstream is configured")
    # A model that does not exist (404) or a max_tokens over its limit (400)
    # is refused before the question counts against the rate limit.
    model = runtime.models.get(data.model)
    params = service.chat_params(data, model, runtime.settings)

    async def stream() -> AsyncGenerator[dict[str, Any]]:
        return await service.ask_streaming(
            ledger=runtime.ledger,
            model=model,
            params=params,
            settings=runtime.settings,
            caller=user,
        )

    async def complete() -> bytes:
        question = await service.ask(
            ledger=runtime.ledger,
            model=model,
            params=params,
            settings=runtime.settings,
            caller=user,
        )
        return question.model_dump_json().encode()

    return await respond(
        request,
        runtime,
        user,
        stream=stream if data.stream else None,
        complete=complete,
        status_code=status.HTTP_201_CREATED,
        cut_event=service.CUT_EVENT,
    )


@router.get(
    "/me",
    response_model=list[QuestionRead],
    summary="My latest questions",
    description=(
        "The caller's questions, newest first: the last `ASKGATE_HISTORY_SIZE` "
        "(default 3) unless `limit` says otherwise (at most 100). Page back with "
        "`before_id`, the smallest id seen so far. Every question is kept, those "
        "asked through the OpenAI API (`/v1`) too.\n\n"
        "`q`, `since`, `until`, `status` and `model` keep only the questions that "
        "match all of them; paging with `before_id` works the same under filters. "
        "`since` after `until` is a 400."
    ),
    responses=error_responses(400, 401),
)
async def my_questions(
    user: CallerOrKey,
    session: SessionDep,
    runtime: RuntimeDep,
    filters: Filters,
    limit: Annotated[int | None, Query(ge=1, le=100)] = None,
    before_id: Annotated[int | None, Query(ge=1, le=2**63 - 1)] = None,
) -> list[QuestionRead]:
    questions = await history.list_for_user(
        session=session,
        user_id=user.id,
        limit=limit or runtime.settings.history_size,
        before_id=before_id,
        filters=filters,
    )
    return [QuestionRead.of(question) for question in questions]


@router.get(
    "",
    response_model=list[QuestionRead],
    summary="All questions (admin)",
    description=(
        "Every user's questions, newest first, optionally of one `user_id`; paged "
        "with `limit` and `offset`. Filtered as `GET /questions/me` is (`q`, "
        "`since`, `until`, `status`, `model`); `X-Total-Count` counts the "
        "questions that match."
    ),
    responses=error_responses(400, 401, 403),
)
async def all_questions(
    response: Response,
    admin: AdminUser,
    session: SessionDep,
    filters: Filters,
    user_id: Annotated[int | None, Query(ge=1, le=2**63 - 1)] = None,
    limit: Annotated[int, Query(ge=1, le=100)] = 50,
    offset: Annotated[int, Query(ge=0, le=2**31)] = 0,
) -> list[QuestionRead]:
    questions, total = await history.list_all(
        session=session,
        user_id=user_id,
        limit=limit,
        offset=offset,
        filters=filters,
    )
    response.headers["X-Total-Count"] = str(total)
    return [QuestionRead.of(question) for question in questions]


@router.get(
    "/{question_id}",
    response_model=QuestionDetail,
    summary="Read a question",
    description=(
        "For its owner or an admin. Anyone else gets 404, as for a question that "
        "does not exist. A call to the OpenAI API also shows its `messages`."
    ),
    responses=error_responses(401, 404),
)
async def read_question(question: OwnedQuestion) -> QuestionDetail:
    return QuestionDetail.of(question)


@router.delete(
    "/{question_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    response_class=Response,
    summary="Delete a question",
    description="For its owner or an admin; anyone else gets 404.",
    responses=error_responses(401, 403, 404),
)
async def delete_question(
    question: OwnedQuestion, user: CallerOrKey, session: SessionDep
) -> None:
    if question.user_id != user.id:  # as an admin: one still, as this deletes
        await users_service.ensure_still_admin(session=session, actor_id=user.id)
    await service.delete_question(session=session, question=question)
