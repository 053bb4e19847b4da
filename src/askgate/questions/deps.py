from typing import Annotated

from fastapi import Depends, Path

from askgate.auth.deps import CallerOrKey
from askgate.db import SessionDep
from askgate.errors import NotFound
from askgate.questions.models import Question
from askgate.questions.service import get_question

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
