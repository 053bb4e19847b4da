from datetime import date

from sqlalchemy import BigInteger, Date, ForeignKey
from sqlalchemy.orm import Mapped, mapped_column

from askgate.db import Base


class TokenUsage(Base):
    """One user's tokens on one UTC day: the authoritative quota counter.

    `reserved` holds the tokens of questions still in flight (their upper bound);
    `used` what finished questions actually cost. Both change only through atomic
    UPDATEs, so concurrent requests and worker processes cannot overshoot.
    """

    __tablename__ = "token_usage"

    user_id: Mapped[int] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), primary_key=True
    )
    day: Mapped[date] = mapped_column(Date, primary_key=True)
    # BIGINT: PostgreSQL infers the type of the bound limit from these columns.
    reserved: Mapped[int] = mapped_column(BigInteger, default=0)
    used: Mapped[int] = mapped_column(BigInteger, default=0)
