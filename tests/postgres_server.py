"""A real PostgreSQL server for the tests: one per test session, with a database
migrated by Alembic that each test gets a fresh copy of (`CREATE DATABASE ...
TEMPLATE`, much faster than migrating again).

Test modules import the fixtures they use (`from tests.postgres_server import ...`).
`make test` installs Debian's postgresql when it is missing (see the Makefile);
elsewhere the PostgreSQL tests are skipped when no server binaries are found, except
under CI, where that is a failure.
"""

import asyncio
import os
import shutil
import socket
import subprocess
import tempfile
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from sqlalchemy.ext.asyncio import create_async_engine
from sqlalchemy.pool import NullPool

from askgate import migrate
from askgate.config import Settings

BACKENDS = ["sqlite", "postgresql"]
SUPERUSER = "postgres"
TEMPLATE = "askgate_template"
LOG = "server.log"
STARTUP_TIMEOUT_SECONDS = 30
# Durability is worthless for a throwaway server and costs seconds per test session.
SERVER_OPTIONS = "-c listen_addresses=127.0.0.1 -c fsync=off -c full_page_writes=off"


@dataclass(frozen=True)
class PostgresServer:
    port: int

    def url(self, database: str) -> str:
        return f"postgresql+asyncpg://{SUPERUSER}@127.0.0.1:{self.port}/{database}"

    async def execute(self, *statements: str) -> None:
        """Statements that cannot run in a transaction (CREATE/DROP DATABASE)."""
        engine = create_async_engine(
            self.url("postgres"), isolation_level="AUTOCOMMIT", poolclass=NullPool
        )
        try:
            async with engine.connect() as connection:
                for statement in statements:
                    await connection.exec_driver_sql(statement)
        finally:
            await engine.dispose()


def _bin_dir() -> Path:
    """Debian keeps the server binaries off PATH, one directory per major version."""
    versions = [
        path.parent
        for path in Path("/usr/lib/postgresql").glob("*/bin/pg_ctl")
        if path.parts[-3].isdigit()
    ]
    if versions:
        return max(versions, key=lambda bin_dir: int(bin_dir.parent.name))
    on_path = shutil.which("pg_ctl")
    if on_path is not None:
        return Path(on_path).parent
    message = (
        "PostgreSQL is not installed: run `make postgresql` "
        "(apt-get install postgresql)"
    )
    if os.environ.get("CI"):
        pytest.fail(f"CI must run the PostgreSQL tests: {message}")
    pytest.skip(message)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _as_server_user(command: list[str]) -> list[str]:
    # initdb and postgres refuse to run as root (as CI runs).
    if os.geteuid() == 0:
        return ["runuser", "-u", SUPERUSER, "--", *command]
    return command


def _run(command: list[str], workdir: Path) -> None:
    log = workdir / LOG
    result = subprocess.run(
        _as_server_user(command),
        cwd=workdir,  # the server user may not be allowed into the current one
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        server_log = log.read_text() if log.exists() else ""
        pytest.fail(
            f"{' '.join(command)} exited with {result.returncode}:\n"
            f"{result.stdout}{result.stderr}{server_log}"
        )


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """A throwaway server (trust authentication) with the migrated template."""
    bin_dir = _bin_dir()
    # Not under pytest's tmp_path: its parents are private to the user running
    # the tests, and the server runs as `postgres` when that user is root.
    workdir = Path(tempfile.mkdtemp(prefix="askgate-pg-"))
    if os.geteuid() == 0:
        shutil.chown(workdir, user=SUPERUSER, group=SUPERUSER)
    data = workdir / "data"
    pg_ctl = [str(bin_dir / "pg_ctl"), "-D", str(data), "-l", str(workdir / LOG)]
    server = PostgresServer(port=_free_port())
    initdb = [str(bin_dir / "initdb"), "-D", str(data), "-U", SUPERUSER, "-A", "trust"]
    options = f"-p {server.port} -k {workdir} {SERVER_OPTIONS}"
    timeout = str(STARTUP_TIMEOUT_SECONDS)
    try:
        _run([*initdb, "--no-sync", "-E", "UTF8", "--locale=C.UTF-8"], workdir)
        _run([*pg_ctl, "-o", options, "-w", "-t", timeout, "start"], workdir)
        try:
            asyncio.run(server.execute(f"CREATE DATABASE {TEMPLATE}"))
            migrate.upgrade(server.url(TEMPLATE))
            yield server
        finally:
            _run([*pg_ctl, "-m", "immediate", "stop"], workdir)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


@pytest.fixture
async def postgres_url(postgres_server: PostgresServer) -> AsyncIterator[str]:
    """The URL of a fresh copy of the migrated database, dropped after the test."""
    name = f"askgate_{uuid.uuid4().hex}"
    await postgres_server.execute(f"CREATE DATABASE {name} TEMPLATE {TEMPLATE}")
    yield postgres_server.url(name)
    await postgres_server.execute(f"DROP DATABASE {name} WITH (FORCE)")


def with_database(settings: Settings, request: pytest.FixtureRequest) -> Settings:
    """`settings` on the database named by the test's parameter (see BACKENDS)."""
    if request.param == "postgresql":
        url = request.getfixturevalue("postgres_url")
        return settings.model_copy(update={"database_url": url})
    return settings
