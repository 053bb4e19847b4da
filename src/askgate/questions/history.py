"""Reading the history: a user's questions and the admin's list, filtered.

The filters combine with AND, and with either list's paging:
- `q`: a piece of the question or of its answer, ignoring case and Unicode
  compatibility forms ("ÉTÉ" finds "été", "ﬁle" finds "file"). Both sides are
  compared in canonical form (NFKC + casefold, askgate.users.names.canonical),
  computed in Python: SQLite's lower() and LIKE fold ASCII only, PostgreSQL's
  ILIKE per locale, so neither could promise the same answer on both backends.
  Each question is stored with that form of its text (`questions.search_text`,
  written with it: see `searchable`), which the search reads; it costs about
  the size of the question and answer again. Every character of `q` is taken
  literally (`%`, `_` and `\\` too).
- `since` (inclusive) and `until` (exclusive): `created_at`, in UTC.
- `status`, `model`: equal to the stored value (`model`: the public name asked,
  which a question keeps after its model leaves the models file).

What it costs: one read (the admin's list: two, with the count). The list
walks the user's questions newest first (ix_questions_user_id_id, or the
`status` and `model` indexes) and stops at `limit` matches; `since` and `until`
first find their ids (`_window_ids`). A `q` that matches rarely reads the text
of every question in the range: at 100,000 questions for one user, about a
second (scripts/question_filters_bench.py has the figures).
"""

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import ColumnElement, ScalarSelect, Select, func, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import aliased

from askgate.db import id_param
from askgate.questions.models import Question, QuestionStatus
from askgate.users.names import canonical

# Between the question and the answer in `search_text`. A `q` spanning both
# ("...?\nThe answer") matches too; it is harmless, and cheaper than two columns.
_SEPARATOR = "\n"


def searchable(content: str, answer: str | None) -> str:
    """What `q` is matched against: the question and its answer, canonical."""
    return canonical(content if answer is None else content + _SEPARATOR + answer)


@dataclass(frozen=True, slots=True)
class QuestionFilters:
    q: str | None = None
    since: datetime | None = None  # aware (UTC)
    until: datetime | None = None  # aware (UTC)
    status: QuestionStatus | None = None
    model: str | None = None

    def apply(
        self, query: Select[Question], *, user_id: int | None, dialect: str
    ) -> Select[Question]:
        """`query` narrowed to the questions that match, of `user_id` if given,
        for the database `dialect` (its name)."""
        if user_id is not None:
            query = query.where(Question.user_id == id_param(user_id))
        if self.q:
            query = query.where(_holds(canonical(self.q), dialect))
        if self.since is not None:
            query = query.where(Question.created_at >= self.since)
        if self.until is not None:
            query = query.where(Question.created_at < self.until)
        if user_id is not None:
            query = query.where(*self._window_ids(user_id))
        if self.status is not None:
            query = query.where(Question.status == self.status)
        if self.model is not None:
            query = query.where(Question.model == self.model)
        return query

    def _window_ids(self, user_id: int) -> list[ColumnElement[bool]]:
        """The ids between which the user's questions of the time window lie.

        The walk newest first along ix_questions_user_id_id cannot skip to a
        time: "since yesterday" read every older question looking for more
        matches, "a week in March" every newer one first. A question asked in
        the window lies between the first and the last id asked in it, two
        figures read off ix_questions_user_id_created_at_id alone. Ids follow
        the stores, not exactly the asking times, so `created_at` is still
        checked row by row.
        """
        bounds: list[ColumnElement[bool]] = []
        if self.since is not None:
            first = _id_bound(func.min, user_id, _BOUND.created_at >= self.since)
            bounds.append(Question.id >= first)
        if self.until is not None:
            last = _id_bound(func.max, user_id, _BOUND.created_at < self.until)
            bounds.append(Question.id <= last)
        return bounds


# The same table again, for the window's subqueries (not correlated).
_BOUND = aliased(Question, name="bound")


def _id_bound(
    edge: Callable[[ColumnElement[int]], ColumnElement[int]],
    user_id: int,
    side: ColumnElement[bool],
) -> ScalarSelect[int]:
    # `id + 0`: PostgreSQL would answer a plain min(id) or max(id) by walking
    # the primary key from one end, checking each row's user and time (91,000
    # rows for "since 30 days ago" in the bench); over an expression it reads
    # the window's range of the index instead.
    query = select(edge(_BOUND.id + 0)).where(_BOUND.user_id == id_param(user_id), side)
    return query.scalar_subquery()


def _holds(piece: str, dialect: str) -> ColumnElement[bool]:
    """Whether a question's searched text contains `piece` (canonical), every
    character of it taken literally.

    PostgreSQL: strpos(), two and a half times faster than LIKE over UTF-8
    text there; SQLite: LIKE, with its wildcards escaped (faster than instr()
    there). Both compare code points: the folding is done beforehand.
    """
    if dialect == "postgresql":
        return func.strpos(Question.search_text, piece) > 0
    return Question.search_text.contains(piece, autoescape=True)


NO_FILTERS = QuestionFilters()


def _dialect(session: AsyncSession) -> str:
    return session.get_bind().dialect.name


async def list_for_user(
    *,
    session: AsyncSession,
    user_id: int,
    limit: int,
    before_id: int | None,
    filters: QuestionFilters = NO_FILTERS,
) -> Sequence[Question]:
    query = filters.apply(select(Question), user_id=user_id, dialect=_dialect(session))
    if before_id is not None:
        query = query.where(Question.id < id_param(before_id))
    rows = await session.scalars(query.order_by(Question.id.desc()).limit(limit))
    return rows.all()


async def list_all(
    *,
    session: AsyncSession,
    user_id: int | None,
    limit: int,
    offset: int,
    filters: QuestionFilters = NO_FILTERS,
) -> tuple[Sequence[Question], int]:
    query = filters.apply(select(Question), user_id=user_id, dialect=_dialect(session))
    total = await session.scalar(select(func.count()).select_from(query.subquery()))
    rows = await session.scalars(
        query.order_by(Question.id.desc()).limit(limit).offset(offset)
    )
    return rows.all(), total or 0
