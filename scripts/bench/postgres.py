"""A throwaway PostgreSQL cluster for the `--workers 2` rows, started the way
tests/postgres_server.py starts the tests' one: initdb into a temporary directory,
`pg_ctl start` on a free port with fsync off, trust authentication."""

import contextlib
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

from bench.processes import free_port

SUPERUSER = "postgres"
DATABASE = "askgate_bench"
STARTUP_TIMEOUT_SECONDS = 30
# Durability is worthless for a throwaway server.
SERVER_OPTIONS = "-c listen_addresses=127.0.0.1 -c fsync=off -c full_page_writes=off"


def bin_dir() -> Path | None:
    """Debian keeps the server binaries off PATH, one directory per major version."""
    versions = [
        path.parent
        for path in Path("/usr/lib/postgresql").glob("*/bin/pg_ctl")
        if path.parts[-3].isdigit()
    ]
    if versions:
        return max(versions, key=lambda directory: int(directory.parent.name))
    on_path = shutil.which("pg_ctl")
    return Path(on_path).parent if on_path else None


def _as_server_user(command: list[str]) -> list[str]:
    # initdb and postgres refuse to run as root.
    if os.geteuid() == 0:
        return ["runuser", "-u", SUPERUSER, "--", *command]
    return command


def _run(command: list[str], workdir: Path) -> None:
    result = subprocess.run(  # noqa: S603 - our own argv
        command,
        cwd=workdir,  # the server user may not be allowed into the current one
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        log = workdir / "server.log"
        server_log = log.read_text() if log.exists() else ""
        raise RuntimeError(
            f"{' '.join(command)} exited with {result.returncode}:\n"
            f"{result.stdout}{result.stderr}{server_log}"
        )


@contextlib.contextmanager
def throwaway_database() -> Iterator[str]:
    """The SQLAlchemy URL of an empty database on a new cluster, removed after."""
    binaries = bin_dir()
    if binaries is None:
        raise RuntimeError("PostgreSQL is not installed: run `make postgresql`")
    # Not under the benchmark's own directory: the server may run as `postgres`.
    workdir = Path(tempfile.mkdtemp(prefix="askgate-bench-pg-"))
    try:
        if os.geteuid() == 0:
            shutil.chown(workdir, user=SUPERUSER, group=SUPERUSER)
        data = workdir / "data"
        port = free_port()
        log = str(workdir / "server.log")
        pg_ctl = [str(binaries / "pg_ctl"), "-D", str(data), "-l", log]
        initdb = [str(binaries / "initdb"), "-D", str(data), "-U", SUPERUSER]
        options = f"-p {port} -k {workdir} {SERVER_OPTIONS}"
        _run(
            _as_server_user(
                [*initdb, "-A", "trust", "--no-sync", "-E", "UTF8", "--locale=C.UTF-8"]
            ),
            workdir,
        )
        start = [*pg_ctl, "-o", options, "-w", "-t", str(STARTUP_TIMEOUT_SECONDS)]
        _run(_as_server_user([*start, "start"]), workdir)
        try:
            createdb = [str(binaries / "createdb"), "-h", "127.0.0.1", "-p", str(port)]
            _run([*createdb, "-U", SUPERUSER, DATABASE], workdir)
            yield f"postgresql+asyncpg://{SUPERUSER}@127.0.0.1:{port}/{DATABASE}"
        finally:
            _run(_as_server_user([*pg_ctl, "-m", "immediate", "stop"]), workdir)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
