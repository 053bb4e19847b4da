import asyncio
import sqlite3
import time
import uuid
from collections.abc import Iterator, Sequence
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import pytest
from alembic import command
from sqlalchemy import Row, text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import create_async_engine
from sqlalchemy.pool import NullPool

from askgate import migrate
from tests.postgres_server import BACKENDS, PostgresServer, postgres_server

__all__ = ["postgres_server"]  # the fixture

TABLES = {
    "users",
    "auth_sessions",
    "refresh_tokens",
    "questions",
    "token_usage",
    "quota_reservations",
    "auth_epoch",
    "api_keys",
    "usage_daily",
    "usage_user_daily",
}


def _tables(path: Path) -> set[str]:
    with sqlite3.connect(path) as connection:
        rows = connection.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table'"
        ).fetchall()
    return {name for (name,) in rows} - {"sqlite_sequence", "alembic_version"}


def test_upgrade_downgrade_upgrade(tmp_path: Path) -> None:
    path = tmp_path / "m.db"
    url = f"sqlite+aiosqlite:///{path}"

    migrate.upgrade(url)
    assert _tables(path) == TABLES

    migrate.downgrade(url, "base")
    assert _tables(path) == set()

    migrate.upgrade(url)
    assert _tables(path) == TABLES


def test_models_match_the_migrations(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'm.db'}"
    migrate.upgrade(url)
    command.check(migrate.alembic_config(url))  # raises on any difference


def _schema_sql(path: Path) -> dict[str, str]:
    with sqlite3.connect(path) as connection:
        rows = connection.execute(
            "SELECT name, sql FROM sqlite_master WHERE sql IS NOT NULL"
        ).fetchall()
    return dict(rows)


def test_token_quota_downgrade_leaves_users_as_the_initial_schema(
    tmp_path: Path,
) -> None:
    initial, quota = tmp_path / "initial.db", tmp_path / "quota.db"
    migrate.upgrade(f"sqlite+aiosqlite:///{initial}", "20261125_initial")
    url = f"sqlite+aiosqlite:///{quota}"
    migrate.upgrade(url, "20261125_token_quota")
    assert "daily_token_quota" in _schema_sql(quota)["users"]

    migrate.downgrade(url, "20261125_initial")

    # Same table, same expression indexes, AUTOINCREMENT kept: not rebuilt.
    after = _schema_sql(quota)
    assert "token_usage" not in after
    assert "daily_token_quota" not in after["users"]
    assert "AUTOINCREMENT" in after["users"]
    expected = _schema_sql(initial)
    for index in ("uq_users_username_lower", "uq_users_email_lower"):
        assert after[index] == expected[index]


def test_upgrade_downgrade_upgrade_on_postgresql(
    postgres_server: PostgresServer,
) -> None:
    """Both dialects' branches (the auth epoch's triggers are plpgsql there)."""
    name = f"askgate_{uuid.uuid4().hex}"
    asyncio.run(postgres_server.execute(f"CREATE DATABASE {name}"))
    url = postgres_server.url(name)
    try:
        migrate.upgrade(url)
        migrate.downgrade(url, "base")
        migrate.upgrade(url)
        assert asyncio.run(_epoch_after_a_user_update(url)) == 1
    finally:
        asyncio.run(postgres_server.execute(f"DROP DATABASE {name} WITH (FORCE)"))


async def _epoch_after_a_user_update(url: str) -> int:
    engine = create_async_engine(url, poolclass=NullPool)
    try:
        async with engine.begin() as connection:
            await connection.execute(
                text(
                    "INSERT INTO users (username, username_canonical, password_hash, "
                    "role, is_active, created_at, updated_at) VALUES ('a', 'a', 'x', "
                    "'user', true, now(), now())"
                )
            )
            await connection.execute(text("UPDATE users SET is_active = false"))
            epoch = await connection.scalar(text("SELECT value FROM auth_epoch"))
        return int(epoch)
    finally:
        await engine.dispose()


# --- 20261202_canonical_names: filled for existing accounts, collisions reported --

BEFORE_CANONICAL = "20261202_auth_epoch"


