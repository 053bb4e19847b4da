from datetime import datetime
from enum import StrEnum

from sqlalchemy import BigInteger, Enum, Index, String
from sqlalchemy.orm import Mapped, mapped_column, validates

from askgate.db import Base, UTCDateTime, utcnow
from askgate.users.names import canonical


class Role(StrEnum):
    USER = "user"
    ADMIN = "admin"


class User(Base):
    __tablename__ = "users"
    # AUTOINCREMENT: SQLite would otherwise reuse the highest deleted id, and a
    # deleted user's still-unexpired token would then name the new account.
    __table_args__ = {"sqlite_autoincrement": True}

    id: Mapped[int] = mapped_column(primary_key=True)
    # As typed, for display; every lookup and uniqueness check uses the canonical
    # forms, which the validators below keep in step (names.py says why).
    username: Mapped[str] = mapped_column(String(32))
    email: Mapped[str | None] = mapped_column(String(320))
    # No length: NFKC may lengthen a name (the schemas bound what gets here).
    username_canonical: Mapped[str] = mapped_column(String())
    email_canonical: Mapped[str | None] = mapped_column(String())
    password_hash: Mapped[str] = mapped_column(String(255))
    role: Mapped[Role] = mapped_column(
        Enum(
            Role,
            native_enum=False,
            length=16,
            create_constraint=True,
            name="role",
            values_callable=lambda roles: [role.value for role in roles],
        ),
        default=Role.USER,
    )
    is_active: Mapped[bool] = mapped_column(default=True)
    # Set by an admin: null follows ASKGATE_DAILY_TOKEN_QUOTA, 0 is unlimited.
    daily_token_quota: Mapped[int | None] = mapped_column(BigInteger, default=None)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(
        UTCDateTime, default=utcnow, onupdate=utcnow
    )

    # Set with the name on every ORM path (constructor or attribute), so
    # none can forget it; only a bulk UPDATE statement would bypass them, and
    # no code sets names that way.
    @validates("username")
    def _set_username(self, _key: str, username: str) -> str:
        self.username_canonical = canonical(username)
        return username

    @validates("email")
    def _set_email(self, _key: str, email: str | None) -> str | None:
        self.email_canonical = None if email is None else canonical(email)
        return email

    def __repr__(self) -> str:  # never show the hash, even in a debugger or a log
        return f"User(id={self.id!r}, username={self.username!r}, role={self.role!r})"


# Unique indexes rather than constraints: SQLite can add those to a live table.
Index("uq_users_username_canonical", User.username_canonical, unique=True)
Index("uq_users_email_canonical", User.email_canonical, unique=True)
