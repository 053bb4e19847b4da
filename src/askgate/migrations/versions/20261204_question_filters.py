"""The history's filters: the text `q` searches, and indexes for the others.

`questions.search_text` holds the question and its answer, NFKC + casefolded in
Python (askgate.questions.history), filled here for every existing question, a
thousand at a time. As in 20261202_canonical_names, no batch mode on SQLite
(a rebuild copies every question): there the column keeps a DEFAULT '' that no
insert uses (the ledger always writes it); a question stored without it could
not be found by `q`.

Three indexes let `status`, `model`, `since` and `until` skip the questions
they do not keep (scripts/question_filters_bench.py measures them).

Revision ID: 20261204_question_filters
Revises: 20261204_usage_daily
Create Date: 2026-12-04
"""

import unicodedata
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "20261204_question_filters"
down_revision: str | None = "20261204_usage_daily"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

BATCH = 1000
INDEXES = {
    "ix_questions_user_id_status_id": ["user_id", "status", "id"],
    "ix_questions_user_id_model_id": ["user_id", "model", "id"],
    "ix_questions_user_id_created_at_id": ["user_id", "created_at", "id"],
}

questions = sa.table(
    "questions",
    sa.column("id", sa.Integer()),
    sa.column("content", sa.Text()),
    sa.column("answer", sa.Text()),
    sa.column("search_text", sa.Text()),
)


def _searchable(content: str, answer: str | None) -> str:
    # A frozen copy of askgate.questions.history.searchable, as of this
    # revision: a migration must compute what it computed when it was written.
    text = content if answer is None else content + "\n" + answer
    return unicodedata.normalize("NFKC", text).casefold()


def _fill(bind: sa.Connection) -> None:
    last_id = 0
    while True:
        rows = bind.execute(
            sa.select(questions.c.id, questions.c.content, questions.c.answer)
            .where(questions.c.id > last_id)
            .order_by(questions.c.id)
            .limit(BATCH)
        ).all()
        if not rows:
            return
        bind.execute(
            questions.update()
            .where(questions.c.id == sa.bindparam("question_id"))
            .values(search_text=sa.bindparam("text")),
            [
                {"question_id": row.id, "text": _searchable(row.content, row.answer)}
                for row in rows
            ],
        )
        last_id = rows[-1].id


def upgrade() -> None:
    bind = op.get_bind()
    is_sqlite = bind.dialect.name == "sqlite"
    op.add_column(
        "questions",
        sa.Column(
            "search_text",
            sa.Text(),
            nullable=not is_sqlite,
            server_default="" if is_sqlite else None,
        ),
    )
    _fill(bind)
    if not is_sqlite:
        op.alter_column("questions", "search_text", nullable=False)
    for name, columns in INDEXES.items():
        op.create_index(name, "questions", columns)


def downgrade() -> None:
    for name in INDEXES:
        op.drop_index(name, table_name="questions")
    # Plain ALTER TABLE ... DROP COLUMN (SQLite 3.35+): see the module docstring.
    op.drop_column("questions", "search_text")
