"""Quota reservations per time window, so that a crashed process's stop counting
(the revision id is shorter than the file name: alembic_version holds 32 characters).

`token_usage.reserved` (one counter per user and day) becomes `quota_reservations`
(one row per user, day and minute: see askgate.quota.service). What is reserved
at the upgrade moves into the window of that moment, where it counts for the
longest a question can run and then no more: the questions that held it belong
to processes that the upgrade stopped. The downgrade adds every window's tokens
back to its day's counter.

Like 20261125_token_quota's downgrade, a plain ALTER TABLE ... DROP/ADD COLUMN
(SQLite 3.35+ and PostgreSQL), not a batch rebuild.

Revision ID: 20261205_quota_windows
Revises: 20261204_question_filters
Create Date: 2026-12-05
"""

import time
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "20261205_quota_windows"
down_revision: str | None = "20261204_question_filters"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# askgate.quota.service.WINDOW_SECONDS as of this revision.
WINDOW_SECONDS = 60

token_usage = sa.table(
    "token_usage",
    sa.column("user_id", sa.Integer()),
    sa.column("day", sa.Date()),
    sa.column("reserved", sa.BigInteger()),
)


def upgrade() -> None:
    windows = op.create_table(
        "quota_reservations",
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("window", sa.BigInteger(), nullable=False),
        sa.Column("tokens", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(
            ["user_id"],
            ["users.id"],
            name=op.f("fk_quota_reservations_user_id_users"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint(
            "user_id", "day", "window", name=op.f("pk_quota_reservations")
        ),
    )
    assert windows is not None
    now = int(time.time()) // WINDOW_SECONDS
    op.execute(
        windows.insert().from_select(
            ["user_id", "day", "window", "tokens"],
            sa.select(
                token_usage.c.user_id,
                token_usage.c.day,
                sa.literal(now, sa.BigInteger()),
                token_usage.c.reserved,
            ).where(token_usage.c.reserved > 0),
        )
    )
    op.drop_column("token_usage", "reserved")


def downgrade() -> None:
    op.add_column(
        "token_usage",
        sa.Column("reserved", sa.BigInteger(), nullable=False, server_default="0"),
    )
    windows = sa.table(
        "quota_reservations",
        sa.column("user_id", sa.Integer()),
        sa.column("day", sa.Date()),
        sa.column("tokens", sa.BigInteger()),
    )
    held = (
        sa.select(sa.func.coalesce(sa.func.sum(windows.c.tokens), 0))
        .where(
            windows.c.user_id == token_usage.c.user_id,
            windows.c.day == token_usage.c.day,
        )
        .scalar_subquery()
    )
    op.execute(token_usage.update().values(reserved=held))
    op.drop_table("quota_reservations")
