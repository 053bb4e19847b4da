"""Questions record the public name of the model asked, and the upstream's own.

`questions.model` now holds the public name of the model asked (the models file's
`name`, or ASKGATE_LLM_MODEL without a file); the new `upstream_model` holds the
model the upstream that answered reported, NULL when none answered.

Existing rows keep their `model`: the model their upstream reported, or the
configured ASKGATE_LLM_MODEL when none answered. Before the models file, that is
the name of the one model askgate offered, the closest record there is of the
public name (a migration cannot know a models file, nor which default it names).
Answered ones get the same value as `upstream_model`; failed and cancelled ones
keep it NULL, as nothing says that an upstream answered them.

The downgrade puts the upstream's name back in `model` where there is one, as
before this revision, then drops the column (a plain ALTER TABLE ... DROP
COLUMN: batch mode would rebuild `questions` and lose its AUTOINCREMENT).

Revision ID: 20261203_question_models
Revises: 20261202_canonical_names
Create Date: 2026-12-03
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "20261203_question_models"
down_revision: str | None = "20261202_canonical_names"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

questions = sa.table(
    "questions",
    sa.column("model", sa.String()),
    sa.column("upstream_model", sa.String()),
    sa.column("status", sa.String()),
)


def upgrade() -> None:
    op.add_column(
        "questions", sa.Column("upstream_model", sa.String(length=200), nullable=True)
    )
    op.execute(
        questions.update()
        .where(questions.c.status == "answered")
        .values(upstream_model=questions.c.model)
    )


def downgrade() -> None:
    op.execute(
        questions.update()
        .where(questions.c.upstream_model.is_not(None))
        .values(model=questions.c.upstream_model)
    )
    op.drop_column("questions", "upstream_model")
