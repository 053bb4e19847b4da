"""Who is calling: the access token is checked, then the user is read fresh."""

from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import OAuth2PasswordBearer
from sqlalchemy import select

from askgate.auth.models import AuthSession
from askgate.auth.security import InvalidToken, decode_access_token
from askgate.db import DatabaseDep, utcnow
from askgate.errors import NotAuthenticated, PermissionDenied
from askgate.runtime import SettingsDep
from askgate.users.models import Role, User

# auto_error=False: a missing token gets askgate's own 401 body and header.
oauth2_scheme = OAuth2PasswordBearer(tokenUrl="/auth/token", auto_error=False)

INVALID_TOKEN = "Invalid or expired access token"


async def get_current_user(
    request: Request,
    token: Annotated[str | None, Depends(oauth2_scheme)],
    settings: SettingsDep,
    db: DatabaseDep,
) -> User:
    """The caller, loaded in a short session of its own.

    Role and active flag come from the database on every request, never from the
    token. The token's login (`sid`) must still be live, so logout, a password
    change or a reused refresh token end it at once. The session closes before the
    handler runs: a handler that waits for the LLM holds no database connection.
    """
    if not token:
        raise NotAuthenticated("Not authenticated")
    try:
        claims = decode_access_token(token, key=settings.signing_key())
    except InvalidToken:
        raise NotAuthenticated(INVALID_TOKEN) from None
    async with db.read() as session:
        row = (
            await session.execute(
                select(User, AuthSession.revoked_at, AuthSession.expires_at)
                .join(AuthSession, AuthSession.user_id == User.id)
                .where(User.id == claims.user_id, AuthSession.id == claims.session_id)
            )
        ).one_or_none()
    if row is None:
        raise NotAuthenticated(INVALID_TOKEN)
    user, revoked_at, expires_at = row
    if revoked_at is not None or expires_at <= utcnow() or not user.is_active:
        raise NotAuthenticated(INVALID_TOKEN)
    request.state.user_id = user.id  # for the request log line
    return user


CurrentUser = Annotated[User, Depends(get_current_user)]


async def require_admin(user: CurrentUser) -> User:
    if user.role != Role.ADMIN:
        raise PermissionDenied("Administrator role required")
    return user


AdminUser = Annotated[User, Depends(require_admin)]
