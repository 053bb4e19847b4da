import asyncio
import sqlite3
import uuid
import warnings
from pathlib import Path

from alembic import command
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine
from sqlalchemy.pool import NullPool

from askgate import migrate
from tests.postgres_server import PostgresServer, postgres_server

__all__ = ["postgres_server"]  # the fixture

TABLES = {
    "users",
    "auth_sessions",
    "refresh_tokens",
    "questions",
    "token_usage",
    "auth_epoch",
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
    with warnings.catch_warnings():
        # SQLite cannot reflect expression indexes (lower(username)); alembic
        # warns and skips them. Everything else must match exactly.
        warnings.filterwarnings("ignore", "autogenerate skipping", UserWarning)
        warnings.filterwarnings("ignore", "Skipped unsupported reflection")
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
                    "INSERT INTO users (username, password_hash, role, is_active, "
                    "created_at, updated_at) VALUES ('a', 'x', 'user', true, "
                    "now(), now())"
                )
            )
            await connection.execute(text("UPDATE users SET is_active = false"))
            epoch = await connection.scalar(text("SELECT value FROM auth_epoch"))
        return int(epoch)
    finally:
        await engine.dispose()
