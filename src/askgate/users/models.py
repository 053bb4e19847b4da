from datetime import datetime
from enum import StrEnum

from sqlalchemy import BigInteger, Enum, Index, String, func
from sqlalchemy.orm import Mapped, mapped_column

from askgate.db import Base, UTCDateTime, utcnow


class Role(StrEnum):
    USER = "user"
    ADMIN = "admin"


class User(Base):
    __tablename__ = "users"
    # AUTOINCREMENT: SQLite would otherwise reuse the highest deleted id, and a
    # deleted user's still-unexpired token would then name the new account.
    __table_args__ = {"sqlite_autoincrement": True}

    id: Mapped[int] = mapped_column(primary_key=True)
    username: Mapped[str] = mapped_column(String(32))
    email: Mapped[str | None] = mapped_column(String(320))
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

    def __repr__(self) -> str:  # never show the hash, even in a debugger or a log
        return f"User(id={self.id!r}, username={self.username!r}, role={self.role!r})"


# Unique ignoring case, portable to PostgreSQL (expression indexes on both).
Index("uq_users_username_lower", func.lower(User.username), unique=True)
Index("uq_users_email_lower", func.lower(User.email), unique=True)
