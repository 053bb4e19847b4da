"""Personal API keys, and which key asked each question.

A key is stored only as its SHA-256, with its first 8 characters for display.
Like `users` and `auth_sessions` (20261202_auth_epoch), `api_keys` bumps the auth
epoch when a row is deleted (a revoked key) or when a column that decides whom a
key authenticates changes, so that every process's cached key ends at once. Not
on `last_used_at` (nor `name`): the throttled last-use writes would otherwise
empty every cache every minute.

SQLite cannot add a foreign key to a table, and one added inline with its
column is not seen by reflection (so `alembic check` would never agree): there,
`questions` is rebuilt (batch mode: copied, its AUTOINCREMENT, CHECK and indexes
kept; no other table references it). That copies every question once, in the
upgrade and in the downgrade.

Revision ID: 20261203_api_keys
Revises: 20261203_openai_api
Create Date: 2026-12-03
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "20261203_api_keys"
down_revision: str | None = "20261203_openai_api"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# What the caller cache holds of a key (askgate.auth.cache): its owner and
# validity. `id` never changes.
AUTH_COLUMNS = "user_id, digest, expires_at"
EVENTS = {"update": f"UPDATE OF {AUTH_COLUMNS}", "delete": "DELETE"}
BUMP = "UPDATE auth_epoch SET value = value + 1 WHERE id = 1"


def _trigger(event: str) -> str:
    return f"trg_api_keys_{event}_auth_epoch"


def upgrade() -> None:
    is_postgresql = op.get_bind().dialect.name == "postgresql"
    op.create_table(
        "api_keys",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("prefix", sa.String(length=8), nullable=False),
        sa.Column("digest", sa.String(length=64), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_used_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["user_id"],
            ["users.id"],
            name=op.f("fk_api_keys_user_id_users"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_api_keys")),
        sa.UniqueConstraint("digest", name=op.f("uq_api_keys_digest")),
        sqlite_autoincrement=True,
    )
    op.create_index(op.f("ix_api_keys_user_id"), "api_keys", ["user_id"])
    for event, when in EVENTS.items():
        if is_postgresql:
            # Per statement, with the function of 20261202_auth_epoch.
            op.execute(
                f"CREATE TRIGGER {_trigger(event)} AFTER {when} ON api_keys "
                "FOR EACH STATEMENT EXECUTE FUNCTION askgate_bump_auth_epoch()"
            )
        else:
            op.execute(
                f"CREATE TRIGGER {_trigger(event)} AFTER {when} ON api_keys "
                f"BEGIN {BUMP}; END"
            )
    if is_postgresql:
        op.add_column("questions", sa.Column("api_key_id", sa.Integer(), nullable=True))
        op.create_foreign_key(
            op.f("fk_questions_api_key_id_api_keys"),
            "questions",
            "api_keys",
            ["api_key_id"],
            ["id"],
            ondelete="SET NULL",
        )
    else:
        with op.batch_alter_table(
            "questions", recreate="always", table_kwargs={"sqlite_autoincrement": True}
        ) as batch:
            batch.add_column(sa.Column("api_key_id", sa.Integer(), nullable=True))
            batch.create_foreign_key(
                op.f("fk_questions_api_key_id_api_keys"),
                "api_keys",
                ["api_key_id"],
                ["id"],
                ondelete="SET NULL",
            )
    op.create_index("ix_questions_api_key_id", "questions", ["api_key_id"])


def downgrade() -> None:
    is_postgresql = op.get_bind().dialect.name == "postgresql"
    op.drop_index("ix_questions_api_key_id", table_name="questions")
    if is_postgresql:
        op.drop_column("questions", "api_key_id")  # its foreign key with it
    else:
        with op.batch_alter_table(
            "questions", recreate="always", table_kwargs={"sqlite_autoincrement": True}
        ) as batch:
            batch.drop_constraint(
                op.f("fk_questions_api_key_id_api_keys"), type_="foreignkey"
            )
            batch.drop_column("api_key_id")
    for event in EVENTS:
        suffix = " ON api_keys" if is_postgresql else ""
        op.execute(f"DROP TRIGGER {_trigger(event)}{suffix}")
    op.drop_index(op.f("ix_api_keys_user_id"), table_name="api_keys")
    op.drop_table("api_keys")
