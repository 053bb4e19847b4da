"""Question retention: ASKGATE_QUESTION_RETENTION_DAYS (the app's task) and
`askgate db purge --older-than DAYS` delete exactly the older questions, in
batches, one run at a time; usage totals stay."""

import asyncio
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import event

from askgate.app import create_app
from askgate.config import Settings
from askgate.db import Database
from askgate.db_lock import try_lock
from askgate.questions import retention
from tests.factories import Account, auth_headers, create_user
from tests.postgres_server import (
    BACKENDS,
    postgres_server,
    postgres_url,
    with_database,
)
from tests.rows import backdate_questions, days_ago, insert_questions, question_ids
from tests.test_cli import run_cli

__all__ = ["postgres_server", "postgres_url"]  # fixtures used through `with_database`

DAYS = 30
# Ages in days: the first three are older than DAYS, the rest are not.
OLD = (400, 31, DAYS + 1 / 24)
RECENT = (DAYS - 1 / 24, 1, 0)


@pytest.fixture(params=BACKENDS)
def settings(settings: Settings, request: pytest.FixtureRequest) -> Settings:
    return with_database(settings, request)


async def aged_questions(db: Database, user_id: int) -> tuple[list[int], list[int]]:
    """(the old ones' ids, the recent ones' ids), interleaved in id order."""
    ages = [age for pair in zip(OLD, RECENT, strict=True) for age in pair]
    ids = await insert_questions(db, user_id, [days_ago(age) for age in ages])
    return ids[0::2], ids[1::2]


