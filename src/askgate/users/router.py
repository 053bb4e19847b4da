from typing import Annotated

from fastapi import APIRouter, Path, Query, Response, status
from fastapi.responses import StreamingResponse

from askgate.auth.deps import AdminUser, CallerOrKey, CurrentUser
from askgate.auth.throttling import AccountChangeRateLimit, LoginThrottle
from askgate.db import DatabaseDep, SessionDep
from askgate.errors import Conflict, error_responses
from askgate.quota import service as quota_service
from askgate.quota.schemas import TokenUsageRead
from askgate.runtime import SettingsDep
from askgate.schemas import Storable
from askgate.users import export, service
from askgate.users.schemas import (
    AdminUserCreate,
    AdminUserRead,
    AdminUserUpdate,
    UserRead,
    UserUpdateMe,
)

router = APIRouter(prefix="/users", tags=["users"])

UserId = Annotated[int, Path(ge=1, le=2**63 - 1, description="User id")]


@router.get(
    "/me",
    response_model=UserRead,
    summary="Read my account",
    description=(
        "The caller's own account, with a login or an API key. Never includes "
        "the password or its hash."
    ),
    responses=error_responses(401),
)
async def read_me(user: CallerOrKey) -> Response:
    # Serialized here: FastAPI would validate the returned model again first.
    return Response(
        UserRead.model_validate(user).model_dump_json(), media_type="application/json"
    )


@router.get(
    "/me/usage",
    response_model=TokenUsageRead,
    summary="My token usage today",
    description=(
        "Tokens spent today (UTC) by finished questions, tokens held by questions "
        "still being answered, the daily quota and what is left of it (`null` when "
        "unlimited). The count starts again at 00:00 UTC (`resets_at`). With a "
        "login or an API key: both share the user's quota."
    ),
    responses=error_responses(401),
)
async def my_usage(
    user: CallerOrKey, session: SessionDep, settings: SettingsDep
) -> TokenUsageRead:
    usage = await quota_service.usage_today(
        session=session,
        user=user,
        default_quota=settings.daily_token_quota,
        max_age=quota_service.reservation_max_age(settings),
    )
    return TokenUsageRead.model_validate(usage)


@router.get(
    "/me/export",
    response_model=export.AccountExport,
    summary="Export all my data",
    description=(
        "Everything askgate holds about the caller, as one JSON document to "
        "download: the account (never the password hash), its logins (never a "
        "token), its API keys' metadata (never a key or its digest), its usage "
        "per day and model and its daily quota counters, and every question "
        "with its answer and conversation, oldest first. The questions are "
        "streamed page by page, so the download starts at once however many "
        "there are. Needs a login: an API key is 403."
    ),
    responses=error_responses(401, 403),
)
async def export_me(
    user: CurrentUser, db: DatabaseDep, settings: SettingsDep
) -> StreamingResponse:
    max_age = quota_service.reservation_max_age(settings)
    chunks = await export.export(db=db, user_id=user.id, max_age=max_age)
    filename = f"askgate-export-user-{user.id}.json"
    return StreamingResponse(
        chunks,
        media_type=export.MEDIA_TYPE,
        headers={
            "Content-Disposition": f'attachment; filename="{filename}"',
            # Personal data: no browser or proxy cache keeps a copy.
            "Cache-Control": "no-store",
        },
    )


@router.patch(
    "/me",
    response_model=UserRead,
    summary="Update my account",
    description=(
        "Changes the username, the email (`null` removes it) or the password. "
        "A new password needs `current_password` and ends every login of the "
        "account, this one included: log in again afterwards.\n\n"
        "Each user may attempt `ASKGATE_ACCOUNT_CHANGES_PER_HOUR` (default 10) "
        "changes per hour, refused ones included; more answer 429 with "
        "`Retry-After`. Checking `current_password` counts as a login attempt "
        "for the account: a wrong one is a failed login (the same lockout as "
        "`POST /auth/token`, per account and per client address), and while "
        "either is locked out the change answers 429 with `Retry-After`. Needs a "
        "login: an API key is 403."
    ),
    responses=error_responses(400, 401, 403, 409, 429),
    dependencies=[AccountChangeRateLimit],
)
async def update_me(
    data: UserUpdateMe, user: CurrentUser, db: DatabaseDep, guard: LoginThrottle
) -> UserRead:
    updated = await service.update_me(db=db, guard=guard, user_id=user.id, data=data)
    return UserRead.model_validate(updated)


