from datetime import UTC, datetime
from typing import Annotated

from fastapi import Depends, Path, Query

from askgate.auth.deps import CallerOrKey
from askgate.db import SessionDep
from askgate.errors import InvalidInput, NotFound
from askgate.questions.history import QuestionFilters
from askgate.questions.models import Question, QuestionStatus
from askgate.questions.service import get_question
from askgate.schemas import Storable

SEARCH_MAX = 200

QuestionId = Annotated[int, Path(ge=1, le=2**63 - 1, description="Question id")]


async def get_owned_question(
    question_id: QuestionId, user: CallerOrKey, session: SessionDep
) -> Question:
    """The question, for its owner or an admin (with a login: an admin's API key
    reaches only its own questions); anyone else gets the same 404 as for a
    question that does not exist, so ids reveal nothing."""
    question = await get_question(session=session, question_id=question_id)
    if question is None or (question.user_id != user.id and not user.acts_as_admin):
        raise NotFound("Question not found")
    return question


OwnedQuestion = Annotated[Question, Depends(get_owned_question)]


def _utc(name: str, value: datetime | None) -> datetime | None:
    """A naive timestamp is UTC; an aware one is moved to UTC."""
    if value is None:
        return None
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    try:
        return value.astimezone(UTC)
    except OverflowError:  # "0001-01-01T00:00:00+01:00" is before year 1 in UTC
        raise InvalidInput(f"{name} is out of range once in UTC") from None


def question_filters(
    q: Annotated[
        str | None,
        Query(
            max_length=SEARCH_MAX,
            description="Text in the question or its answer, ignoring case and "
            "Unicode compatibility forms (`ÉTÉ` finds `été`); `%`, `_` and `\\` "
            "are plain characters. At most 200 characters; empty: no filter.",
            examples=["capital of France"],
        ),
        Storable,
    ] = None,
    since: Annotated[
        datetime | None,
        Query(
            description="Only questions asked at or after this time (ISO 8601; "
            "without an offset, UTC)",
            examples=["2026-11-01T00:00:00Z"],
        ),
    ] = None,
    until: Annotated[
        datetime | None,
        Query(
            description="Only questions asked before this time (ISO 8601; without "
            "an offset, UTC). Not before `since`.",
            examples=["2026-12-01T00:00:00Z"],
        ),
    ] = None,
    status: Annotated[
        QuestionStatus | None,
        Query(description="Only questions in this state", examples=["failed"]),
    ] = None,
    model: Annotated[
        str | None,
        Query(
            min_length=1,
            max_length=200,
            description="Only questions asked of this model (its public name, as "
            "stored; a model no longer offered still finds its questions)",
            examples=["smollm2-135m-instruct"],
        ),
        Storable,
    ] = None,
) -> QuestionFilters:
    """The history filters of the query string (askgate.questions.history)."""
    start, end = _utc("since", since), _utc("until", until)
    if start is not None and end is not None and start > end:
        raise InvalidInput("since must not be after until")
    return QuestionFilters(q=q, since=start, until=end, status=status, model=model)


Filters = Annotated[QuestionFilters, Depends(question_filters)]
