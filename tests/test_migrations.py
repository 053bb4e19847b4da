import sqlite3
import warnings
from pathlib import Path

from alembic import command

from askgate import migrate

TABLES = {"users", "auth_sessions", "refresh_tokens", "questions"}


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
