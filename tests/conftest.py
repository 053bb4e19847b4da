import asyncio
import os
import shutil
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
import uvicorn
from fastapi import FastAPI

from askgate import migrate
from askgate.app import create_app
from askgate.config import Settings
from askgate.db import Database
from askgate.runtime import Runtime
from askgate.users.models import Role
from tests.factories import Account, auth_headers, create_user
from tests.fake_upstream import MODEL, FakeUpstream
from tests.postgres_server import BACKENDS, postgres_server, postgres_url

__all__ = ["postgres_server", "postgres_url"]  # fixtures, for every test module

TEST_SECRET_KEY = "test-secret-key-that-is-long-enough-0123456789"


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--database",
        choices=("sqlite", "postgresql"),
        default="sqlite",
        help="the database of every test that uses the `settings` fixture "
        "(`make test` runs the suite once with each)",
    )


def pytest_collection_modifyitems(
    config: pytest.Config, items: list[pytest.Item]
) -> None:
    """On PostgreSQL, run what the SQLite pass did not already prove on it: every
    test on a database, but those parametrized over both databases (they ran on
    both), those on the SQLite file itself (`database_path`) and those that touch no
    database (nothing there differs)."""
    if config.getoption("--database") != "postgresql":
        return
    kept: list[pytest.Item] = []
    dropped: list[pytest.Item] = []
    for item in items:
        names = getattr(item, "fixturenames", ())
        callspec = getattr(item, "callspec", None)
        both = callspec is not None and any(
            isinstance(value, str) and value in BACKENDS
            for value in callspec.params.values()
        )
        on_postgresql = "database_url" in names and "database_path" not in names
        (kept if on_postgresql and not both else dropped).append(item)
    if dropped:
        config.hook.pytest_deselected(items=dropped)
        items[:] = kept


@pytest.fixture(autouse=True)
def _isolated_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No ASKGATE_* variable or .env file of the developer's leaks into a test."""
    for name in list(os.environ):
        if name.startswith("ASKGATE_"):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)


@pytest.fixture(scope="session")
def migrated_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One database migrated by Alembic; each test gets a copy of it."""
    path = tmp_path_factory.mktemp("template") / "askgate.db"
    migrate.upgrade(f"sqlite+aiosqlite:///{path}")
    return path


@pytest.fixture
def database_path(migrated_template: Path, tmp_path: Path) -> Path:
    path = tmp_path / "askgate.db"
    shutil.copyfile(migrated_template, path)
    return path


@pytest.fixture
def database_url(request: pytest.FixtureRequest) -> str:
    """A fresh migrated database: a copy of the SQLite template, or with
    `--database=postgresql` a copy of the PostgreSQL one (tests/postgres_server.py)."""
    if request.config.getoption("--database") == "postgresql":
        url: str = request.getfixturevalue("postgres_url")
        return url
    path: Path = request.getfixturevalue("database_path")
    return f"sqlite+aiosqlite:///{path}"


@pytest.fixture
async def fake_upstream() -> AsyncIterator[FakeUpstream]:
    upstream = FakeUpstream()
    await upstream.start()
    yield upstream
    await upstream.stop()


@pytest.fixture
async def second_upstream() -> AsyncIterator[FakeUpstream]:
    """Another fake upstream, for a second model (tests of the models file)."""
    upstream = FakeUpstream()
    await upstream.start()
    yield upstream
    await upstream.stop()


@pytest.fixture
def settings(
    database_url: str, tmp_path: Path, fake_upstream: FakeUpstream
) -> Settings:
    return Settings(
        _env_file=None,
        data_dir=tmp_path,
        database_url=database_url,
        secret_key=TEST_SECRET_KEY,
        llm_base_url=fake_upstream.base_url,
        llm_model=MODEL,
        llm_read_timeout=1.0,
        llm_connect_timeout=1.0,
    )


@pytest.fixture
async def app(settings: Settings) -> AsyncIterator[FastAPI]:
    application = create_app(settings)
    async with application.router.lifespan_context(application):
        yield application


@pytest.fixture
def runtime(app: FastAPI) -> Runtime:
    value: Runtime = app.state.runtime
    return value


@pytest.fixture
def db(runtime: Runtime) -> Database:
    return runtime.db


@pytest.fixture
async def client(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as c:
        yield c


@pytest.fixture
async def user(db: Database) -> Account:
    return await create_user(db)


@pytest.fixture
async def admin(db: Database) -> Account:
    return await create_user(db, role=Role.ADMIN)


@pytest.fixture
async def user_headers(client: httpx.AsyncClient, user: Account) -> dict[str, str]:
    return await auth_headers(client, user)


@pytest.fixture
async def admin_headers(client: httpx.AsyncClient, admin: Account) -> dict[str, str]:
    return await auth_headers(client, admin)


@pytest.fixture
async def server_url(app: FastAPI) -> AsyncIterator[str]:
    """The app served by uvicorn on a real socket (its lifespan already ran)."""
    config = uvicorn.Config(
        app,
        host="127.0.0.1",
        port=0,
        lifespan="off",
        log_level="warning",
        # The options `askgate serve` passes to uvicorn.
        server_header=False,
        proxy_headers=False,
        # A stream the app failed to stop must not hang the suite at shutdown.
        timeout_graceful_shutdown=2,
    )
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    try:
        while not server.started:
            assert not task.done(), "uvicorn stopped while starting"
            await asyncio.sleep(0.01)
        port = server.servers[0].sockets[0].getsockname()[1]
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await task
