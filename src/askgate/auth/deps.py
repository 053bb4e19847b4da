"""Who is calling: an access token (a login) or a personal API key, looked up in
the process's cache, which the auth epoch keeps exact (askgate.auth.cache).

Two kinds of routes. `CallerOrKey` routes ask questions or read the caller's own
data, and take either. Every other route takes a login only (`CurrentUser`,
`AdminUser`): a valid key there is 403, so that a leaked key can neither take
over the account (password, email, deletion, keys) nor carry an admin's powers.
A new route is login-only unless it says otherwise.
"""

from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import OAuth2PasswordBearer

from askgate.api_keys.keys import is_api_key
from askgate.auth.cache import Caller
from askgate.errors import ADMIN_REQUIRED, NotAuthenticated, PermissionDenied
from askgate.runtime import Runtime

LOGIN_REQUIRED = (
    "This route needs a login (an access token from POST /auth/token); "
    "API keys cannot manage the account or act as an admin"
)

# auto_error=False: a missing token gets askgate's own 401 body and header.
oauth2_scheme = OAuth2PasswordBearer(
    tokenUrl="/auth/token",
    auto_error=False,
    description=(
        "An access token from `POST /auth/token`; on the routes that say so, "
        "a personal API key (`ag-...`) instead"
    ),
)
Credential = Annotated[str | None, Depends(oauth2_scheme)]


async def get_current_user(request: Request, token: Credential) -> Caller:
    """The caller behind a login, as the database has it now.

    Role and active flag come from the database (through the cache, which is
    never older than the latest change to a user or login), never from the token.
    The token's login (`sid`) must still be live, so logout, a password change or
    a reused refresh token end it at once. No database session stays open: a
    handler that waits for the LLM holds no connection.
    """
    if not token:
        raise NotAuthenticated("Not authenticated")
    runtime: Runtime = request.app.state.runtime
    if is_api_key(token):
        # Checked first: a key that does not work is a 401 like anywhere else.
        caller = await runtime.callers.key_caller(token)
        request.state.user_id = caller.id
        raise PermissionDenied(LOGIN_REQUIRED)
    caller = await runtime.callers.caller(token)
    request.state.user_id = caller.id  # for the request log line
    return caller


CurrentUser = Annotated[Caller, Depends(get_current_user)]


async def get_caller_or_key(request: Request, token: Credential) -> Caller:
    """The caller behind a login or a personal API key (`api_key_id` set).

    A key's caller keeps its role for display, but `acts_as_admin` is false:
    check that, never `role`, before using an admin's powers.
    """
    if not token:
        raise NotAuthenticated("Not authenticated")
    runtime: Runtime = request.app.state.runtime
    if is_api_key(token):
        caller = await runtime.callers.key_caller(token)
        assert caller.api_key_id is not None
        runtime.key_uses.touch(caller.api_key_id)
    else:
        caller = await runtime.callers.caller(token)
    request.state.user_id = caller.id  # for the request log line
    return caller


CallerOrKey = Annotated[Caller, Depends(get_caller_or_key)]


async def require_admin(user: CurrentUser) -> Caller:
    if not user.acts_as_admin:
        raise PermissionDenied(ADMIN_REQUIRED)
    return user


AdminUser = Annotated[Caller, Depends(require_admin)]
