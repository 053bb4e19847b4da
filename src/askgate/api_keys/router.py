"""Personal API keys: the owner's routes and the admin's. All need a login: a key
never manages keys (askgate.auth.deps)."""

from typing import Annotated

from fastapi import APIRouter, Path, Query, Response, status

from askgate.api_keys import service
from askgate.api_keys.schemas import (
    AdminApiKeyRead,
    ApiKeyCreate,
    ApiKeyCreated,
    ApiKeyRead,
)
from askgate.auth.deps import AdminUser, CurrentUser
from askgate.db import SessionDep
from askgate.errors import error_responses
from askgate.no_store import NoStore
from askgate.users import service as users_service

router = APIRouter(prefix="/users/me/api-keys", tags=["api keys"])
admin_router = APIRouter(prefix="/api-keys", tags=["api keys"])

KeyId = Annotated[int, Path(ge=1, le=2**63 - 1, description="API key id")]
Limit = Annotated[int, Query(ge=1, le=100)]
Offset = Annotated[int, Query(ge=0, le=2**31)]

_USE = (
    "Send it as `Authorization: Bearer ag-...` to ask questions and read your "
    "own data (`POST /questions`, `GET /questions/me`, `GET|DELETE "
    "/questions/{id}`, `GET /users/me`, `GET /users/me/usage`, `GET "
    "/users/me/usage/daily`). A key never manages the account (password, "
    "email, deletion, keys) and never carries an admin's powers: those routes "
    "answer 403 and need a login."
)


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    response_model=ApiKeyCreated,
    summary="Create an API key",
    description=(
        "Creates a personal API key and returns it this once, in `key`: askgate "
        "stores only its SHA-256 and its first 8 characters (`prefix`). "
        f"{_USE} At most {service.MAX_LIVE_KEYS} keys that have not expired per "
        "user (409 past that). Needs a login."
    ),
    responses=error_responses(400, 401, 403, 409),
    dependencies=[NoStore],
)
async def create_key(
    data: ApiKeyCreate, user: CurrentUser, session: SessionDep
) -> ApiKeyCreated:
    row, key = await service.create_key(session=session, user_id=user.id, data=data)
    return ApiKeyCreated(
        id=row.id,
        name=row.name,
        prefix=row.prefix,
        created_at=row.created_at,
        last_used_at=row.last_used_at,
        expires_at=row.expires_at,
        key=key,
    )


@router.get(
    "",
    response_model=list[ApiKeyRead],
    summary="List my API keys",
    description=(
        "The caller's keys, newest first, expired ones included (never the keys "
        "themselves); paged with `limit` and `offset`, the total in "
        "`X-Total-Count`. `last_used_at` is updated at most once a minute. "
        "Needs a login."
    ),
    responses=error_responses(401, 403),
)
async def list_my_keys(
    response: Response,
    user: CurrentUser,
    session: SessionDep,
    limit: Limit = 100,
    offset: Offset = 0,
) -> list[ApiKeyRead]:
    rows, total = await service.list_keys(
        session=session, user_id=user.id, limit=limit, offset=offset
    )
    response.headers["X-Total-Count"] = str(total)
    return [ApiKeyRead.model_validate(row) for row in rows]


@router.delete(
    "/{key_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    response_class=Response,
    summary="Revoke one of my API keys",
    description=(
        "Deletes the key: it stops working at once on every worker and instance. "
        "The questions it asked stay, no longer naming it. Another user's key is "
        "404, as one that does not exist. Needs a login."
    ),
    responses=error_responses(401, 403, 404),
)
async def revoke_my_key(key_id: KeyId, user: CurrentUser, session: SessionDep) -> None:
    await service.revoke_key(session=session, key_id=key_id, owner_id=user.id)


@admin_router.get(
    "",
    response_model=list[AdminApiKeyRead],
    summary="List API keys (admin)",
    description=(
        "Every user's keys, or one `user_id`'s, newest first; paged with `limit` "
        "and `offset`, the total in `X-Total-Count`. Never the keys themselves."
    ),
    responses=error_responses(401, 403),
)
async def list_keys(
    response: Response,
    admin: AdminUser,
    session: SessionDep,
    user_id: Annotated[int | None, Query(ge=1, le=2**63 - 1)] = None,
    limit: Limit = 50,
    offset: Offset = 0,
) -> list[AdminApiKeyRead]:
    rows, total = await service.list_keys(
        session=session, user_id=user_id, limit=limit, offset=offset
    )
    response.headers["X-Total-Count"] = str(total)
    return [AdminApiKeyRead.model_validate(row) for row in rows]


@admin_router.delete(
    "/{key_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    response_class=Response,
    summary="Revoke an API key (admin)",
    description="Deletes any user's key: it stops working at once everywhere.",
    responses=error_responses(401, 403, 404),
)
async def revoke_key(key_id: KeyId, admin: AdminUser, session: SessionDep) -> None:
    await users_service.ensure_still_admin(session=session, actor_id=admin.id)
    await service.revoke_key(session=session, key_id=key_id, owner_id=None)