@contextmanager
def deletes(db: Database) -> Iterator[list[str]]:
    """The DELETE statements run meanwhile."""
    seen: list[str] = []

    def record(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        if statement.lstrip().upper().startswith("DELETE"):
            seen.append(statement)

    event.listen(db.engine.sync_engine, "before_cursor_execute", record)
    try:
        yield seen
    finally:
        event.remove(db.engine.sync_engine, "before_cursor_execute", record)


async def test_a_purge_deletes_exactly_the_older_questions_in_batches(
    db: Database, user: Account, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(retention, "BATCH_SIZE", 2)
    old, recent = await aged_questions(db, user.id)
    someone = await create_user(db)
    their_old, their_recent = await aged_questions(db, someone.id)

    with deletes(db) as statements:
        deleted = await retention.purge_older_than(db=db, days=DAYS)

    assert deleted == len(old) + len(their_old)
    assert await question_ids(db) == set(recent) | set(their_recent)
    # Six old questions, two a batch: three short write transactions.
    assert len(statements) == 3


async def test_usage_totals_stay_when_their_questions_go(
    client: httpx.AsyncClient, db: Database, user: Account, admin: Account
) -> None:
    headers = await auth_headers(client, user)
    for content in ("one", "two"):
        response = await client.post(
            "/questions", json={"content": content}, headers=headers
        )
        assert response.status_code == 201, response.text
    admin_headers = await auth_headers(client, admin)
    views = {
        "today": ("/users/me/usage", headers),
        "daily": ("/users/me/usage/daily", headers),
        "leaderboard": ("/usage/leaderboard", admin_headers),
    }

    async def read_views() -> dict[str, Any]:
        bodies = {}
        for name, (path, view_headers) in views.items():
            response = await client.get(path, headers=view_headers)
            assert response.status_code == 200, response.text
            bodies[name] = response.json()
        return bodies

    before = await read_views()
    await backdate_questions(db, user.id, DAYS + 1)

    assert await retention.purge_older_than(db=db, days=DAYS) == 2

    history = await client.get("/questions/me", headers=headers)
    assert history.json() == []
    assert await read_views() == before
    assert before["today"]["used_tokens"] > 0


async def test_the_app_deletes_old_questions_soon_after_start(
    settings: Settings, db: Database, user: Account, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(retention, "FIRST_RUN_DELAY_SECONDS", 0)
    old, recent = await aged_questions(db, user.id)
    settings = settings.model_copy(update={"question_retention_days": DAYS})
    app = create_app(settings)

    async with app.router.lifespan_context(app):
        remaining: set[int] = set()

        async def purged() -> bool:
            remaining.clear()
            remaining.update(await question_ids(db))
            return not remaining & set(old)

        await eventually(purged)

    assert remaining == set(recent)


async def eventually(condition: Callable[[], Awaitable[bool]]) -> None:
    """Wait until `condition()` (which queries the database) holds."""

    async def poll() -> None:
        while not await condition():
            await asyncio.sleep(0.05)

    await asyncio.wait_for(poll(), 30)


async def test_a_run_while_another_holds_the_lock_does_nothing(
    db: Database, user: Account
) -> None:
    old, recent = await aged_questions(db, user.id)

    async with try_lock(db.engine, retention.LOCK_NAME) as held:
        assert held
        async with try_lock(db.engine, retention.LOCK_NAME) as second:
            assert not second
        assert await retention.purge_older_than(db=db, days=DAYS) is None
        assert await question_ids(db) == set(old) | set(recent)

    assert await retention.purge_older_than(db=db, days=DAYS) == len(old)


def _cli_env(settings: Settings) -> dict[str, str]:
    return {
        "ASKGATE_DATABASE_URL": settings.sqlalchemy_url,
        "ASKGATE_SECRET_KEY": settings.signing_key(),
    }


async def test_db_purge_deletes_and_says_how_many(
    settings: Settings, db: Database, user: Account, tmp_path: Path
) -> None:
    old, recent = await aged_questions(db, user.id)

    result = run_cli(
        "db",
        "purge",
        "--older-than",
        str(DAYS),
        data_dir=tmp_path,
        **_cli_env(settings),
    )

    assert result.returncode == 0, result.stderr
    assert result.stdout == f"Deleted {len(old)} questions older than {DAYS} days\n"
    assert await question_ids(db) == set(recent)


async def test_db_purge_refuses_while_another_run_holds_the_lock(
    settings: Settings, db: Database, user: Account, tmp_path: Path
) -> None:
    old, recent = await aged_questions(db, user.id)

    async with try_lock(db.engine, retention.LOCK_NAME) as held:
        assert held
        result = run_cli(
            "db",
            "purge",
            "--older-than",
            str(DAYS),
            data_dir=tmp_path,
            **_cli_env(settings),
        )

    assert result.returncode == 2
    assert "another purge is running" in result.stderr
    assert await question_ids(db) == set(old) | set(recent)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--older-than", "abc"], "'abc' is not a whole number of days"),
        (["--older-than", "0"], "'0' is not a whole number of days from 1 to 36500"),
        (["--older-than", "-3"], "'-3' is not a whole number of days"),
        (["--older-than", "36501"], "'36501' is not a whole number of days"),
        (["--older-than", "1.5"], "'1.5' is not a whole number of days"),
        ([], "--older-than DAYS goes with `db purge`"),
    ],
)
def test_db_purge_rejects_bad_days(
    args: list[str], message: str, tmp_path: Path
) -> None:
    result = run_cli("db", "purge", *args, data_dir=tmp_path)

    assert result.returncode == 2
    assert message in result.stderr
    assert "Traceback" not in result.stderr


def test_db_purge_of_an_unmigrated_database_says_so_in_one_line(
    tmp_path: Path,
) -> None:
    result = run_cli("db", "purge", "--older-than", "3", data_dir=tmp_path)

    assert result.returncode == 2
    message = result.stderr.strip().splitlines()[-1]
    assert message == (
        "askgate: purging failed (OperationalError: no such table: questions); "
        "is the database reachable and migrated (askgate db upgrade)?"
    )


def test_older_than_only_goes_with_purge(tmp_path: Path) -> None:
    result = run_cli("db", "upgrade", "--older-than", "3", data_dir=tmp_path)

    assert result.returncode == 2
    assert "--older-than DAYS goes with `db purge`" in result.stderr


@pytest.mark.parametrize("value", ["-1", "forever", "36501"])
def test_a_bad_retention_setting_stops_startup_naming_it(
    value: str, tmp_path: Path
) -> None:
    result = run_cli(
        "db", "upgrade", data_dir=tmp_path, ASKGATE_QUESTION_RETENTION_DAYS=value
    )

    assert result.returncode == 2
    assert "invalid ASKGATE_QUESTION_RETENTION_DAYS" in result.stderr