@pytest.fixture(params=BACKENDS)
def blank_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """An empty database, on each backend."""
    if request.param == "sqlite":
        yield f"sqlite+aiosqlite:///{tmp_path / 'm.db'}"
        return
    server: PostgresServer = request.getfixturevalue("postgres_server")
    name = f"askgate_{uuid.uuid4().hex}"
    asyncio.run(server.execute(f"CREATE DATABASE {name}"))
    try:
        yield server.url(name)
    finally:
        asyncio.run(server.execute(f"DROP DATABASE {name} WITH (FORCE)"))


def _sql(url: str, statement: str, params: Any = None) -> Sequence[Row[Any]]:
    """One statement in its own transaction (SQLite with its foreign keys on)."""

    async def run() -> Sequence[Row[Any]]:
        engine = create_async_engine(url, poolclass=NullPool)
        try:
            async with engine.begin() as connection:
                if url.startswith("sqlite"):
                    await connection.exec_driver_sql("PRAGMA foreign_keys=ON")
                result = await connection.execute(text(statement), params)
                return result.all() if result.returns_rows else []
        finally:
            await engine.dispose()

    return asyncio.run(run())


def _add_users(url: str, *users: tuple[int, str, str | None]) -> None:
    _sql(
        url,
        "INSERT INTO users (id, username, email, password_hash, role, is_active, "
        "created_at, updated_at) VALUES (:id, :username, :email, 'x', 'user', "
        "true, CURRENT_TIMESTAMP, CURRENT_TIMESTAMP)",
        [{"id": i, "username": name, "email": email} for i, name, email in users],
    )


def _epoch(url: str) -> int:
    return int(_sql(url, "SELECT value FROM auth_epoch")[0][0])


def test_canonical_names_are_filled_for_existing_accounts(blank_url: str) -> None:
    migrate.upgrade(blank_url, BEFORE_CANONICAL)
    _add_users(
        blank_url,
        (1, "Bob", "Bob@Example.COM"),
        (2, "\uff43arol", None),  # fullwidth "c"
    )
    _sql(
        blank_url,
        "INSERT INTO questions (user_id, content, model, status, latency_ms, "
        "created_at) VALUES (1, 'q', 'm', 'answered', 1, CURRENT_TIMESTAMP)",
    )

    migrate.upgrade(blank_url)

    rows = _sql(
        blank_url,
        "SELECT id, username, username_canonical, email, email_canonical "
        "FROM users ORDER BY id",
    )
    assert [tuple(row) for row in rows] == [
        (1, "Bob", "bob", "Bob@Example.COM", "bob@example.com"),
        (2, "\uff43arol", "carol", None, None),
    ]
    # `users` was altered in place, not rebuilt: its rows' questions are still
    # there and its auth-epoch triggers still fire.
    assert _sql(blank_url, "SELECT count(*) FROM questions")[0][0] == 1
    epoch = _epoch(blank_url)
    _sql(blank_url, "UPDATE users SET is_active = false WHERE id = 2")
    assert _epoch(blank_url) > epoch
    # The canonical forms are what is unique now.
    with pytest.raises(IntegrityError):
        _sql(
            blank_url,
            "UPDATE users SET username_canonical = 'bob', email_canonical = NULL "
            "WHERE id = 2",
        )

    migrate.downgrade(blank_url, BEFORE_CANONICAL)
    with pytest.raises(IntegrityError):  # lower(username) is unique again
        _add_users(blank_url, (3, "BOB", None))
    migrate.upgrade(blank_url)
    assert _sql(blank_url, "SELECT username_canonical FROM users ORDER BY id") == [
        ("bob",),
        ("carol",),
    ]


def test_a_canonical_collision_stops_the_upgrade_and_names_the_accounts(
    blank_url: str,
) -> None:
    migrate.upgrade(blank_url, BEFORE_CANONICAL)
    # Distinct under lower(), the same once normalized (fullwidth letters).
    _add_users(
        blank_url,
        (1, "bob", "bob@example.com"),
        (2, "\uff42\uff4f\uff42", None),
        (3, "carol", "\uff42ob@example.com"),
        (4, "dave", None),
    )

    with pytest.raises(migrate.MigrationRefused) as refused:
        migrate.upgrade(blank_url)

    message = str(refused.value)
    assert "the usernames of users 1, 2" in message
    assert "the emails of users 1, 3" in message
    assert "Rename all but one" in message
    assert "4" not in message
    version = _sql(blank_url, "SELECT version_num FROM alembic_version")
    assert version == [(BEFORE_CANONICAL,)]

    _sql(blank_url, "UPDATE users SET username = 'bob2' WHERE id = 2")
    _sql(blank_url, "UPDATE users SET email = NULL WHERE id = 3")
    migrate.upgrade(blank_url)
    assert _sql(blank_url, "SELECT username_canonical FROM users ORDER BY id") == [
        ("bob",),
        ("bob2",),
        ("carol",),
        ("dave",),
    ]


