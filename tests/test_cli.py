"""`askgate` commands, run as real processes."""

import os
import sqlite3
import stat
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest


def run_cli(
    *args: str, data_dir: Path, stdin: str = "", **env: str
) -> subprocess.CompletedProcess[str]:
    environment = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith("ASKGATE_")
    }
    environment.update({"ASKGATE_DATA_DIR": str(data_dir), **env})
    return subprocess.run(
        [sys.executable, "-m", "askgate.cli", *args],
        input=stdin,
        capture_output=True,
        text=True,
        env=environment,
        # in the data directory, or the closest existing directory above it
        cwd=next(path for path in (data_dir, *data_dir.parents) if path.is_dir()),
        timeout=120,
        check=False,
    )


def test_create_admin_reads_the_password_from_stdin(tmp_path: Path) -> None:
    result = run_cli(
        "create-admin",
        "--username",
        "root",
        "--password-stdin",
        data_dir=tmp_path,
        stdin="a long admin passphrase\n",
    )
    assert result.returncode == 0, result.stderr
    assert "Created admin 'root'" in result.stdout
    assert "a long admin passphrase" not in result.stdout + result.stderr
    with sqlite3.connect(tmp_path / "askgate.db") as connection:
        role, password_hash = connection.execute(
            "SELECT role, password_hash FROM users WHERE username = 'root'"
        ).fetchone()
    assert role == "admin"
    assert password_hash.startswith("$argon2id$")


@pytest.mark.parametrize(
    ("username", "password", "message"),
    [
        ("root", "short", "invalid password"),
        ("x", "a long admin passphrase", "invalid username"),
    ],
)
def test_create_admin_rejects_bad_input(
    tmp_path: Path, username: str, password: str, message: str
) -> None:
    result = run_cli(
        "create-admin",
        "--username",
        username,
        "--password-stdin",
        data_dir=tmp_path,
        stdin=password + "\n",
    )
    assert result.returncode == 2
    assert message in result.stderr
    assert password not in result.stderr


def test_create_admin_refuses_a_taken_username(tmp_path: Path) -> None:
    for expected in (0, 2):
        result = run_cli(
            "create-admin",
            "--username",
            "Root",
            "--password-stdin",
            data_dir=tmp_path,
            stdin="a long admin passphrase\n",
        )
        assert result.returncode == expected, result.stderr
    assert "already taken" in result.stderr


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("ASKGATE_ACCESS_TOKEN_EXPIRE_MINUTES", "soon"),
        ("ASKGATE_SECRET_KEY", "too-short"),
        ("ASKGATE_LLM_BASE_URL", "ftp://example.com"),
        ("ASKGATE_LLM_READ_TIMEOUT", "-1"),
    ],
)
def test_an_invalid_setting_stops_startup_naming_it(
    tmp_path: Path, name: str, value: str
) -> None:
    result = run_cli("db", "upgrade", data_dir=tmp_path, **{name: value})
    assert result.returncode == 2
    assert name in result.stderr
    assert not (tmp_path / "askgate.db").exists()


def test_a_generated_secret_key_is_private_and_reused(tmp_path: Path) -> None:
    first = run_cli("db", "upgrade", data_dir=tmp_path)
    assert first.returncode == 0, first.stderr
    assert "generated a signing key" in first.stderr
    key_file = tmp_path / "secret_key"
    key = key_file.read_text()
    assert len(key) >= 32
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert key not in first.stderr

    second = run_cli("db", "upgrade", data_dir=tmp_path)
    assert second.returncode == 0, second.stderr
    assert "generated a signing key" not in second.stderr
    assert key_file.read_text() == key


def test_db_downgrade_then_upgrade(tmp_path: Path) -> None:
    assert run_cli("db", "upgrade", data_dir=tmp_path).returncode == 0
    down = run_cli("db", "downgrade", "base", data_dir=tmp_path)
    assert down.returncode == 0, down.stderr
    with sqlite3.connect(tmp_path / "askgate.db") as connection:
        tables = connection.execute(
            "SELECT name FROM sqlite_master WHERE name = 'users'"
        ).fetchall()
    assert tables == []
    assert run_cli("db", "upgrade", data_dir=tmp_path).returncode == 0


# A configured key used to skip creating the data directory, so the database
# could not be opened in it.
SECRET_KEYS = [None, "a-configured-secret-key-long-enough-0123"]


@pytest.mark.parametrize("secret_key", SECRET_KEYS, ids=["generated", "configured"])
def test_a_missing_data_dir_is_created_private(
    tmp_path: Path, secret_key: str | None
) -> None:
    data_dir = tmp_path / "new" / "data"
    env = {"ASKGATE_SECRET_KEY": secret_key} if secret_key else {}

    result = run_cli("db", "upgrade", data_dir=data_dir, **env)

    assert result.returncode == 0, result.stderr
    assert stat.S_IMODE(data_dir.stat().st_mode) == 0o700
    assert (data_dir / "askgate.db").is_file()


def _under_a_file(tmp_path: Path) -> Path:
    (tmp_path / "file").write_text("")
    return tmp_path / "file" / "data"


def _a_file(tmp_path: Path) -> Path:
    (tmp_path / "file").write_text("")
    return tmp_path / "file"


def _under_a_read_only_dir(tmp_path: Path) -> Path:
    if os.geteuid() == 0:
        pytest.skip("root may write into a read-only directory")
    (tmp_path / "read-only").mkdir(mode=0o500)
    return tmp_path / "read-only" / "data"


@pytest.mark.parametrize("where", [_under_a_file, _a_file, _under_a_read_only_dir])
@pytest.mark.parametrize("secret_key", SECRET_KEYS, ids=["generated", "configured"])
def test_an_uncreatable_data_dir_stops_startup_in_one_line(
    tmp_path: Path, where: Callable[[Path], Path], secret_key: str | None
) -> None:
    data_dir = where(tmp_path)
    env = {"ASKGATE_SECRET_KEY": secret_key} if secret_key else {}

    result = run_cli("db", "upgrade", data_dir=data_dir, **env)

    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert result.stderr.startswith(f"askgate: ASKGATE_DATA_DIR={data_dir}: ")
    assert result.stderr.count("\n") == 1, result.stderr


def test_a_refused_migration_is_one_line_naming_the_accounts(tmp_path: Path) -> None:
    before = run_cli("db", "upgrade", "20261202_auth_epoch", data_dir=tmp_path)
    assert before.returncode == 0, before.stderr
    with sqlite3.connect(tmp_path / "askgate.db") as connection:
        connection.executemany(
            "INSERT INTO users (id, username, password_hash, role, is_active, "
            "created_at, updated_at) VALUES (?, ?, 'x', 'user', 1, "
            "CURRENT_TIMESTAMP, CURRENT_TIMESTAMP)",
            [(7, "bob"), (9, "\uff42\uff4f\uff42")],  # "ｂｏｂ"
        )

    result = run_cli("db", "upgrade", data_dir=tmp_path)

    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert (
        "askgate: cannot make usernames and emails unique ignoring case and "
        "Unicode forms: the usernames of users 7, 9 are the same once normalized."
    ) in result.stderr
