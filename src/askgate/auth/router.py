import contextlib
from typing import Annotated

from fastapi import APIRouter, Form, Response, status
from fastapi.exceptions import RequestValidationError

from askgate.auth import service
from askgate.auth.cookies import WEB_HEADER, WebLoginDep
from askgate.auth.schemas import RefreshRequest, TokenPair
from askgate.auth.throttling import LoginThrottle, RegistrationRateLimit
from askgate.db import DatabaseDep, SessionDep
from askgate.errors import NotAuthenticated, error_responses
from askgate.no_store import NoStore
from askgate.runtime import SettingsDep
from askgate.schemas import Storable
from askgate.users.schemas import PASSWORD_MAX, UserCreate, UserRead
from askgate.users.service import create_user

router = APIRouter(prefix="/auth", tags=["auth"])


@router.post(
    "/register",
    status_code=status.HTTP_201_CREATED,
    response_model=UserRead,
    summary="Create an account",
    description=(
        "Registers a user with the `user` role. Usernames are unique ignoring case. "
        "Unknown fields (such as `role`) are rejected with 422, so registration "
        "can never create an administrator. Each client address may attempt "
        "`ASKGATE_REGISTRATIONS_PER_HOUR` (default 10) registrations per hour, "
        "refused ones included; more answer 429 with `Retry-After`."
    ),
    responses=error_responses(400, 409, 429),
    dependencies=[RegistrationRateLimit],
)
async def register(data: UserCreate, db: DatabaseDep) -> UserRead:
    user = await create_user(
        db=db,
        username=data.username,
        password=data.password,
        email=data.email,
    )
    return UserRead.model_validate(user)


@router.post(
    "/token",
    response_model=TokenPair,
    summary="Log in",
    description=(
        "OAuth2 password flow (form fields `username` and `password`; this is what "
        "Swagger's **Authorize** button sends). Returns a short-lived access token "
        "and a one-time refresh token. A wrong password, an unknown user and an "
        "inactive user all get the same 401.\n\n"
        "After `ASKGATE_LOGIN_FAILURES_PER_ACCOUNT` (default 5) failures for one "
        "username within `ASKGATE_LOGIN_FAILURE_WINDOW_SECONDS` (default 15 "
        "minutes), or `ASKGATE_LOGIN_FAILURES_PER_IP` (default 30) from one client "
        "address, attempts answer 429 with `Retry-After`, even with the right "
        "password, until the window has passed. A successful login clears the "
        "username's failures. Attempts are counted before the password is "
        "checked, so attempts still being checked count too: of a burst, at most "
        "the limits are checked and the rest answer 429 at once. A wrong "
        "`current_password` in `PATCH /users/me` counts as a failed login.\n\n"
        f"With the header `{WEB_HEADER}: 1` (what askgate's web page sends), the "
        "refresh token is set as an `HttpOnly; SameSite=Strict` cookie on `/auth` "
        "instead, and `refresh_token` is null."
    ),
    responses=error_responses(400, 401, 403, 429),
    dependencies=[NoStore],
)
async def token(
    username: Annotated[str, Form(min_length=1, max_length=128), Storable],
    password: Annotated[str, Form(min_length=1, max_length=PASSWORD_MAX), Storable],
    db: DatabaseDep,
    settings: SettingsDep,
    guard: LoginThrottle,
    web: WebLoginDep,
    response: Response,
    grant_type: Annotated[str | None, Form(pattern="^password$")] = None,
) -> TokenPair:
    user = await service.authenticate(
        db=db, guard=guard, username=username, password=password
    )
    pair = await service.login(db=db, settings=settings, user=user)
    return web.hand_out(pair, response)


@router.post(
    "/refresh",
    response_model=TokenPair,
    summary="Rotate the refresh token",
    description=(
        "Exchanges a refresh token for a new access and refresh token. Each refresh "
        "token works once: presenting one that was already used answers 401 and "
        "revokes every token of that login (theft detection).\n\n"
        f"With the header `{WEB_HEADER}: 1` and no body, the refresh token is read "
        "from the cookie `POST /auth/token` set, and the new one replaces it."
    ),
    responses=error_responses(400, 401, 403),
    dependencies=[NoStore],
)
async def refresh(
    session: SessionDep,
    settings: SettingsDep,
    web: WebLoginDep,
    response: Response,
    data: RefreshRequest | None = None,
) -> TokenPair:
    if not web.enabled:
        return await service.refresh(
            session=session, settings=settings, refresh_token=_given(data)
        )
    try:
        pair = await service.refresh(
            session=session, settings=settings, refresh_token=web.token()
        )
    except NotAuthenticated as refused:
        # A used, revoked or expired cookie is of no more use to the browser.
        raise NotAuthenticated(refused.detail, headers=web.forget()) from None
    return web.hand_out(pair, response)


@router.post(
    "/logout",
    status_code=status.HTTP_204_NO_CONTENT,
    response_class=Response,
    summary="Log out",
    description=(
        "Revokes the login the refresh token belongs to: its refresh tokens and the "
        "access tokens issued from them stop working at once.\n\n"
        f"With the header `{WEB_HEADER}: 1` and no body, the login of the cookie "
        "`POST /auth/token` set is revoked and the cookie cleared (204 also when "
        "there was none, or its login had already ended)."
    ),
    responses=error_responses(400, 401, 403),
)
async def logout(
    session: SessionDep,
    web: WebLoginDep,
    response: Response,
    data: RefreshRequest | None = None,
) -> None:
    if not web.enabled:
        await service.logout(session=session, refresh_token=_given(data))
        return
    response.headers.update(web.forget())
    with contextlib.suppress(NotAuthenticated):
        await service.logout(session=session, refresh_token=web.token())


def _given(data: RefreshRequest | None) -> str:
    """The body's token; without one, the 422 the body used to be required with."""
    if data is None:
        raise RequestValidationError(
            [{"type": "missing", "loc": ("body",), "msg": "Field required"}]
        )
    return data.refresh_token