# --- 20261203_question_models: the upstream's model beside the model's name ---

BEFORE_QUESTION_MODELS = "20261202_canonical_names"
QUESTION_MODELS = "20261203_question_models"
_INSERT_QUESTION = (
    "INSERT INTO questions (user_id, content, model, status, latency_ms, created_at) "
    "VALUES (1, 'q', :model, :status, 1, CURRENT_TIMESTAMP)"
)
_INSERT_ANSWERED_BY = (
    "INSERT INTO questions (user_id, content, model, upstream_model, status, "
    "latency_ms, created_at) VALUES (1, 'q', :model, :upstream_model, :status, 1, "
    "CURRENT_TIMESTAMP)"
)


def _rows(url: str, statement: str) -> list[tuple[Any, ...]]:
    return [tuple(row) for row in _sql(url, statement)]


def test_question_models_keep_existing_names_both_ways(blank_url: str) -> None:
    migrate.upgrade(blank_url, BEFORE_QUESTION_MODELS)
    _sql(
        blank_url,
        "INSERT INTO users (id, username, username_canonical, password_hash, role, "
        "is_active, created_at, updated_at) VALUES (1, 'a', 'a', 'x', 'user', true, "
        "CURRENT_TIMESTAMP, CURRENT_TIMESTAMP)",
    )
    _sql(
        blank_url,
        _INSERT_QUESTION,
        [
            {"model": "upstream-1", "status": status}
            for status in ("answered", "failed", "cancelled")
        ],
    )

    migrate.upgrade(blank_url, QUESTION_MODELS)

    # Only an answered question says that an upstream answered it.
    assert _rows(
        blank_url, "SELECT model, upstream_model, status FROM questions ORDER BY id"
    ) == [
        ("upstream-1", "upstream-1", "answered"),
        ("upstream-1", None, "failed"),
        ("upstream-1", None, "cancelled"),
    ]
    _sql(
        blank_url,
        _INSERT_ANSWERED_BY,
        [
            {"model": "fast", "upstream_model": "upstream-2", "status": "answered"},
            {"model": "fast", "upstream_model": None, "status": "failed"},
        ],
    )

    migrate.downgrade(blank_url, BEFORE_QUESTION_MODELS)

    # As before the revision: the upstream's name where one answered.
    assert _rows(blank_url, "SELECT model FROM questions ORDER BY id") == [
        ("upstream-1",),
        ("upstream-1",),
        ("upstream-1",),
        ("upstream-2",),
        ("fast",),
    ]
    migrate.upgrade(blank_url, QUESTION_MODELS)
    again = _rows(blank_url, "SELECT upstream_model FROM questions ORDER BY id")
    assert again == [("upstream-1",), (None,), (None,), ("upstream-2",), (None,)]


# --- 20261203_api_keys: keys, their triggers, questions.api_key_id -------------

BEFORE_API_KEYS = "20261203_openai_api"
# Added to `questions` by 20261203_question_models and 20261203_openai_api.
EARLIER_QUESTION_COLUMNS = ("upstream_model", "messages", "tool_calls")
# At the head revision: with 20261204_question_filters' search_text.
_QUESTION = (
    "INSERT INTO questions (id, user_id, api_key_id, content, search_text, model, "
    "status, latency_ms, created_at) VALUES (:id, 1, :key, 'q', 'q', 'm', "
    "'answered', 1, CURRENT_TIMESTAMP)"
)
_KEY = (
    "INSERT INTO api_keys (id, user_id, name, prefix, digest, created_at) "
    "VALUES (:id, 1, 'k', 'ag-abcde', :digest, CURRENT_TIMESTAMP)"
)


