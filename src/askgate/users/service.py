"""User accounts. Services flush; the caller's transaction commits (see db.py)."""

from collections.abc import Sequence

from sqlalchemy import delete, func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from askgate.auth.models import AuthSession
from askgate.auth.security import hash_password, verify_password
from askgate.db import utcnow
from askgate.errors import Conflict, InvalidInput, NotFound
from askgate.users.models import Role, User
from askgate.users.schemas import AdminUserUpdate, UserUpdateMe

USERNAME_TAKEN = "This username is already taken"
EMAIL_TAKEN = "This email address is already registered"


async def get_user(*, session: AsyncSession, user_id: int) -> User:
    user = await session.get(User, user_id)
    if user is None:
        raise NotFound("User not found")
    return user


async def find_by_username(*, session: AsyncSession, username: str) -> User | None:
    result = await session.execute(
        select(User).where(func.lower(User.username) == func.lower(username))
    )
    return result.scalar_one_or_none()


async def _ensure_available(
    *,
    session: AsyncSession,
    username: str | None,
    email: str | None,
    exclude_id: int | None = None,
) -> None:
    if username is not None:
        query = select(User.id).where(func.lower(User.username) == func.lower(username))
        if exclude_id is not None:
            query = query.where(User.id != exclude_id)
        if await session.scalar(query) is not None:
            raise Conflict(USERNAME_TAKEN)
    if email is not None:
        query = select(User.id).where(func.lower(User.email) == func.lower(email))
        if exclude_id is not None:
            query = query.where(User.id != exclude_id)
        if await session.scalar(query) is not None:
            raise Conflict(EMAIL_TAKEN)


async def _flush_unique(session: AsyncSession) -> None:
    # The checks above give the precise message; the unique indexes settle races.
    try:
        await session.flush()
    except IntegrityError:
        raise Conflict("This username or email address is already taken") from None


async def create_user(
    *,
    session: AsyncSession,
    username: str,
    password: str,
    email: str | None = None,
    role: Role = Role.USER,
    is_active: bool = True,
) -> User:
    await _ensure_available(session=session, username=username, email=email)
    user = User(
        username=username,
        email=email,
        password_hash=await hash_password(password),
        role=role,
        is_active=is_active,
    )
    session.add(user)
    await _flush_unique(session)
    return user


async def revoke_sessions(*, session: AsyncSession, user_id: int) -> None:
    """End every login of a user: refresh tokens and the access tokens naming them."""
    await session.execute(
        update(AuthSession)
        .where(AuthSession.user_id == user_id, AuthSession.revoked_at.is_(None))
        .values(revoked_at=utcnow())
    )


async def update_me(*, session: AsyncSession, user_id: int, data: UserUpdateMe) -> User:
    user = await get_user(session=session, user_id=user_id)
    fields = data.model_fields_set
    if "password" in fields and data.password is not None:
        if data.current_password is None:
            raise InvalidInput("current_password is required to change the password")
        if not await verify_password(data.current_password, user.password_hash):
            raise InvalidInput("current_password is incorrect")
        user.password_hash = await hash_password(data.password)
        await revoke_sessions(session=session, user_id=user.id)
    elif "current_password" in fields:
        raise InvalidInput("current_password is only used with password")
    if "username" in fields:
        if data.username is None:
            raise InvalidInput("username cannot be null")
        await _ensure_available(
            session=session, username=data.username, email=None, exclude_id=user.id
        )
        user.username = data.username
    if "email" in fields:
        if data.email is not None:
            await _ensure_available(
                session=session, username=None, email=data.email, exclude_id=user.id
            )
        user.email = data.email
    await _flush_unique(session)
    return user


async def admin_update(
    *, session: AsyncSession, actor: User, user_id: int, data: AdminUserUpdate
) -> User:
    user = await get_user(session=session, user_id=user_id)
    fields = data.model_fields_set
    if user.id == actor.id and (
        ("role" in fields and data.role != user.role)
        or ("is_active" in fields and data.is_active is False)
    ):
        raise Conflict("Admins cannot demote or deactivate themselves")
    if "role" in fields:
        if data.role is None:
            raise InvalidInput("role cannot be null")
        user.role = data.role
    if "is_active" in fields:
        if data.is_active is None:
            raise InvalidInput("is_active cannot be null")
        user.is_active = data.is_active
        if not data.is_active:
            await revoke_sessions(session=session, user_id=user.id)
    if "daily_token_quota" in fields:  # null is meaningful: the global setting
        user.daily_token_quota = data.daily_token_quota
    await session.flush()
    return user


async def delete_user(*, session: AsyncSession, user_id: int) -> None:
    """Deletes the account; its questions and tokens go with it (ON DELETE CASCADE)."""
    result = await session.execute(delete(User).where(User.id == user_id))
    if result.rowcount == 0:  # type: ignore[attr-defined]
        raise NotFound("User not found")


async def list_users(
    *, session: AsyncSession, q: str | None, limit: int, offset: int
) -> tuple[Sequence[User], int]:
    query = select(User)
    if q:
        escaped = (
            q.lower().replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        )
        query = query.where(func.lower(User.username).like(f"%{escaped}%", escape="\\"))
    total = await session.scalar(select(func.count()).select_from(query.subquery()))
    rows = await session.scalars(
        query.order_by(User.id.desc()).limit(limit).offset(offset)
    )
    return rows.all(), total or 0


async def ensure_admin(
    *, session: AsyncSession, username: str, password: str
) -> User | None:
    """Create the first admin unless an admin exists; returns it when created."""
    existing = await session.scalar(select(User.id).where(User.role == Role.ADMIN))
    if existing is not None:
        return None
    return await create_user(
        session=session, username=username, password=password, role=Role.ADMIN
    )
