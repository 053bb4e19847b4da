"""User accounts.

Services over a session flush and leave the commit to their caller (see db.py).
The three that hash or verify a password keep Argon2 (tens of milliseconds of CPU)
out of every transaction, so that it never holds SQLite's write lock or a pooled
connection; they open their own short sessions:

- create_user: a read (are the name and email free?), the hash with no session
  open, then a write transaction that checks again and inserts.
- update_me: with a new password, a read of the current hash, its check and the new
  hash with no session open, then a write transaction that refuses (409) if the
  hash changed meanwhile; without one, the write transaction alone. Checking the
  current password is a login attempt for the account (askgate.throttle): counted
  against the account and the client's address before the check, so a stolen
  access token cannot guess the password faster than a login could.
- ensure_admin: a read (is there an admin yet?), the hash only if there is none,
  then a write transaction that checks again and inserts.

delete_user opens its own short write transactions too: the user's questions
in batches, then the account (its doc says why).

An active admin always remains, and what only an admin may write is written by
one: the caller's role was checked against the caller cache when the request
arrived, which a concurrent demotion may have made stale. So every admin write
(here, and an admin deleting another's question) and every account deletion
begins its write transaction by locking the active admins' rows
(`_lock_active_admins`), then checks against what it locked that its caller is
still one of them (403) and that the change leaves one (409). Two such
transactions run one after the other, so two admins demoting each other cannot
both pass: the second finds it is no longer an admin.
"""

from collections.abc import Sequence

from sqlalchemy import delete, func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from askgate.auth.models import AuthSession
from askgate.auth.security import hash_password, verify_password
from askgate.auth.throttling import LoginGuard
from askgate.db import Database, id_param, utcnow
from askgate.errors import (
    ADMIN_REQUIRED,
    Conflict,
    InvalidInput,
    NotFound,
    PermissionDenied,
)
from askgate.questions.models import Question
from askgate.users.models import Role, User
from askgate.users.names import canonical
from askgate.users.schemas import AdminUserUpdate, UserUpdateMe

USERNAME_TAKEN = "This username is already taken"
EMAIL_TAKEN = "This email address is already registered"
LAST_ADMIN = (
    "This is the last active admin: it cannot be demoted, deactivated or deleted "
    "until another admin exists"
)
WRONG_CURRENT_PASSWORD = "current_password is incorrect"
PASSWORD_CHANGED_MEANWHILE = (
    "The password was changed by another request meanwhile; log in again with "
    "the new password"
)
# A deleted user's questions go this many per write transaction (delete_user).
QUESTIONS_PER_DELETE = 1000


async def get_user(*, session: AsyncSession, user_id: int) -> User:
    user = await session.scalar(select(User).where(User.id == id_param(user_id)))
    if user is None:
        raise NotFound("User not found")
    return user


# FOR NO KEY UPDATE on PostgreSQL (SQLite's writer holds the lock already): admin
# writers wait for each other, taking the rows in id order so that they cannot
# deadlock, while logins and questions, which only reference these rows, do not
# wait. A row changed by the transaction waited for is checked again (READ
# COMMITTED re-evaluates the WHERE), so a demoted or deleted admin drops out.
_ACTIVE_ADMINS = (
    select(User.id)
    .where(User.role == Role.ADMIN, User.is_active.is_(True))
    .order_by(User.id)
    .with_for_update(key_share=True)
)


async def _lock_active_admins(
    session: AsyncSession, *, actor_id: int | None
) -> set[int]:
    """The active admins' ids, their rows locked until the transaction ends.

    Called before the transaction changes a user or a login: a change locks the
    auth epoch's single row (its trigger), and a transaction waiting here while
    holding it would deadlock with an admin writer that holds these rows and
    waits for the epoch. PermissionDenied unless `actor_id`, an admin route's
    caller, is still one of them (module doc).
    """
    admin_ids = set((await session.scalars(_ACTIVE_ADMINS)).all())
    if actor_id is not None and actor_id not in admin_ids:
        raise PermissionDenied(ADMIN_REQUIRED)
    return admin_ids


