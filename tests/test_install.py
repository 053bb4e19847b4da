"""`pip install .` without the source tree: the wheel built from this checkout,
installed (not editable) into a fresh venv, migrates and serves from an empty
directory.

Nothing is downloaded: the wheel is built with the test venv's hatchling
(--no-build-isolation) and installed with --no-deps --no-index; the fresh venv
borrows askgate's dependencies from the test venv through a .pth file, which
adds them after its own site-packages, so `import askgate` finds the installed
copy and never the sources.
"""

import asyncio
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import sysconfig
import venv
import zipfile
from pathlib import Path

import httpx
import pytest
from alembic.script import ScriptDirectory

from askgate import migrate
from tests.fake_upstream import MODEL, FakeUpstream, answer_for

ROOT = Path(__file__).resolve().parents[1]
MIGRATIONS = ROOT / "src" / "askgate" / "migrations"
STATIC = ROOT / "src" / "askgate" / "web" / "static"
COMMAND_LIMIT = 300  # seconds: guards against hanging, not speeds
STARTUP_LIMIT = 120


def _run(
    *args: str | Path, cwd: Path | None = None, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    completed = subprocess.run(
        [str(arg) for arg in args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=COMMAND_LIMIT,
        check=False,
    )
    assert completed.returncode == 0, completed.stdout + completed.stderr
    return completed


def _clean_environment() -> dict[str, str]:
    """This process's environment without anything that would lead the installed
    askgate back to the sources or to the test venv's settings."""
    dropped = ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV", "PYTHONSTARTUP")
    return {
        key: value
        for key, value in os.environ.items()
        if not key.startswith("ASKGATE_") and key not in dropped
    }


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    _run(
        sys.executable,
        "-m",
        "pip",
        "wheel",
        "--no-deps",
        "--no-build-isolation",
        "--no-index",
        "--wheel-dir",
        out,
        ROOT,
    )
    (built,) = out.glob("askgate-*.whl")
    return built


@pytest.fixture(scope="module")
def fresh_venv(wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A new venv with the wheel installed, and a .pth to the test venv's
    site-packages for askgate's dependencies."""
    directory = tmp_path_factory.mktemp("fresh-venv")
    venv.EnvBuilder(with_pip=False, symlinks=True).create(directory)
    python = directory / "bin" / "python"
    _run(
        sys.executable,
        "-m",
        "pip",
        "--python",
        python,
        "install",
        "--no-deps",
        "--no-index",
        wheel,
    )
    site_packages = _run(
        python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"
    ).stdout.strip()
    ours = sysconfig.get_paths()
    borrowed = dict.fromkeys([ours["purelib"], ours["platlib"]])  # once each
    (Path(site_packages) / "test-venv-dependencies.pth").write_text(
        "".join(f"{path}\n" for path in borrowed)
    )
    return directory


@pytest.fixture
def empty_dir(tmp_path: Path) -> Path:
    directory = tmp_path / "empty"
    directory.mkdir()
    return directory


def test_the_wheel_carries_the_migrations_and_data(wheel: Path) -> None:
    names = set(zipfile.ZipFile(wheel).namelist())

    migrations = {
        f"askgate/{path.relative_to(MIGRATIONS.parent).as_posix()}"
        for path in MIGRATIONS.rglob("*")
        if path.is_file() and "__pycache__" not in path.parts
    }
    assert "askgate/migrations/env.py" in migrations
    assert "askgate/migrations/script.py.mako" in migrations
    assert len([m for m in migrations if "/versions/" in m]) >= 9
    assert migrations <= names
    assert "askgate/data/common-passwords.txt.gz" in names
    static = {
        f"askgate/web/{path.relative_to(STATIC.parent).as_posix()}"
        for path in STATIC.rglob("*")
        if path.is_file()
    }
    assert "askgate/web/static/index.html" in static
    assert static <= names  # the web page, its scripts and vendored libraries
    assert not [name for name in names if "__pycache__" in name]
    assert not [name for name in names if name.startswith(("tests/", "scripts/"))]


def test_the_installed_copy_is_the_one_that_runs(
    fresh_venv: Path, empty_dir: Path
) -> None:
    found = _run(
        fresh_venv / "bin" / "python",
        "-c",
        "import askgate, askgate.migrate; "
        "print(askgate.__file__); print(askgate.migrate.MIGRATIONS)",
        cwd=empty_dir,
        env=_clean_environment(),
    ).stdout.split()

    module, migrations = (Path(line) for line in found)
    assert module.is_relative_to(fresh_venv), module
    assert not module.is_relative_to(ROOT)
    assert migrations.is_relative_to(fresh_venv)
    assert (migrations / "versions").is_dir()
    script = (fresh_venv / "bin" / "askgate").read_text().splitlines()[0]
    assert script == f"#!{fresh_venv / 'bin' / 'python'}"


def _head() -> str:
    """The newest revision in the source tree's migrations."""
    head = ScriptDirectory.from_config(migrate.alembic_config("")).get_current_head()
    assert head is not None
    return head


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


async def _wait_until_serving(
    client: httpx.AsyncClient, process: asyncio.subprocess.Process
) -> None:
    async with asyncio.timeout(STARTUP_LIMIT):
        while True:
            assert process.returncode is None, "serve stopped"
            try:
                if (await client.get("/health")).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            await asyncio.sleep(0.2)


async def test_an_installed_askgate_migrates_and_serves(
    fresh_venv: Path, empty_dir: Path, fake_upstream: FakeUpstream
) -> None:
    askgate = fresh_venv / "bin" / "askgate"
    env = _clean_environment()
    assert list(empty_dir.iterdir()) == []

    await asyncio.to_thread(_run, askgate, "db", "upgrade", cwd=empty_dir, env=env)

    database = empty_dir / "data" / "askgate.db"  # the default ASKGATE_DATA_DIR
    with sqlite3.connect(database) as connection:
        tables = {
            name
            for (name,) in connection.execute(
                "SELECT name FROM sqlite_master WHERE type = 'table'"
            )
        }
        (version,) = connection.execute("SELECT version_num FROM alembic_version")
    assert {"users", "questions"} <= tables
    assert version == (_head(),)

    env.update(ASKGATE_LLM_BASE_URL=fake_upstream.base_url, ASKGATE_LLM_MODEL=MODEL)
    port = _free_port()
    log = empty_dir / "serve.log"
    with log.open("w") as out:
        process = await asyncio.create_subprocess_exec(
            askgate,
            "serve",
            "--port",
            str(port),
            cwd=empty_dir,
            env=env,
            stdout=out,
            stderr=asyncio.subprocess.STDOUT,
        )
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as client:
            await _wait_until_serving(client, process)
            account = {"username": "installed", "password": "a long test passphrase"}
            registered = await client.post("/auth/register", json=account)
            token = (await client.post("/auth/token", data=account)).json()
            asked = await client.post(
                "/questions",
                json={"content": "Installed?"},
                headers={"Authorization": f"Bearer {token['access_token']}"},
            )
            page = await client.get("/")
            script = await client.get("/web/js/app.js")
    finally:
        process.send_signal(signal.SIGTERM)
        async with asyncio.timeout(STARTUP_LIMIT):
            await process.wait()

    assert registered.status_code == 201, registered.text
    assert asked.status_code == 201, asked.text
    assert asked.json()["answer"] == answer_for("Installed?")
    assert page.status_code == 200
    assert page.text == (STATIC / "index.html").read_text()
    assert script.status_code == 200
    assert script.content == (STATIC / "js" / "app.js").read_bytes()
    assert len(fake_upstream.requests) == 1
    assert "bundled model" not in log.read_text()
