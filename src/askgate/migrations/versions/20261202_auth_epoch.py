"""Auth epoch: one counter that every change to who may call askgate bumps.

Each process caches callers (user and login) and trusts a cached entry only while
the epoch it was loaded at is still the current one. Triggers bump the epoch on
every UPDATE or DELETE of `users` (role, active flag, password, deletion...) and of
`auth_sessions` (logout, password change, refresh-token reuse), so no code path can
change a caller without invalidating the caches of every worker and instance.

Revision ID: 20261202_auth_epoch
Revises: 20261125_token_quota
Create Date: 2026-12-02
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "20261202_auth_epoch"
down_revision: str | None = "20261125_token_quota"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

WATCHED = ("users", "auth_sessions")
EVENTS = ("update", "delete")
BUMP = "UPDATE auth_epoch SET value = value + 1 WHERE id = 1"


def _trigger(table: str, event: str) -> str:
    return f"trg_{table}_{event}_auth_epoch"


def upgrade() -> None:
    op.create_table(
        "auth_epoch",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("value", sa.BigInteger(), nullable=False),
        sa.CheckConstraint("id = 1", name=op.f("ck_auth_epoch_single_row")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_auth_epoch")),
    )
    op.execute("INSERT INTO auth_epoch (id, value) VALUES (1, 0)")
    if op.get_bind().dialect.name == "postgresql":
        op.execute(
            "CREATE FUNCTION askgate_bump_auth_epoch() RETURNS trigger "
            f"LANGUAGE plpgsql AS $$ BEGIN {BUMP}; RETURN NULL; END $$"
        )
        for table in WATCHED:
            for event in EVENTS:
                # Per statement: one bump however many rows it changed.
                op.execute(
                    f"CREATE TRIGGER {_trigger(table, event)} AFTER {event.upper()} "
                    f"ON {table} FOR EACH STATEMENT "
                    "EXECUTE FUNCTION askgate_bump_auth_epoch()"
                )
    else:
        for table in WATCHED:
            for event in EVENTS:
                op.execute(
                    f"CREATE TRIGGER {_trigger(table, event)} AFTER {event.upper()} "
                    f"ON {table} BEGIN {BUMP}; END"
                )


def downgrade() -> None:
    is_postgresql = op.get_bind().dialect.name == "postgresql"
    for table in WATCHED:
        for event in EVENTS:
            suffix = f" ON {table}" if is_postgresql else ""
            op.execute(f"DROP TRIGGER {_trigger(table, event)}{suffix}")
    if is_postgresql:
        op.execute("DROP FUNCTION askgate_bump_auth_epoch()")
    op.drop_table("auth_epoch")