async def ensure_still_admin(*, session: AsyncSession, actor_id: int) -> None:
    """For a write that the caller may make only as an admin, in its transaction:
    PermissionDenied unless the caller is an active admin now (module doc)."""
    await _lock_active_admins(session, actor_id=actor_id)


def _keep_an_admin(admin_ids: set[int], *, leaving: int) -> None:
    """Conflict if `leaving` (demoted, deactivated or deleted) is the last admin."""
    if admin_ids == {leaving}:
        raise Conflict(LAST_ADMIN)


async def find_by_username(*, session: AsyncSession, username: str) -> User | None:
    result = await session.execute(
        select(User).where(User.username_canonical == canonical(username))
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
        query = select(User.id).where(User.username_canonical == canonical(username))
        if exclude_id is not None:
            query = query.where(User.id != exclude_id)
        if await session.scalar(query) is not None:
            raise Conflict(USERNAME_TAKEN)
    if email is not None:
        query = select(User.id).where(User.email_canonical == canonical(email))
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
    db: Database,
    username: str,
    password: str,
    email: str | None = None,
    role: Role = Role.USER,
    is_active: bool = True,
    actor_id: int | None = None,
) -> User:
    """Registration, or creation by the admin `actor_id`: a read, the hash, a
    write (module doc)."""
    # Checked before hashing too, so that a taken name costs no Argon2.
    async with db.read() as session:
        await _ensure_available(session=session, username=username, email=email)
    password_hash = await hash_password(password)
    async with db.write() as session:
        if actor_id is not None:
            await _lock_active_admins(session, actor_id=actor_id)
        return await add_user(
            session=session,
            username=username,
            password_hash=password_hash,
            email=email,
            role=role,
            is_active=is_active,
        )


