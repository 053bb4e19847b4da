from datetime import date

from sqlalchemy import BigInteger, Date, ForeignKey, Index, String
from sqlalchemy.orm import Mapped, mapped_column

from askgate.db import Base


class _Counts:
    """What a rollup row adds up. `questions` counts every stored question
    (answered, failed, cancelled); `failed` those of them that failed. The
    token columns add up what each question recorded (null: 0); the total is
    their sum, computed when read."""

    questions: Mapped[int]
    failed: Mapped[int]
    # BIGINT: a day's sum of tokens may pass 2**31.
    prompt_tokens: Mapped[int] = mapped_column(BigInteger)
    completion_tokens: Mapped[int] = mapped_column(BigInteger)


class UsageDaily(_Counts, Base):
    """What one user asked one model on one UTC day: the rollup that the usage
    routes read instead of scanning `questions` (askgate.usage.rollup keeps it)."""

    __tablename__ = "usage_daily"
    __table_args__ = (
        # The admin's routes: a range of days across users, in this order.
        # (SQLite: the same entries as an index on `day` alone, which would
        # hold the primary key's columns too.)
        Index("ix_usage_daily_day", "day", "user_id", "model"),
        # SQLite: the rows live in the primary key's order, so that one user's
        # days (and a deleted user's cascade) are one range of the table.
        {"sqlite_with_rowid": False},
    )

    user_id: Mapped[int] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), primary_key=True
    )
    day: Mapped[date] = mapped_column(Date, primary_key=True)
    model: Mapped[str] = mapped_column(String(200), primary_key=True)


class UserUsageDaily(_Counts, Base):
    """The same per user and UTC day, all models together: what the leaderboard
    adds up, a row for each of a user's days rather than one per model too
    (with three models in use, a third of the rows to read)."""

    __tablename__ = "usage_user_daily"
    __table_args__ = ({"sqlite_with_rowid": False},)

    user_id: Mapped[int] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), primary_key=True
    )
    day: Mapped[date] = mapped_column(Date, primary_key=True)
