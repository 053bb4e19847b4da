"""Personal API keys: made, listed and revoked. (Authenticating with one is the
caller cache's job, askgate.auth.cache.)"""

from collections.abc import Sequence
from datetime import timedelta

from sqlalchemy import ColumnElement, Select, func, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from askgate.api_keys import keys
from askgate.api_keys.models import ApiKey
from askgate.api_keys.schemas import ApiKeyCreate
from askgate.db import id_param, utcnow
from askgate.errors import Conflict, NotAuthenticated, NotFound
from askgate.users.models import User

MAX_LIVE_KEYS = 50
KEY_NOT_FOUND = "API key not found"


def _live() -> ColumnElement[bool]:
    return or_(ApiKey.expires_at.is_(None), ApiKey.expires_at > utcnow())


async def create_key(
    *, session: AsyncSession, user_id: int, data: ApiKeyCreate
) -> tuple[ApiKey, str]:
    """The new key's row and the key itself, which is not kept anywhere.

    The owner's row is locked first (SQLite: the write lock), so that two
    concurrent requests cannot both pass the limit.
    """
    owner = await session.scalar(
        select(User.id).where(User.id == user_id).with_for_update(key_share=True)
    )
    if owner is None:
        raise NotAuthenticated("Your account no longer exists")
    live = await session.scalar(
        select(func.count()).where(ApiKey.user_id == user_id, _live())
    )
    if (live or 0) >= MAX_LIVE_KEYS:
        raise Conflict(
            f"You have {MAX_LIVE_KEYS} live API keys, the most allowed: "
            "revoke one first"
        )
    key = keys.new_key()
    now = utcnow()
    row = ApiKey(
        user_id=user_id,
        name=data.name,
        prefix=key[: keys.SHOWN_CHARACTERS],
        digest=keys.digest(key),
        created_at=now,
        expires_at=(
            None
            if data.expires_in_days is None
            else now + timedelta(days=data.expires_in_days)
        ),
    )
    session.add(row)
    await session.flush()
    return row, key


async def _page(
    session: AsyncSession, query: Select[ApiKey], limit: int, offset: int
) -> tuple[Sequence[ApiKey], int]:
    total = await session.scalar(select(func.count()).select_from(query.subquery()))
    rows = await session.scalars(
        query.order_by(ApiKey.id.desc()).limit(limit).offset(offset)
    )
    return rows.all(), total or 0


async def list_keys(
    *, session: AsyncSession, user_id: int | None, limit: int, offset: int
) -> tuple[Sequence[ApiKey], int]:
    """Keys newest first, of one user or (None) of everyone; expired ones too."""
    query = select(ApiKey)
    if user_id is not None:
        query = query.where(ApiKey.user_id == id_param(user_id))
    return await _page(session, query, limit, offset)


async def revoke_key(
    *, session: AsyncSession, key_id: int, owner_id: int | None
) -> None:
    """Delete the key (of `owner_id`, unless None); NotFound otherwise.

    Looked up first: a DELETE that matches nothing would still bump the auth
    epoch on PostgreSQL (its triggers are per statement) and empty every cache.
    """
    query = select(ApiKey).where(ApiKey.id == id_param(key_id))
    if owner_id is not None:
        query = query.where(ApiKey.user_id == owner_id)
    key = await session.scalar(query)
    if key is None:
        raise NotFound(KEY_NOT_FOUND)
    await session.delete(key)
