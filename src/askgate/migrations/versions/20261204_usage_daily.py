"""The daily usage rollups, filled from the questions stored so far.

`usage_daily` holds one row per user, UTC day and public model name, and
`usage_user_daily` one per user and UTC day (all models together, for the
leaderboard), both kept by the transaction that stores each question
(askgate.usage.rollup). The upgrade fills them with the same counts from
`questions` (INSERT ... SELECT ... GROUP BY), so existing installs see their
history; questions deleted before it are not counted, as they are not there to
count. The downgrade drops both tables.

On SQLite the tables are WITHOUT ROWID: their rows are stored in primary-key
order (user first), so one user's days are one range.

Revision ID: 20261204_usage_daily
Revises: 20261203_api_keys
Create Date: 2026-12-04
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "20261204_usage_daily"
down_revision: str | None = "20261203_api_keys"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# A question counts on the UTC day of its created_at (stored in UTC on both).
DAY = {
    "postgresql": "CAST(created_at AT TIME ZONE 'UTC' AS DATE)",
    "sqlite": "date(created_at)",
}
BACKFILL = """
INSERT INTO usage_daily (user_id, day, model, questions, failed, prompt_tokens,
                         completion_tokens)
SELECT user_id, {day}, model, count(*),
       sum(CASE WHEN status = 'failed' THEN 1 ELSE 0 END),
       coalesce(sum(prompt_tokens), 0), coalesce(sum(completion_tokens), 0)
FROM questions
GROUP BY user_id, {day}, model
"""
BACKFILL_USERS = """
INSERT INTO usage_user_daily (user_id, day, questions, failed, prompt_tokens,
                              completion_tokens)
SELECT user_id, day, sum(questions), sum(failed), sum(prompt_tokens),
       sum(completion_tokens)
FROM usage_daily
GROUP BY user_id, day
"""


def _counts() -> list[sa.Column[int]]:
    return [
        sa.Column("questions", sa.Integer(), nullable=False),
        sa.Column("failed", sa.Integer(), nullable=False),
        sa.Column("prompt_tokens", sa.BigInteger(), nullable=False),
        sa.Column("completion_tokens", sa.BigInteger(), nullable=False),
    ]


def _user_key(table: str) -> sa.ForeignKeyConstraint:
    return sa.ForeignKeyConstraint(
        ["user_id"],
        ["users.id"],
        name=op.f(f"fk_{table}_user_id_users"),
        ondelete="CASCADE",
    )


def upgrade() -> None:
    op.create_table(
        "usage_daily",
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("model", sa.String(length=200), nullable=False),
        *_counts(),
        _user_key("usage_daily"),
        sa.PrimaryKeyConstraint("user_id", "day", "model", name=op.f("pk_usage_daily")),
        sqlite_with_rowid=False,
    )
    op.create_index(
        op.f("ix_usage_daily_day"), "usage_daily", ["day", "user_id", "model"]
    )
    op.create_table(
        "usage_user_daily",
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("day", sa.Date(), nullable=False),
        *_counts(),
        _user_key("usage_user_daily"),
        sa.PrimaryKeyConstraint("user_id", "day", name=op.f("pk_usage_user_daily")),
        sqlite_with_rowid=False,
    )
    op.execute(BACKFILL.format(day=DAY[op.get_bind().dialect.name]))
    op.execute(BACKFILL_USERS)


def downgrade() -> None:
    op.drop_table("usage_user_daily")
    op.drop_index(op.f("ix_usage_daily_day"), table_name="usage_daily")
    op.drop_table("usage_daily")
