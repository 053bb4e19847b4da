"""Start the benchmark's servers as process groups, and stop them all on the way out.

Each server gets its own session (process group), so stopping it also stops what it
started (uvicorn's workers, forked pass-through workers). `Processes` stops every
group it started when its `with` block ends, by an error or Ctrl-C too.
"""

import contextlib
import os
import resource
import signal
import socket
import subprocess
import time
import types
import urllib.error
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

STOP_TIMEOUT_SECONDS = 10
OPEN_FILES = 65536


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def raise_open_files_limit() -> None:
    """Room for thousands of sockets (1,000 open streams need two each)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = OPEN_FILES if hard == resource.RLIM_INFINITY else min(OPEN_FILES, hard)
    if soft != resource.RLIM_INFINITY and soft < wanted:
        resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))


class StartError(Exception):
    """A server exited or did not answer in time; the message has its log's end."""


@dataclass(frozen=True)
class Server:
    name: str
    url: str
    process: subprocess.Popen[bytes]
    log: Path

    @property
    def pid(self) -> int:
        return self.process.pid

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(STOP_TIMEOUT_SECONDS)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait()
    # Workers of a group outlive their leader when it is killed: end them too.
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)


class Processes(contextlib.AbstractContextManager["Processes"]):
    """The servers started in a `with` block, stopped (newest first) when it ends."""

    def __init__(self) -> None:
        self._started: list[subprocess.Popen[bytes]] = []

    def start(
        self,
        name: str,
        argv: list[str],
        *,
        log: Path,
        url: str,
        env: Mapping[str, str] | None = None,
        cwd: Path | None = None,
    ) -> Server:
        with log.open("ab") as log_file:
            process = subprocess.Popen(  # noqa: S603 - our own argv
                argv,
                stdin=subprocess.DEVNULL,
                stdout=log_file,
                stderr=subprocess.STDOUT,
                env=env,
                cwd=cwd,
                start_new_session=True,
                # Set before exec; Popen is only called while no threads run.
                preexec_fn=raise_open_files_limit,
            )
        self._started.append(process)
        return Server(name=name, url=url, process=process, log=log)

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: types.TracebackType | None,
    ) -> None:
        while self._started:
            _stop(self._started.pop())


def wait_until_answering(server: Server, path: str, timeout: float) -> None:
    """Poll `path` until the server answers it (any status); fail if it exits."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            raise StartError(
                f"{server.name} exited with {server.process.returncode}:\n"
                f"{server.log_tail()}"
            )
        url = f"{server.url}{path}"
        try:
            with urllib.request.urlopen(url, timeout=2):  # noqa: S310 - loopback
                return
        except urllib.error.HTTPError:
            return  # an error status is an answer too
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            time.sleep(0.1)
    raise StartError(
        f"{server.name} did not answer {path} in {timeout:.0f} s:\n{server.log_tail()}"
    )
