"""Canonical usernames and emails: NFKC + casefold, computed in Python, unique.

Replaces the unique `lower(username)` / `lower(email)` indexes: PostgreSQL's
`lower()` and Python's disagree ("İ"), and neither folds compatibility forms
("ｂob" is "bob"). The new columns are filled here for every existing account; if
two accounts turn out to share a canonical name the upgrade stops, changing
nothing, and names their ids, so that an operator decides which one to rename.

No batch mode on SQLite: rebuilding `users` would drop its auth-epoch triggers and
its AUTOINCREMENT, and (foreign keys being on) the implicit DELETE of the old table
would cascade to every question and login. SQLite cannot add a NOT NULL column
without a default, so there `username_canonical` keeps a DEFAULT '' that no insert
uses (the model always sets it); an account created without one could not log in.

The downgrade recreates the `lower()` indexes; it fails if accounts created since
collide under `lower()` only (for example "İ" on PostgreSQL).

Revision ID: 20261202_canonical_names
Revises: 20261202_auth_epoch
Create Date: 2026-12-02
"""

import unicodedata
from collections import defaultdict
from collections.abc import Iterable, Sequence

import sqlalchemy as sa
from alembic import op

from askgate.migrate import MigrationRefused

revision: str = "20261202_canonical_names"
down_revision: str | None = "20261202_auth_epoch"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

users = sa.table(
    "users",
    sa.column("id", sa.Integer()),
    sa.column("username", sa.String()),
    sa.column("email", sa.String()),
    sa.column("username_canonical", sa.String()),
    sa.column("email_canonical", sa.String()),
)


def _canonical(name: str) -> str:
    # A frozen copy of askgate.users.names.canonical, as of this revision: a
    # migration must compute what it computed when it was written.
    return unicodedata.normalize("NFKC", name).casefold()


def _collisions(label: str, rows: Iterable[tuple[int, str | None]]) -> list[str]:
    ids_by_form: defaultdict[str, list[int]] = defaultdict(list)
    for user_id, name in rows:
        if name is not None:
            ids_by_form[_canonical(name)].append(user_id)
    return [
        f"{label} of users {', '.join(map(str, sorted(ids)))}"
        for ids in ids_by_form.values()
        if len(ids) > 1
    ]


def upgrade() -> None:
    bind = op.get_bind()
    rows = bind.execute(sa.select(users.c.id, users.c.username, users.c.email)).all()
    collisions = _collisions("the usernames", [(r.id, r.username) for r in rows])
    collisions += _collisions("the emails", [(r.id, r.email) for r in rows])
    if collisions:
        raise MigrationRefused(
            "cannot make usernames and emails unique ignoring case and Unicode "
            f"forms: {'; '.join(collisions)} are the same once normalized. Rename "
            "all but one of each (or clear the duplicate email), then upgrade again."
        )

    op.drop_index("uq_users_username_lower", table_name="users")
    op.drop_index("uq_users_email_lower", table_name="users")
    is_sqlite = bind.dialect.name == "sqlite"
    op.add_column(
        "users",
        sa.Column(
            "username_canonical",
            sa.String(),
            nullable=not is_sqlite,
            server_default="" if is_sqlite else None,
        ),
    )
    op.add_column("users", sa.Column("email_canonical", sa.String(), nullable=True))
    if rows:
        bind.execute(
            users.update()
            .where(users.c.id == sa.bindparam("user_id"))
            .values(
                username_canonical=sa.bindparam("username_form"),
                email_canonical=sa.bindparam("email_form"),
            ),
            [
                {
                    "user_id": row.id,
                    "username_form": _canonical(row.username),
                    "email_form": None if row.email is None else _canonical(row.email),
                }
                for row in rows
            ],
        )
    if not is_sqlite:
        op.alter_column("users", "username_canonical", nullable=False)
    op.create_index(
        "uq_users_username_canonical", "users", ["username_canonical"], unique=True
    )
    op.create_index(
        "uq_users_email_canonical", "users", ["email_canonical"], unique=True
    )


def downgrade() -> None:
    op.drop_index("uq_users_email_canonical", table_name="users")
    op.drop_index("uq_users_username_canonical", table_name="users")
    # Plain ALTER TABLE ... DROP COLUMN (SQLite 3.35+): see the module docstring.
    op.drop_column("users", "email_canonical")
    op.drop_column("users", "username_canonical")
    op.create_index(
        "uq_users_username_lower", "users", [sa.text("lower(username)")], unique=True
    )
    op.create_index(
        "uq_users_email_lower", "users", [sa.text("lower(email)")], unique=True
    )
