"""A real Redis server for the tests: one per test session, emptied before each test.

Test modules import the fixtures they use (`from tests.redis_server import ...`).
`make test` installs Debian's redis-server when it is missing (see the Makefile).
"""

import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from askgate.config import Settings

STARTUP_TIMEOUT_SECONDS = 10.0
BACKENDS = ["memory", "redis"]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _command(port: int, command: bytes) -> bytes:
    """One inline command (Redis accepts them as plain text lines)."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(command + b"\r\n")
        return sock.recv(1024)


def _wait_until_ready(process: subprocess.Popen[bytes], port: int) -> None:
    deadline = time.monotonic() + STARTUP_TIMEOUT_SECONDS
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"redis-server exited with {process.returncode}")
        try:
            if _command(port, b"PING") == b"+PONG\r\n":
                return
        except OSError:
            pass
        time.sleep(0.05)
    pytest.fail(f"redis-server did not answer on port {port}")


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    """The port of a throwaway redis-server (no persistence)."""
    executable = shutil.which("redis-server")
    if executable is None:
        pytest.fail(
            "redis-server is not installed: run `make redis` "
            "(apt-get install redis-server)"
        )
    port = _free_port()
    workdir: Path = tmp_path_factory.mktemp("redis")
    process = subprocess.Popen(
        [
            executable,
            *("--port", str(port)),
            *("--bind", "127.0.0.1"),
            *("--save", ""),
            *("--appendonly", "no"),
            *("--dir", str(workdir)),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        _wait_until_ready(process, port)
        yield port
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@pytest.fixture
def redis_url(redis_server: int) -> str:
    """The server's URL, with every key of earlier tests gone."""
    assert _command(redis_server, b"FLUSHALL") == b"+OK\r\n"
    return f"redis://127.0.0.1:{redis_server}/0"


def with_backend(settings: Settings, request: pytest.FixtureRequest) -> Settings:
    """`settings` on the backend named by the test's parameter ("memory"/"redis")."""
    if request.param == "redis":
        settings.redis_url = request.getfixturevalue("redis_url")
    return settings