def test_api_keys_upgrade_downgrade_upgrade_keeps_every_question(
    blank_url: str,
) -> None:
    migrate.upgrade(blank_url, BEFORE_API_KEYS)
    _sql(
        blank_url,
        "INSERT INTO users (id, username, username_canonical, password_hash, role, "
        "is_active, created_at, updated_at) VALUES (1, 'bob', 'bob', 'x', 'user', "
        "true, CURRENT_TIMESTAMP, CURRENT_TIMESTAMP)",
    )
    _sql(
        blank_url,
        "INSERT INTO questions (id, user_id, content, model, status, latency_ms, "
        "created_at) VALUES (1, 1, 'q', 'm', 'answered', 1, CURRENT_TIMESTAMP)",
    )

    migrate.upgrade(blank_url)
    command.check(migrate.alembic_config(blank_url))  # models match, both backends
    if blank_url.startswith("sqlite"):  # rebuilt in batch mode
        path = Path(blank_url.removeprefix("sqlite+aiosqlite:///"))
        for column in EARLIER_QUESTION_COLUMNS:
            assert column in _schema_sql(path)["questions"]
    _sql(blank_url, _KEY, {"id": 1, "digest": "1" * 64})
    _sql(blank_url, _QUESTION, {"id": 2, "key": 1})
    with pytest.raises(IntegrityError):  # one digest, one key
        _sql(blank_url, _KEY, {"id": 2, "digest": "1" * 64})
    epoch = _epoch(blank_url)
    _sql(blank_url, "UPDATE api_keys SET last_used_at = CURRENT_TIMESTAMP")
    _sql(blank_url, "UPDATE api_keys SET name = 'renamed'")
    assert _epoch(blank_url) == epoch  # caches untouched
    _sql(blank_url, "UPDATE api_keys SET expires_at = CURRENT_TIMESTAMP")
    assert _epoch(blank_url) == epoch + 1
    _sql(blank_url, "DELETE FROM api_keys WHERE id = 1")  # revoked
    assert _epoch(blank_url) == epoch + 2
    assert _sql(blank_url, "SELECT api_key_id FROM questions WHERE id = 2") == [(None,)]
    _sql(blank_url, _KEY, {"id": 3, "digest": "3" * 64})
    _sql(blank_url, _QUESTION, {"id": 3, "key": 3})

    migrate.downgrade(blank_url, BEFORE_API_KEYS)
    assert _sql(blank_url, "SELECT id FROM questions ORDER BY id") == [
        (1,),
        (2,),
        (3,),
    ]
    if blank_url.startswith("sqlite"):
        path = Path(blank_url.removeprefix("sqlite+aiosqlite:///"))
        schema = _schema_sql(path)
        assert "AUTOINCREMENT" in schema["questions"]
        assert "api_key" not in schema["questions"]
        # The rebuilt table keeps what the earlier revisions added.
        for column in EARLIER_QUESTION_COLUMNS:
            assert column in schema["questions"]
        assert "ix_questions_user_id_id" in schema
        assert "api_keys" not in schema

    migrate.upgrade(blank_url)
    _sql(blank_url, _KEY, {"id": 4, "digest": "4" * 64})
    _sql(blank_url, _QUESTION, {"id": 4, "key": 4})
    _sql(blank_url, "DELETE FROM users")  # keys go with their user
    assert _sql(blank_url, "SELECT count(*) FROM api_keys") == [(0,)]


# --- 20261204_usage_daily: the rollup, filled from the questions stored so far --

BEFORE_USAGE = "20261203_api_keys"
_USAGE_QUESTION = (
    "INSERT INTO questions (user_id, content, model, status, prompt_tokens, "
    "completion_tokens, latency_ms, created_at) VALUES (:user_id, 'q', :model, "
    ":status, :prompt, :completion, 1, :at)"
)
_ROLLUP = (
    "SELECT user_id, day, model, questions, failed, prompt_tokens, "
    "completion_tokens FROM usage_daily ORDER BY user_id, day, model"
)
_USER_ROLLUP = (
    "SELECT user_id, day, questions, failed, prompt_tokens, completion_tokens "
    "FROM usage_user_daily ORDER BY user_id, day"
)


