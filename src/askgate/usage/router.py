"""Usage people can see: the caller's own days, and the admin's views of
everyone's. Each reads the daily rollup (askgate.usage.rollup), in JSON or CSV."""

from typing import Annotated, Any

from fastapi import APIRouter, Query, Response

from askgate.auth.deps import AdminUser, CallerOrKey
from askgate.db import SessionDep
from askgate.errors import error_responses
from askgate.schemas import Storable
from askgate.usage import service
from askgate.usage.deps import MAX_DAYS, OutputFormat, UsageWindow, last_days
from askgate.usage.export import CSV_MEDIA_TYPE, Format, render
from askgate.usage.schemas import AdminUsageDayRead, LeaderboardEntry, UsageDayRead
from askgate.usage.service import Ranking

router = APIRouter(tags=["usage"])

_COUNTED = (
    "A question counts on the UTC day it was asked, under the public name of "
    "the model asked, through `POST /questions` or the OpenAI API (`/v1`) "
    "alike. `questions` counts answered, failed and cancelled ones (a client "
    "that left); `failed` the failed ones; the tokens are those recorded with "
    "each question (`null` counts 0). Usage is what happened: deleting a "
    "question does not change it. Days without questions have no row."
)
_CSV = "With `format=csv`, the same rows as `text/csv`, a header row first."


def _ok(
    description: str,
    csv_example: str,
    errors: tuple[int, ...] = (400, 401, 403),
    **extra: Any,
) -> dict[int | str, Any]:
    """The 200 response in both formats, and the route's errors."""
    return {
        200: {
            "description": description,
            "content": {
                CSV_MEDIA_TYPE: {"schema": {"type": "string"}, "example": csv_example}
            },
            **extra,
        },
        **error_responses(*errors),
    }


@router.get(
    "/users/me/usage/daily",
    response_model=list[UsageDayRead],
    summary="My usage per day and model",
    description=(
        "The caller's questions and tokens per UTC day and model, from `from` to "
        f"`to` (both included; by default the last 30 days, today included; at "
        f"most {MAX_DAYS} days, else 400), by day then model. {_COUNTED} {_CSV} "
        "With a login or an API key."
    ),
    responses=_ok(
        "One row per UTC day and model",
        "day,model,questions,failed,prompt_tokens,completion_tokens,total_tokens\r\n"
        "2026-12-01,default,12,1,840,2310,3150\r\n",
    ),
)
async def my_daily_usage(
    user: CallerOrKey,
    session: SessionDep,
    window: UsageWindow,
    as_: OutputFormat = Format.JSON,
) -> Response:
    rows = await service.daily_for_user(session=session, user_id=user.id, window=window)
    return render(rows, schema=UsageDayRead, as_=as_, filename="my-usage-daily.csv")


@router.get(
    "/usage/daily",
    response_model=list[AdminUsageDayRead],
    summary="Everyone's usage per day, user and model (admin)",
    description=(
        "Every user's questions and tokens per UTC day and model, from `from` to "
        f"`to` (both included; by default the last 30 days; at most {MAX_DAYS} "
        "days, else 400), by day, user id, then model; `user_id` and `model` keep "
        "only that user's or that model's rows. Paged with `limit` and `offset`, "
        f"the number of rows in `X-Total-Count`. {_COUNTED} {_CSV} A deleted "
        "user's rows go with the account."
    ),
    responses=_ok(
        "One row per UTC day, user and model",
        "day,user_id,username,model,questions,failed,prompt_tokens,"
        "completion_tokens,total_tokens\r\n"
        "2026-12-01,7,alice,default,12,1,840,2310,3150\r\n",
        headers={
            "X-Total-Count": {
                "description": "How many rows match, over all pages",
                "schema": {"type": "integer"},
            }
        },
    ),
)
async def daily_usage(
    admin: AdminUser,
    session: SessionDep,
    window: UsageWindow,
    as_: OutputFormat = Format.JSON,
    user_id: Annotated[
        int | None, Query(ge=1, le=2**63 - 1, description="Only this user's rows")
    ] = None,
    model: Annotated[
        str | None,
        Query(min_length=1, max_length=200, description="Only this model's rows"),
        Storable,
    ] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    offset: Annotated[int, Query(ge=0, le=2**31)] = 0,
) -> Response:
    rows, total = await service.daily(
        session=session,
        window=window,
        user_id=user_id,
        model=model,
        limit=limit,
        offset=offset,
    )
    response = render(
        rows, schema=AdminUsageDayRead, as_=as_, filename="usage-daily.csv"
    )
    response.headers["X-Total-Count"] = str(total)
    return response


@router.get(
    "/usage/leaderboard",
    response_model=list[LeaderboardEntry],
    summary="The users who used most (admin)",
    description=(
        "The `limit` users with the most tokens (`by=tokens`, prompt and "
        "completion together) or questions (`by=questions`) over the last `days` "
        "UTC days, today included, all models together, with their totals; ties "
        f"by user id. Users without questions then are not listed. {_COUNTED} "
        f"{_CSV}"
    ),
    responses=_ok(
        "The top users, most first",
        "user_id,username,questions,failed,prompt_tokens,completion_tokens,"
        "total_tokens\r\n7,alice,310,4,21840,60210,82050\r\n",
        errors=(401, 403),
    ),
)
async def leaderboard(
    admin: AdminUser,
    session: SessionDep,
    as_: OutputFormat = Format.JSON,
    days: Annotated[
        int, Query(ge=1, le=MAX_DAYS, description="How many UTC days, today included")
    ] = 7,
    limit: Annotated[int, Query(ge=1, le=100, description="How many users")] = 10,
    by: Annotated[Ranking, Query(description="What ranks the users")] = Ranking.TOKENS,
) -> Response:
    rows = await service.leaderboard(
        session=session, window=last_days(days), by=by, limit=limit
    )
    return render(
        rows, schema=LeaderboardEntry, as_=as_, filename="usage-leaderboard.csv"
    )
