from datetime import datetime

from sqlalchemy import BigInteger, CheckConstraint, ForeignKey, String
from sqlalchemy.orm import Mapped, mapped_column

from askgate.db import Base, UTCDateTime, utcnow


class AuthSession(Base):
    """One login: the family of refresh tokens that rotate from it.

    Access tokens name their session (`sid`), so revoking it (logout, refresh-token
    reuse, password change) ends the access tokens too, not only the refresh tokens.
    """

    __tablename__ = "auth_sessions"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    user_id: Mapped[int] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), index=True
    )
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class RefreshToken(Base):
    """A refresh token, stored only as its SHA-256; valid once."""

    __tablename__ = "refresh_tokens"

    id: Mapped[int] = mapped_column(primary_key=True)
    session_id: Mapped[str] = mapped_column(
        ForeignKey("auth_sessions.id", ondelete="CASCADE"), index=True
    )
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    used_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class AuthEpoch(Base):
    """One counter, bumped by database triggers on every UPDATE or DELETE of
    `users` or `auth_sessions` (migration 20261202_auth_epoch), and on a revoked
    key or a change of whom a key authenticates in `api_keys` (20261203_api_keys).

    Each process caches its callers and trusts an entry only while the epoch it
    was loaded at is still current: a logout, password change, deactivation, role
    change, deletion or revoked key anywhere ends the cached access at once
    everywhere.
    """

    __tablename__ = "auth_epoch"
    __table_args__ = (CheckConstraint("id = 1", name="single_row"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    value: Mapped[int] = mapped_column(BigInteger)
