"""The data directory is 0700 and the SQLite database with its -wal and -shm files
0600 whatever the umask: they hold password hashes and every question."""

import asyncio
import os
import stat
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from pydantic import SecretStr

from askgate import migrate
from askgate.app import create_app
from askgate.config import Settings
from tests.test_cli import run_cli

ADMIN = {"admin_username": "boss", "admin_password": SecretStr("a long passphrase")}


@pytest.fixture
def umask_000() -> Iterator[None]:
    """What a careless service manager or shell may leave (process-wide: this test
    creates files in this process, restored right after)."""
    previous = os.umask(0)
    try:
        yield
    finally:
        os.umask(previous)


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_the_cli_creates_private_files_under_umask_000(
    tmp_path: Path, umask_000: None
) -> None:
    data_dir = tmp_path / "new" / "data"

    result = run_cli("db", "upgrade", data_dir=data_dir)

    assert result.returncode == 0, result.stderr
    # The parent it created too: a world-writable one would let anyone swap
    # the data directory.
    assert _mode(tmp_path / "new") == 0o700
    assert _mode(data_dir) == 0o700
    assert {path.name: _mode(path) for path in data_dir.iterdir()} == {
        "askgate.db": 0o600,
        "secret_key": 0o600,
    }


async def test_the_open_database_files_are_private_under_umask_000(
    settings: Settings, tmp_path: Path, umask_000: None
) -> None:
    data_dir = tmp_path / "new" / "data"
    configured = settings.model_copy(
        update={"data_dir": data_dir, "database_url": None, **ADMIN}
    )
    app = create_app(configured)
    await asyncio.to_thread(migrate.upgrade, configured.sqlalchemy_url)  # as serve

    transport = httpx.ASGITransport(app=app)
    async with (
        app.router.lifespan_context(app),  # creates the admin: a write
        httpx.AsyncClient(transport=transport, base_url="http://test") as client,
    ):
        login = await client.post(
            "/auth/token", data={"username": "boss", "password": "a long passphrase"}
        )
        assert login.status_code == 200, login.text
        # While it is open, SQLite keeps its -wal and -shm files beside it.
        modes = {path.name: _mode(path) for path in data_dir.iterdir()}

    assert _mode(data_dir) == 0o700
    assert modes == {
        "askgate.db": 0o600,
        "askgate.db-wal": 0o600,
        "askgate.db-shm": 0o600,
    }


async def test_existing_database_files_are_tightened_at_startup(
    settings: Settings, database_path: Path
) -> None:
    """A database created by an earlier version, or copied without care."""
    wal = database_path.with_name(database_path.name + "-wal")
    wal.touch()
    for path in (database_path, wal):
        path.chmod(0o644)

    app = create_app(settings)

    assert _mode(database_path) == 0o600
    assert _mode(wal) == 0o600
    async with app.router.lifespan_context(app):  # and it still opens
        pass