def _by_day(url: str, statement: str) -> list[tuple[Any, ...]]:
    """The rows with their day as text (SQLite's is text, PostgreSQL's a date)."""
    return [(row[0], str(row[1]), *row[2:]) for row in _rows(url, statement)]


def _moment(url: str, at: datetime) -> datetime | str:
    """A created_at as askgate stores it: UTC text on SQLite (its driver's own
    datetime adapter is deprecated), a timestamptz on PostgreSQL."""
    if url.startswith("sqlite"):
        return at.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")
    return at


def _usage_question(
    url: str,
    user_id: int,
    model: str,
    status: str,
    tokens: tuple[int | None, int | None],
    at: str,
) -> dict[str, Any]:
    return {
        "user_id": user_id,
        "model": model,
        "status": status,
        "prompt": tokens[0],
        "completion": tokens[1],
        "at": _moment(url, datetime.fromisoformat(at)),
    }


def test_usage_daily_is_filled_from_the_questions_stored_before_it(
    blank_url: str,
) -> None:
    migrate.upgrade(blank_url, BEFORE_USAGE)
    _sql(
        blank_url,
        "INSERT INTO users (id, username, username_canonical, password_hash, role, "
        "is_active, created_at, updated_at) VALUES (:id, :name, :name, 'x', 'user', "
        "true, CURRENT_TIMESTAMP, CURRENT_TIMESTAMP)",
        [{"id": 1, "name": "bob"}, {"id": 2, "name": "carol"}],
    )
    late, next_day = "2026-12-01T23:59:59+00:00", "2026-12-02T00:30:00+01:00"
    _sql(
        blank_url,
        _USAGE_QUESTION,
        [
            _usage_question(blank_url, 1, "alpha", "answered", (3, 5), late),
            _usage_question(blank_url, 1, "alpha", "failed", (None, None), late),
            _usage_question(blank_url, 1, "alpha", "cancelled", (4, None), late),
            # 23:30 UTC, whatever the offset it was given with.
            _usage_question(blank_url, 1, "alpha", "answered", (1, 1), next_day),
            _usage_question(blank_url, 1, "beta", "answered", (2, 7), late),
            _usage_question(
                blank_url, 2, "alpha", "failed", (6, 0), "2026-12-02T08:00:00+00:00"
            ),
        ],
    )

    migrate.upgrade(blank_url)

    command.check(migrate.alembic_config(blank_url))  # models match, both backends
    expected = [
        (1, "2026-12-01", "alpha", 4, 1, 8, 6),
        (1, "2026-12-01", "beta", 1, 0, 2, 7),
        (2, "2026-12-02", "alpha", 1, 1, 6, 0),
    ]
    expected_users = [(1, "2026-12-01", 5, 1, 10, 13), (2, "2026-12-02", 1, 1, 6, 0)]
    assert _by_day(blank_url, _ROLLUP) == expected
    assert _by_day(blank_url, _USER_ROLLUP) == expected_users
    _sql(blank_url, "DELETE FROM users WHERE id = 2")  # the rows go with the user
    assert [r[0] for r in _rows(blank_url, _ROLLUP)] == [1, 1]
    assert [r[0] for r in _rows(blank_url, _USER_ROLLUP)] == [1]

    migrate.downgrade(blank_url, BEFORE_USAGE)
    for statement in (_ROLLUP, _USER_ROLLUP):  # both tables are gone
        with pytest.raises(Exception, match="usage_"):
            _sql(blank_url, statement)
    migrate.upgrade(blank_url)
    assert _by_day(blank_url, _ROLLUP) == expected[:2]
    assert _by_day(blank_url, _USER_ROLLUP) == expected_users[:1]


# --- 20261204_question_filters: questions.search_text, filled for every question --

BEFORE_QUESTION_FILTERS = "20261204_usage_daily"


def _search_texts(url: str) -> list[tuple[Any, ...]]:
    return _rows(url, "SELECT id, search_text FROM questions ORDER BY id")


