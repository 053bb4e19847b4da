from datetime import datetime

from sqlalchemy import ForeignKey, String
from sqlalchemy.orm import Mapped, mapped_column

from askgate.db import Base, UTCDateTime, utcnow


class ApiKey(Base):
    """A personal API key, stored only as its SHA-256 (the key itself is shown
    once, when created) with its first characters for display.

    Revoking deletes the row: nothing that could match the key remains, and the
    questions it asked keep their user (their `api_key_id` becomes null).
    Triggers bump the auth epoch when a key is deleted or one of the columns
    that decide who it authenticates changes (migration 20261203_api_keys), so
    every process's cached key ends at once; `last_used_at` bumps nothing.
    """

    __tablename__ = "api_keys"
    # AUTOINCREMENT: an id is never reused, so a question's `api_key_id` never
    # names a later key.
    __table_args__ = {"sqlite_autoincrement": True}

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), index=True
    )
    name: Mapped[str] = mapped_column(String(100))
    prefix: Mapped[str] = mapped_column(String(8))
    digest: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    last_used_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    def __repr__(self) -> str:  # never the digest, even in a debugger or a log
        return f"ApiKey(id={self.id!r}, user_id={self.user_id!r}, name={self.name!r})"
