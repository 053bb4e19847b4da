"""Login, refresh-token rotation with reuse detection, logout.

A login keeps Argon2 (tens of milliseconds of CPU) out of every transaction, so
that it never holds SQLite's write lock or a pooled connection: `authenticate`
reads the user in a short read session and verifies the password with no session
open; `login` then writes the new login in a short write transaction, which first
checks that the password and the active flag are still the ones verified. Refresh
and logout run in the request's session (db.py).
"""

from datetime import datetime, timedelta

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from askgate import metrics
from askgate.auth.models import AuthSession, RefreshToken
from askgate.auth.schemas import TokenPair
from askgate.auth.security import (
    create_access_token,
    hash_refresh_token,
    new_refresh_token,
    new_session_id,
    verify_password,
)
from askgate.auth.throttling import LoginGuard
from askgate.config import Settings
from askgate.db import Database, utcnow
from askgate.errors import NotAuthenticated
from askgate.users.models import User
from askgate.users.service import find_by_username

BAD_CREDENTIALS = "Incorrect username or password"
BAD_REFRESH_TOKEN = "Invalid or expired refresh token"
REUSED_REFRESH_TOKEN = (
    "This refresh token was already used; every token of this login has been "
    "revoked. Log in again."
)


async def authenticate(
    *, db: Database, guard: LoginGuard, username: str, password: str
) -> User:
    """The user, or one 401 for every failure (unknown, wrong password, inactive).

    The password is verified in all three cases, so they also take the same time,
    and all three count as a failure for the name as typed: a lockout (429, before
    anything is looked up) does not tell whether the account exists either. The
    attempt is counted before the check (askgate.throttle.Throttle.begin_login),
    so a burst gets at most the limits verified and the rest 429 unhashed.
    """
    attempt = await guard.begin(username)
    async with db.read() as session:
        user = await find_by_username(session=session, username=username)
    valid = await verify_password(password, user.password_hash if user else None)
    if user is None or not valid or not user.is_active:
        metrics.LOGIN_FAILURES.inc()
        raise NotAuthenticated(BAD_CREDENTIALS)  # the attempt stays counted
    await guard.succeeded(attempt)
    return user


def _access_token(settings: Settings, *, user_id: int, session_id: str) -> str:
    return create_access_token(
        user_id=user_id,
        session_id=session_id,
        key=settings.signing_key(),
        ttl=timedelta(minutes=settings.access_token_expire_minutes),
    )


async def _issue(
    *, session: AsyncSession, settings: Settings, user_id: int, session_id: str
) -> TokenPair:
    refresh_token = new_refresh_token()
    session.add(
        RefreshToken(
            session_id=session_id, token_hash=hash_refresh_token(refresh_token)
        )
    )
    await session.flush()
    return TokenPair(
        access_token=_access_token(settings, user_id=user_id, session_id=session_id),
        refresh_token=refresh_token,
        expires_in=settings.access_token_expire_minutes * 60,
    )


async def login(*, db: Database, settings: Settings, user: User) -> TokenPair:
    """Start a new login (a refresh-token family) and issue its first pair.

    `user` is as `authenticate` read it, before the password check: a password
    change or a deactivation may have committed since. The user's row is locked
    (PostgreSQL; SQLite's writer holds the lock already) and must still have the
    verified hash and be active, or a password change would not end this login.
    """
    async with db.write() as session:
        unchanged = await session.scalar(
            select(User.id)
            .where(
                User.id == user.id,
                User.password_hash == user.password_hash,
                User.is_active.is_(True),
            )
            .with_for_update()
        )
        if unchanged is None:
            raise NotAuthenticated(BAD_CREDENTIALS)
        auth_session = AuthSession(
            id=new_session_id(),
            user_id=user.id,
            expires_at=utcnow() + timedelta(days=settings.refresh_token_expire_days),
        )
        session.add(auth_session)
        await session.flush()
        return await _issue(
            session=session,
            settings=settings,
            user_id=user.id,
            session_id=auth_session.id,
        )


async def _revoke_family(session: AsyncSession, session_id: str, now: datetime) -> None:
    await session.execute(
        update(AuthSession)
        .where(AuthSession.id == session_id, AuthSession.revoked_at.is_(None))
        .values(revoked_at=now)
    )


async def refresh(
    *, session: AsyncSession, settings: Settings, refresh_token: str
) -> TokenPair:
    """Rotate: mark the token used and issue a new pair in the same family.

    Marking is one conditional UPDATE, so of concurrent uses of one token exactly
    one wins; every other use is a reuse, which revokes the whole family.
    """
    now = utcnow()
    token_hash = hash_refresh_token(refresh_token)
    session_id = await session.scalar(
        update(RefreshToken)
        .where(RefreshToken.token_hash == token_hash, RefreshToken.used_at.is_(None))
        .values(used_at=now)
        .returning(RefreshToken.session_id)
    )
    if session_id is None:
        reused = await session.scalar(
            select(RefreshToken.session_id).where(RefreshToken.token_hash == token_hash)
        )
        if reused is None:
            raise NotAuthenticated(BAD_REFRESH_TOKEN)
        # Theft detection: the revocation must persist although the request fails.
        await _revoke_family(session, reused, now)
        await session.commit()
        raise NotAuthenticated(REUSED_REFRESH_TOKEN)

    row = (
        await session.execute(
            select(AuthSession, User.is_active)
            .join(User, User.id == AuthSession.user_id)
            .where(AuthSession.id == session_id)
        )
    ).one_or_none()
    if row is None:
        raise NotAuthenticated(BAD_REFRESH_TOKEN)
    auth_session, is_active = row
    if auth_session.revoked_at is not None or auth_session.expires_at <= now:
        raise NotAuthenticated(BAD_REFRESH_TOKEN)
    if not is_active:
        raise NotAuthenticated(BAD_REFRESH_TOKEN)
    return await _issue(
        session=session,
        settings=settings,
        user_id=auth_session.user_id,
        session_id=auth_session.id,
    )


async def logout(*, session: AsyncSession, refresh_token: str) -> None:
    """Revoke the login the token belongs to, used or not. Unknown tokens: 401."""
    session_id = await session.scalar(
        select(RefreshToken.session_id).where(
            RefreshToken.token_hash == hash_refresh_token(refresh_token)
        )
    )
    if session_id is None:
        raise NotAuthenticated(BAD_REFRESH_TOKEN)
    await _revoke_family(session, session_id, utcnow())
