from datetime import date

from sqlalchemy import BigInteger, Date, ForeignKey
from sqlalchemy.orm import Mapped, mapped_column

from askgate.db import Base


class TokenUsage(Base):
    """One user's tokens on one UTC day: what finished questions cost, and the
    row whose lock decides every reservation of that user and day.

    `used` changes only through atomic UPDATEs, so concurrent requests and worker
    processes cannot overshoot.
    """

    __tablename__ = "token_usage"

    user_id: Mapped[int] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), primary_key=True
    )
    day: Mapped[date] = mapped_column(Date, primary_key=True)
    # BIGINT: PostgreSQL infers the type of the bound limit from these columns.
    used: Mapped[int] = mapped_column(BigInteger, default=0)


class QuotaReservation(Base):
    """The tokens held by one user's questions in flight that started in one
    time window (askgate.quota.service.WINDOW_SECONDS wide) of one UTC day.

    A window older than the longest a question can run counts no more: its
    questions have ended, and whatever they still hold was left by a process
    that died before settling. Written only under the lock on the user's
    `token_usage` row of that day, taken first.
    """

    __tablename__ = "quota_reservations"

    user_id: Mapped[int] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), primary_key=True
    )
    day: Mapped[date] = mapped_column(Date, primary_key=True)
    # floor(unix time / WINDOW_SECONDS) when the questions reserved.
    window: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    tokens: Mapped[int] = mapped_column(BigInteger, default=0)
