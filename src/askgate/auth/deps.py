"""Who is calling: the access token is checked, then the caller is looked up in
the process's cache, which the auth epoch keeps exact (askgate.auth.cache)."""

from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import OAuth2PasswordBearer

from askgate.auth.cache import Caller, CallerCache
from askgate.errors import ADMIN_REQUIRED, NotAuthenticated, PermissionDenied
from askgate.users.models import Role

# auto_error=False: a missing token gets askgate's own 401 body and header.
oauth2_scheme = OAuth2PasswordBearer(tokenUrl="/auth/token", auto_error=False)


async def get_current_user(
    request: Request, token: Annotated[str | None, Depends(oauth2_scheme)]
) -> Caller:
    """The caller, as the database has it now.

    Role and active flag come from the database (through the cache, which is
    never older than the latest change to a user or login), never from the token.
    The token's login (`sid`) must still be live, so logout, a password change or
    a reused refresh token end it at once. No database session stays open: a
    handler that waits for the LLM holds no connection.
    """
    if not token:
        raise NotAuthenticated("Not authenticated")
    callers: CallerCache = request.app.state.runtime.callers
    caller = await callers.caller(token)
    request.state.user_id = caller.id  # for the request log line
    return caller


CurrentUser = Annotated[Caller, Depends(get_current_user)]


async def require_admin(user: CurrentUser) -> Caller:
    if user.role != Role.ADMIN:
        raise PermissionDenied(ADMIN_REQUIRED)
    return user


AdminUser = Annotated[Caller, Depends(require_admin)]