async def add_user(
    *,
    session: AsyncSession,
    username: str,
    password_hash: str,
    email: str | None = None,
    role: Role = Role.USER,
    is_active: bool = True,
) -> User:
    """Insert a user whose password is already hashed; 409 if a name is taken."""
    await _ensure_available(session=session, username=username, email=email)
    user = User(
        username=username,
        email=email,
        password_hash=password_hash,
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


async def update_me(
    *, db: Database, guard: LoginGuard, user_id: int, data: UserUpdateMe
) -> User:
    """Change one's own account; a new password ends every login (module doc)."""
    fields = data.model_fields_set
    password_change = None
    if "password" in fields and data.password is not None:
        if data.current_password is None:
            raise InvalidInput("current_password is required to change the password")
        password_change = await _check_and_hash(
            db=db,
            guard=guard,
            user_id=user_id,
            current_password=data.current_password,
            new_password=data.password,
        )
    elif "current_password" in fields:
        raise InvalidInput("current_password is only used with password")
    if "username" in fields and data.username is None:
        raise InvalidInput("username cannot be null")
    async with db.write() as session:
        # Locked (PostgreSQL; SQLite's writer holds the lock already), so that
        # of two changes checked against one hash only the first can write.
        user = await session.scalar(
            select(User).where(User.id == id_param(user_id)).with_for_update()
        )
        if user is None:
            raise NotFound("User not found")
        if password_change is not None:
            checked_hash, new_hash = password_change
            if user.password_hash != checked_hash:
                # Another change won meanwhile: this one checked a gone password.
                raise Conflict(PASSWORD_CHANGED_MEANWHILE)
            user.password_hash = new_hash
            await revoke_sessions(session=session, user_id=user.id)
        await _apply_names(session=session, user=user, data=data)
        return user


async def _check_and_hash(
    *,
    db: Database,
    guard: LoginGuard,
    user_id: int,
    current_password: str,
    new_password: str,
) -> tuple[str, str]:
    """(the hash the current password was checked against, the new hash).

    The check is a login attempt for the account (module doc): 429 while the
    account or the address is locked out; a wrong password stays counted.
    """
    async with db.read() as session:
        user = await get_user(session=session, user_id=user_id)
    attempt = await guard.begin(user.username)
    if not await verify_password(current_password, user.password_hash):
        raise InvalidInput(WRONG_CURRENT_PASSWORD)
    await guard.succeeded(attempt)
    return user.password_hash, await hash_password(new_password)


async def _apply_names(
    *, session: AsyncSession, user: User, data: UserUpdateMe
) -> None:
    fields = data.model_fields_set
    if "username" in fields and data.username is not None:
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


async def admin_update(
    *, session: AsyncSession, actor_id: int, user_id: int, data: AdminUserUpdate
) -> User:
    admin_ids = await _lock_active_admins(session, actor_id=actor_id)
    user = await get_user(session=session, user_id=user_id)
    fields = data.model_fields_set
    demotes = "role" in fields and data.role != Role.ADMIN
    deactivates = "is_active" in fields and data.is_active is False
    if user.id == actor_id and (
        ("role" in fields and data.role != user.role) or deactivates
    ):
        raise Conflict("Admins cannot demote or deactivate themselves")
    if demotes or deactivates:
        _keep_an_admin(admin_ids, leaving=user.id)
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


async def delete_user(*, db: Database, user_id: int, actor_id: int | None) -> None:
    """Deletes the account, by the admin `actor_id` or (None) by its owner, with
    everything of theirs: questions, logins, keys, usage. Never the last admin.

    The questions, the rows that grow without bound, go first, in batches of
    `QUESTIONS_PER_DELETE`, each its own short write transaction: on SQLite one
    transaction deleting 100,000 questions held the only write lock for most
    of a second. Each batch checks what the final transaction checks (the
    caller may delete this account now; it is not the last admin), so none is
    deleted that the deletion would refuse. Then the account goes in one
    transaction, and the rest with it (ON DELETE CASCADE).
    """
    while True:
        async with db.write() as session:
            await _check_deletion(session, user_id=user_id, actor_id=actor_id)
            batch = (
                select(Question.id)
                .where(Question.user_id == id_param(user_id))
                .limit(QUESTIONS_PER_DELETE)
                .scalar_subquery()
            )
            result = await session.execute(
                delete(Question).where(Question.id.in_(batch))
            )
        if result.rowcount < QUESTIONS_PER_DELETE:  # type: ignore[attr-defined]
            break
    async with db.write() as session:
        await _check_deletion(session, user_id=user_id, actor_id=actor_id)
        result = await session.execute(delete(User).where(User.id == id_param(user_id)))
        if result.rowcount == 0:  # type: ignore[attr-defined]
            raise NotFound("User not found")


async def _check_deletion(
    session: AsyncSession, *, user_id: int, actor_id: int | None
) -> None:
    admin_ids = await _lock_active_admins(session, actor_id=actor_id)
    _keep_an_admin(admin_ids, leaving=user_id)


async def list_users(
    *, session: AsyncSession, q: str | None, limit: int, offset: int
) -> tuple[Sequence[User], int]:
    query = select(User)
    if q:
        escaped = (
            canonical(q).replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        )
        query = query.where(User.username_canonical.like(f"%{escaped}%", escape="\\"))
    total = await session.scalar(select(func.count()).select_from(query.subquery()))
    rows = await session.scalars(
        query.order_by(User.id.desc()).limit(limit).offset(offset)
    )
    return rows.all(), total or 0


async def ensure_admin(*, db: Database, username: str, password: str) -> User | None:
    """Create the first admin unless an admin exists; returns it when created.

    Checked before hashing, so that a start with an admin already there (every
    start but the first) spends no Argon2; checked again in the write, where
    another worker may have created it meanwhile.
    """
    async with db.read() as session:
        if await _admin_exists(session):
            return None
    password_hash = await hash_password(password)
    async with db.write() as session:
        if await _admin_exists(session):
            return None
        return await add_user(
            session=session,
            username=username,
            password_hash=password_hash,
            role=Role.ADMIN,
        )


async def _admin_exists(session: AsyncSession) -> bool:
    query = select(User.id).where(User.role == Role.ADMIN).limit(1)
    return await session.scalar(query) is not None