@router.delete(
    "/me",
    status_code=status.HTTP_204_NO_CONTENT,
    response_class=Response,
    summary="Delete my account",
    description=(
        "Deletes the account with everything askgate holds about it: its "
        "questions, logins, API keys and usage. The last active admin cannot "
        "delete their account (409): make another admin first. "
        "Needs a login: an API key is 403."
    ),
    responses=error_responses(401, 403, 409),
)
async def delete_me(user: CurrentUser, db: DatabaseDep) -> None:
    await service.delete_user(db=db, user_id=user.id, actor_id=None)


@router.get(
    "",
    response_model=list[AdminUserRead],
    summary="List users (admin)",
    description=(
        "All users, newest first, paged with `limit` and `offset`; `q` matches part "
        "of the username, ignoring case. The total is in `X-Total-Count`."
    ),
    responses=error_responses(401, 403),
)
async def list_users(
    response: Response,
    admin: AdminUser,
    session: SessionDep,
    limit: Annotated[int, Query(ge=1, le=100)] = 50,
    offset: Annotated[int, Query(ge=0, le=2**31)] = 0,
    # No character pattern: `%`, `_` and `\` are searched for literally.
    q: Annotated[str | None, Query(max_length=32), Storable] = None,
) -> list[AdminUserRead]:
    users, total = await service.list_users(
        session=session, q=q, limit=limit, offset=offset
    )
    response.headers["X-Total-Count"] = str(total)
    return [AdminUserRead.model_validate(user) for user in users]


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    response_model=AdminUserRead,
    summary="Create a user (admin)",
    description="Creates a user with any role; `is_active` defaults to true.",
    responses=error_responses(400, 401, 403, 409),
)
async def create_user(
    data: AdminUserCreate, admin: AdminUser, db: DatabaseDep
) -> AdminUserRead:
    user = await service.create_user(
        db=db,
        username=data.username,
        password=data.password,
        email=data.email,
        role=data.role,
        is_active=data.is_active,
        actor_id=admin.id,
    )
    return AdminUserRead.model_validate(user)


@router.get(
    "/{user_id}",
    response_model=AdminUserRead,
    summary="Read a user (admin)",
    description="Any user's account, with its daily token quota override.",
    responses=error_responses(401, 403, 404),
)
async def read_user(
    user_id: UserId, admin: AdminUser, session: SessionDep
) -> AdminUserRead:
    return AdminUserRead.model_validate(
        await service.get_user(session=session, user_id=user_id)
    )


@router.patch(
    "/{user_id}",
    response_model=AdminUserRead,
    summary="Change a user's role, active flag or token quota (admin)",
    description=(
        "Sets `role`, `is_active` and/or `daily_token_quota`. Deactivating a user "
        "ends their logins at once. Admins cannot demote or deactivate themselves "
        "(409), so an active admin always remains. `daily_token_quota` is the "
        "user's own limit in tokens per UTC day: 0 means unlimited for this user, "
        "`null` brings back the global `ASKGATE_DAILY_TOKEN_QUOTA`; it applies to "
        "questions asked from then on."
    ),
    responses=error_responses(400, 401, 403, 404, 409),
)
async def update_user(
    user_id: UserId, data: AdminUserUpdate, admin: AdminUser, session: SessionDep
) -> AdminUserRead:
    user = await service.admin_update(
        session=session, actor_id=admin.id, user_id=user_id, data=data
    )
    return AdminUserRead.model_validate(user)


@router.delete(
    "/{user_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    response_class=Response,
    summary="Delete a user (admin)",
    description=(
        "Deletes the user with everything askgate holds about them: their "
        "questions, logins, API keys and usage. Admins delete their own account "
        "with `DELETE /users/me`, not here (409)."
    ),
    responses=error_responses(401, 403, 404, 409),
)
async def delete_user(user_id: UserId, admin: AdminUser, db: DatabaseDep) -> None:
    if user_id == admin.id:
        raise Conflict("Admins cannot delete themselves here; use DELETE /users/me")
    await service.delete_user(db=db, user_id=user_id, actor_id=admin.id)
