"""`askgate serve` as a real process, with the bundled model answering."""

import importlib.util
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import openai
import pytest

from askgate.llm.local import LocalModelError, bundled_model_path

pytestmark = pytest.mark.e2e


def _bundled_model_or_skip() -> Path:
    try:
        if importlib.util.find_spec("llama_cpp") is None:
            raise LocalModelError("llama-cpp-python is not installed")
        return bundled_model_path()
    except LocalModelError as exc:
        if os.environ.get("CI"):
            pytest.fail(f"CI must run the end-to-end test: {exc}")
        pytest.skip(f"bundled model not installed: {exc}")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _children(pid: int, marker: str) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            status = (entry / "status").read_text()
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        ppid = next(
            int(line.split()[1])
            for line in status.splitlines()
            if line.startswith("PPid:")
        )
        if ppid == pid and marker in cmdline:
            found.append(int(entry.name))
    return found


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return False
    return "State:\tZ" not in state


def _wait_gone(pid: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not _alive(pid):
            return True
        time.sleep(0.1)
    return False


@dataclass
class Server:
    process: subprocess.Popen[str]
    base_url: str
    log: Path


@pytest.fixture
def server(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Server]:
    workers = str(getattr(request, "param", 1))
    _bundled_model_or_skip()
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("ASKGATE_")}
    env["ASKGATE_DATA_DIR"] = str(tmp_path / "data")
    log = tmp_path / "serve.log"
    with log.open("w") as out:
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "askgate.cli",
                "serve",
                "--port",
                str(port),
                "--workers",
                workers,
            ],
            cwd=tmp_path,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            text=True,
        )
    base_url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 180
    while True:
        assert process.poll() is None, log.read_text()
        try:
            if httpx.get(f"{base_url}/health", timeout=2).json()["llm"] == "ok":
                break
        except httpx.HTTPError:
            pass
        assert time.monotonic() < deadline, log.read_text()
        time.sleep(0.5)
    yield Server(process, base_url, log)
    if process.poll() is None:
        process.kill()
        process.wait()


@pytest.mark.parametrize("server", [2], indirect=True)  # two workers, one model
def test_serve_answers_with_the_bundled_model(server: Server) -> None:
    with httpx.Client(base_url=server.base_url, timeout=120) as client:
        registered = client.post(
            "/auth/register",
            json={"username": "e2e", "password": "end to end passphrase"},
        )
        assert registered.status_code == 201, registered.text
        tokens = client.post(
            "/auth/token",
            data={"username": "e2e", "password": "end to end passphrase"},
        )
        assert tokens.status_code == 200, tokens.text
        headers = {"Authorization": f"Bearer {tokens.json()['access_token']}"}

        started = time.perf_counter()
        asked = client.post(
            "/questions",
            json={"content": "What is the capital of France?", "max_tokens": 48},
            headers=headers,
        )
        elapsed = time.perf_counter() - started
        assert asked.status_code == 201, asked.text
        question = asked.json()
        assert question["status"] == "answered"
        assert question["answer"].strip()
        assert question["usage"]["completion_tokens"] > 0
        print(f"bundled model answered in {elapsed:.2f}s: {question['answer']!r}")

        history = client.get("/questions/me", headers=headers)
        assert history.status_code == 200
        assert history.json()[0]["id"] == question["id"]
        assert history.json()[0]["answer"] == question["answer"]

    model_servers = _children(server.process.pid, "llama_cpp.server")
    assert len(model_servers) == 1  # one model server per `serve`, not per worker

    server.process.send_signal(signal.SIGTERM)
    assert server.process.wait(timeout=60) == 0, server.log.read_text()
    assert _wait_gone(model_servers[0], 30), "the model server outlived askgate"
    assert "Stopped the bundled model" in server.log.read_text()


def test_killing_serve_leaves_no_orphan_model_server(server: Server) -> None:
    model_servers = _children(server.process.pid, "llama_cpp.server")
    assert len(model_servers) == 1
    server.process.kill()  # SIGKILL: askgate's own cleanup never runs
    server.process.wait(timeout=10)
    assert _wait_gone(model_servers[0], 30), "orphaned model server"


def test_the_openai_sdk_works_against_serve(server: Server) -> None:
    """An unchanged openai client pointed at askgate: models, an answer and a
    stream with its usage, all from the bundled model."""
    with httpx.Client(base_url=server.base_url, timeout=120) as client:
        client.post(
            "/auth/register", json={"username": "sdk", "password": "the sdk passphrase"}
        )
        tokens = client.post(
            "/auth/token", data={"username": "sdk", "password": "the sdk passphrase"}
        )
        token = tokens.json()["access_token"]
    with openai.OpenAI(
        base_url=f"{server.base_url}/v1", api_key=token, timeout=120, max_retries=0
    ) as sdk:
        [model] = sdk.models.list()
        reply = sdk.chat.completions.create(
            model=model.id,
            messages=[{"role": "user", "content": "What is the capital of France?"}],
            max_tokens=32,
        )
        stream = sdk.chat.completions.create(
            model=model.id,
            messages=[{"role": "user", "content": "Say hello."}],
            max_tokens=16,
            stream=True,
            stream_options={"include_usage": True},
        )
        chunks = list(stream)

    assert reply.choices[0].message.content
    assert reply.usage is not None
    assert reply.usage.completion_tokens > 0
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert chunks[-1].usage is not None
    assert chunks[-1].usage.total_tokens > 0