def test_question_filters_fill_search_text_both_ways(blank_url: str) -> None:
    migrate.upgrade(blank_url, BEFORE_QUESTION_FILTERS)
    _sql(
        blank_url,
        "INSERT INTO users (id, username, username_canonical, password_hash, role, "
        "is_active, created_at, updated_at) VALUES (1, 'bob', 'bob', 'x', 'user', "
        "true, CURRENT_TIMESTAMP, CURRENT_TIMESTAMP)",
    )
    # More than one batch of the fill (a thousand).
    questions = [
        {"id": 1, "content": "Un ÉTÉ à Paris?", "answer": "Il fait ＣＨＡＵＤ."},
        {"id": 2, "content": "Straße", "answer": None},
    ] + [{"id": n, "content": f"Q{n}", "answer": f"A{n}"} for n in range(3, 1006)]
    _sql(
        blank_url,
        "INSERT INTO questions (id, user_id, content, answer, model, status, "
        "latency_ms, created_at) VALUES (:id, 1, :content, :answer, 'm', "
        "'answered', 1, CURRENT_TIMESTAMP)",
        questions,
    )
    expected = [
        (1, "un été à paris?\nil fait chaud."),
        (2, "strasse"),
    ] + [(n, f"q{n}\na{n}") for n in range(3, 1006)]

    migrate.upgrade(blank_url)
    command.check(migrate.alembic_config(blank_url))  # models match, both backends
    assert _search_texts(blank_url) == expected

    migrate.downgrade(blank_url, BEFORE_QUESTION_FILTERS)
    (row,) = _sql(blank_url, "SELECT * FROM questions WHERE id = 1")
    assert "search_text" not in row._fields
    assert "api_key_id" in row._fields  # dropped alone, not rebuilt
    assert _rows(blank_url, "SELECT count(*) FROM questions") == [(1005,)]

    migrate.upgrade(blank_url)
    assert _search_texts(blank_url) == expected


# --- 20261205_quota_windows: token_usage.reserved becomes quota_reservations ------

BEFORE_QUOTA_WINDOWS = "20261204_question_filters"


def test_quota_windows_move_what_is_reserved_both_ways(blank_url: str) -> None:
    migrate.upgrade(blank_url, BEFORE_QUOTA_WINDOWS)
    _sql(
        blank_url,
        "INSERT INTO users (id, username, username_canonical, password_hash, role, "
        "is_active, created_at, updated_at) VALUES (:id, :name, :name, 'x', 'user', "
        "true, CURRENT_TIMESTAMP, CURRENT_TIMESTAMP)",
        [{"id": 1, "name": "bob"}, {"id": 2, "name": "carol"}],
    )
    _sql(
        blank_url,
        "INSERT INTO token_usage (user_id, day, reserved, used) "
        "VALUES (:user_id, :day, :reserved, :used)",
        [
            {"user_id": 1, "day": date(2026, 12, 4), "reserved": 50, "used": 7},
            {"user_id": 2, "day": date(2026, 12, 4), "reserved": 0, "used": 3},
        ],
    )
    before = int(time.time()) // 60

    migrate.upgrade(blank_url)

    after = int(time.time()) // 60
    command.check(migrate.alembic_config(blank_url))  # models match, both backends
    moved = _rows(
        blank_url, 'SELECT user_id, day, "window", tokens FROM quota_reservations'
    )
    assert [(u, str(d), t) for u, d, _, t in moved] == [(1, "2026-12-04", 50)]
    assert before <= moved[0][2] <= after  # counts from the upgrade on
    assert _rows(blank_url, "SELECT user_id, used FROM token_usage ORDER BY 1") == [
        (1, 7),
        (2, 3),
    ]
    _sql(
        blank_url,
        'INSERT INTO quota_reservations (user_id, day, "window", tokens) '
        "VALUES (1, :day, 1, 5), (2, :day, 1, 4)",
        {"day": date(2026, 12, 4)},
    )

    migrate.downgrade(blank_url, BEFORE_QUOTA_WINDOWS)

    assert _rows(
        blank_url, "SELECT user_id, reserved, used FROM token_usage ORDER BY 1"
    ) == [(1, 55, 7), (2, 4, 3)]
    with pytest.raises(Exception, match="quota_reservations"):
        _sql(blank_url, "SELECT * FROM quota_reservations")
    migrate.upgrade(blank_url)
    assert _rows(blank_url, "SELECT sum(tokens) FROM quota_reservations") == [(59,)]
