"""Daily token quota: per-user override, and the per-day usage counters.

Revision ID: 20261125_token_quota
Revises: 20261125_initial
Create Date: 2026-11-25
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "20261125_token_quota"
down_revision: str | None = "20261125_initial"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # Nullable, no default: existing users follow the global setting.
    op.add_column(
        "users", sa.Column("daily_token_quota", sa.BigInteger(), nullable=True)
    )
    op.create_table(
        "token_usage",
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("reserved", sa.BigInteger(), nullable=False),
        sa.Column("used", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(
            ["user_id"],
            ["users.id"],
            name=op.f("fk_token_usage_user_id_users"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("user_id", "day", name=op.f("pk_token_usage")),
    )


def downgrade() -> None:
    op.drop_table("token_usage")
    # A plain ALTER TABLE ... DROP COLUMN (SQLite 3.35+ and PostgreSQL): batch
    # mode would rebuild `users` and lose its lower(...) expression indexes.
    op.drop_column("users", "daily_token_quota")
