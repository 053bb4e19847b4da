"""Questions asked through the OpenAI API: their conversation and tool calls.

Both columns are nullable JSON (PostgreSQL `json`, SQLite text): a question from
POST /questions has neither, and the rows stored so far stay as they are.

Revision ID: 20261203_openai_api
Revises: 20261203_question_models
Create Date: 2026-12-03
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "20261203_openai_api"
down_revision: str | None = "20261203_question_models"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("questions", sa.Column("messages", sa.JSON(), nullable=True))
    op.add_column("questions", sa.Column("tool_calls", sa.JSON(), nullable=True))


def downgrade() -> None:
    # SQLite (3.35+) drops a column in place: no table rebuild, which would
    # lose the table's AUTOINCREMENT.
    op.drop_column("questions", "tool_calls")
    op.drop_column("questions", "messages")
