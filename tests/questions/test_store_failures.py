"""Whatever fails while a question is stored, the client gets a 502 or an `error`
event (never a 500 or a cut stream), and the question is stored as failed or, if
even that fails, its reservation is released.

The database refuses the writes through a trigger: a real failure of the real
statement, on SQLite and on PostgreSQL.
"""

import logging
from typing import Any

import httpx
import pytest
from sqlalchemy import text

from askgate.config import Settings
from askgate.db import Database
from askgate.questions.service import STORE_FAILED
from tests.fake_upstream import answer_for
from tests.postgres_server import (
    BACKENDS,
    postgres_server,
    postgres_url,
    with_database,
)
from tests.test_quota import ask, parse_events, usage

__all__ = ["postgres_server", "postgres_url"]  # fixtures used through `with_database`

CONTENT = "my private question 5d1e"
# What the fake upstream reports: a token per word of the question and the answer.
CONTENT_COST = len(CONTENT.split()) + len(answer_for(CONTENT).split())


@pytest.fixture(params=BACKENDS)
def settings(settings: Settings, request: pytest.FixtureRequest) -> Settings:
    settings = with_database(settings, request)
    settings.daily_token_quota = 10_000
    return settings


async def refuse_questions(db: Database, *statuses: str) -> None:
    """Make the database refuse to store a question with one of `statuses`."""
    listed = ", ".join(f"'{status}'" for status in statuses)
    async with db.write() as session:
        if session.get_bind().dialect.name == "sqlite":
            await session.execute(
                text(
                    "CREATE TRIGGER refuse_questions BEFORE INSERT ON questions "
                    f"WHEN NEW.status IN ({listed}) "
                    "BEGIN SELECT RAISE(ABORT, 'refused by the test'); END"
                )
            )
            return
        await session.execute(
            text(
                "CREATE FUNCTION refuse_questions() RETURNS trigger LANGUAGE plpgsql "
                "AS $$ BEGIN RAISE EXCEPTION 'refused by the test'; END $$"
            )
        )
        await session.execute(
            text(
                "CREATE TRIGGER refuse_questions BEFORE INSERT ON questions "
                f"FOR EACH ROW WHEN (NEW.status IN ({listed})) "
                "EXECUTE FUNCTION refuse_questions()"
            )
        )


async def _failure(
    client: httpx.AsyncClient, headers: dict[str, str], *, stream: bool
) -> str:
    """The detail the client was given for a question that could not be stored."""
    response = await ask(
        client, headers, max_tokens=100, content=CONTENT, stream=stream
    )
    if stream:
        assert response.status_code == 200
        events = parse_events(response.text)
        deltas = len(answer_for(CONTENT).split())
        assert [e["type"] for e in events] == ["delta"] * deltas + ["error"], events
        detail: str = events[-1]["detail"]
        return detail
    assert response.status_code == 502, response.text
    detail = response.json()["detail"]
    return detail


async def _questions(
    client: httpx.AsyncClient, headers: dict[str, str]
) -> list[dict[str, Any]]:
    response = await client.get("/questions/me", headers=headers)
    questions: list[dict[str, Any]] = response.json()
    return questions


@pytest.mark.parametrize("stream", [False, True], ids=["plain", "stream"])
async def test_an_answer_that_cannot_be_stored_is_stored_as_failed(
    client: httpx.AsyncClient,
    db: Database,
    user_headers: dict[str, str],
    caplog: pytest.LogCaptureFixture,
    stream: bool,
) -> None:
    caplog.set_level(logging.DEBUG)
    await refuse_questions(db, "answered")

    detail = await _failure(client, user_headers, stream=stream)

    [question] = await _questions(client, user_headers)
    assert detail == f"{STORE_FAILED} (question {question['id']} was stored as failed)"
    assert question["status"] == "failed"
    assert question["error"] == STORE_FAILED
    assert question["answer"] == answer_for(CONTENT)
    assert question["usage"] == {"prompt_tokens": None, "completion_tokens": None}
    body = await usage(client, user_headers)
    assert (body["used_tokens"], body["reserved_tokens"]) == (CONTENT_COST, 0)
    # The failure is logged, without the statement's parameters.
    assert "refused by the test" in caplog.text
    assert CONTENT not in caplog.text


@pytest.mark.parametrize("stream", [False, True], ids=["plain", "stream"])
async def test_a_question_that_cannot_be_stored_at_all_releases_its_reservation(
    client: httpx.AsyncClient,
    db: Database,
    user_headers: dict[str, str],
    stream: bool,
) -> None:
    await refuse_questions(db, "answered", "failed")

    detail = await _failure(client, user_headers, stream=stream)

    assert detail == f"{STORE_FAILED} (the question was not kept)"
    assert await _questions(client, user_headers) == []
    body = await usage(client, user_headers)
    assert (body["used_tokens"], body["reserved_tokens"]) == (CONTENT_COST, 0)
