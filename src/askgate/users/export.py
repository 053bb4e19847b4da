"""Everything askgate holds about one user, as one JSON document
(`GET /users/me/export`).

The account (never its password hash), its logins (when made, until when,
whether ended; never a token or its hash), its API keys' metadata (never their
digests), its usage (the daily rollups per model, and the daily quota counters)
and every question with its answer and conversation.

The questions are what grows without bound, so they are streamed: read
`QUESTIONS_PER_PAGE` at a time, oldest first, each page in its own short read
transaction (keyset on the id, so each page is one index range), serialized and
sent before the next is read. A user with 100,000 questions costs the memory of
one page, and no transaction or pooled connection stays open while a slow
client reads. The rest is small (a row per day, key or login) and read at once,
before the response starts, so that a failure there is still a clean error.

What the pages show is each page's moment: a question stored during the export
appears at the end, one deleted meanwhile may be missing; none appears twice.
"""

from collections.abc import AsyncIterator, Sequence
from datetime import date, datetime

from pydantic import Field
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from askgate.api_keys.models import ApiKey
from askgate.api_keys.schemas import ApiKeyRead
from askgate.auth.models import AuthSession
from askgate.db import Database, utcnow
from askgate.questions.models import Question
from askgate.questions.schemas import QuestionDetail
from askgate.quota import service as quota_service
from askgate.schemas import Schema
from askgate.usage import service as usage_service
from askgate.usage.schemas import UsageDayRead
from askgate.users.schemas import AdminUserRead
from askgate.users.service import get_user

QUESTIONS_PER_PAGE = 500
# Every day a usage rollup can have.
ALL_TIME = usage_service.Window(date.min, date.max)
MEDIA_TYPE = "application/json"


class AccountRead(AdminUserRead):
    updated_at: datetime


class LoginRead(Schema):
    """One login: the family of refresh tokens that rotated from it."""

    created_at: datetime
    expires_at: datetime
    revoked_at: datetime | None = Field(description="When it was ended, if it was")


class QuotaDayRead(Schema):
    """The daily token quota's counter on one UTC day."""

    day: date
    used_tokens: int
    reserved_tokens: int = Field(description="Held by questions in flight then")


class UsageExport(Schema):
    daily: list[UsageDayRead] = Field(description="Per UTC day and model")
    quota: list[QuotaDayRead] = Field(description="Per UTC day")


class AccountExport(Schema):
    """The whole document (for the API docs and the tests: it is streamed)."""

    exported_at: datetime
    account: AccountRead
    logins: list[LoginRead]
    api_keys: list[ApiKeyRead]
    usage: UsageExport
    questions: list[QuestionDetail] = Field(description="Oldest first")


class _Head(Schema):
    """Everything but the questions, which follow it in the stream."""

    exported_at: datetime
    account: AccountRead
    logins: list[LoginRead]
    api_keys: list[ApiKeyRead]
    usage: UsageExport


async def export(*, db: Database, user_id: int, max_age: float) -> AsyncIterator[bytes]:
    """The document in chunks: everything but the questions is read now (a
    NotFound if the user is gone), the questions page by page as they are sent."""
    async with db.read() as session:
        head = await _head(session, user_id, max_age)
    opening = head.model_dump_json().encode()
    return _document(db, user_id, opening)


async def _head(session: AsyncSession, user_id: int, max_age: float) -> _Head:
    user = await get_user(session=session, user_id=user_id)
    logins = await session.scalars(
        select(AuthSession)
        .where(AuthSession.user_id == user_id)
        .order_by(AuthSession.created_at)
    )
    keys = await session.scalars(
        select(ApiKey).where(ApiKey.user_id == user_id).order_by(ApiKey.id)
    )
    daily = await usage_service.daily_for_user(
        session=session, user_id=user_id, window=ALL_TIME
    )
    quota = await quota_service.counters_by_day(
        session=session, user_id=user_id, max_age=max_age
    )
    return _Head(
        exported_at=utcnow(),
        account=AccountRead.model_validate(user),
        logins=[LoginRead.model_validate(login) for login in logins],
        api_keys=[ApiKeyRead.model_validate(key) for key in keys],
        usage=UsageExport(
            daily=[UsageDayRead.model_validate(row) for row in daily],
            quota=[
                QuotaDayRead(day=day, used_tokens=used, reserved_tokens=reserved)
                for day, used, reserved in quota
            ],
        ),
    )


async def _document(db: Database, user_id: int, head: bytes) -> AsyncIterator[bytes]:
    # `{...head fields..., "questions": [q1, q2, ...]}`
    yield head[:-1] + b',"questions":['
    after = 0
    first = True
    while True:
        async with db.read() as session:
            page = await _page(session, user_id=user_id, after=after)
        if not page:
            break
        chunk = b",".join(QuestionDetail.of(q).model_dump_json().encode() for q in page)
        yield chunk if first else b"," + chunk
        first = False
        after = page[-1].id
        if len(page) < QUESTIONS_PER_PAGE:
            break
    yield b"]}"


async def _page(
    session: AsyncSession, *, user_id: int, after: int
) -> Sequence[Question]:
    # Keyset on ix_questions_user_id_id: one index range a page, however deep.
    rows = await session.scalars(
        select(Question)
        .where(Question.user_id == user_id, Question.id > after)
        .order_by(Question.id)
        .limit(QUESTIONS_PER_PAGE)
    )
    return rows.all()
