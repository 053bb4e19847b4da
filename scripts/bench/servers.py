"""Start the servers the benchmark measures, each its own process on loopback:
the fake upstream, the bare pass-through (the floor) and askgate itself."""

import json
import os
import secrets
import sys
from dataclasses import dataclass
from pathlib import Path

from bench.processes import Processes, Server, free_port, wait_until_answering

HERE = Path(__file__).resolve().parent
STARTUP_TIMEOUT_SECONDS = 60
PEER_STARTUP_TIMEOUT_SECONDS = 180  # LiteLLM imports a great deal
# Limits that would otherwise throttle the load itself; everything else is default.
UNTHROTTLED = {
    "ASKGATE_QUESTIONS_PER_MINUTE": "100000000",
    "ASKGATE_LLM_MAX_CONCURRENCY": "100000",
    "ASKGATE_REGISTRATIONS_PER_HOUR": "100000",
    "ASKGATE_MAX_CONCURRENT_QUESTIONS_PER_USER": "100000",
}


def _python_script(name: str) -> list[str]:
    return [sys.executable, str(HERE / name)]


def start_upstream(
    processes: Processes, workdir: Path, *, chunks: int, chunk_delay: float = 0.0
) -> Server:
    port = free_port()
    argv = [
        *_python_script("upstream.py"),
        f"--port={port}",
        f"--chunks={chunks}",
        f"--chunk-delay={chunk_delay}",
    ]
    server = processes.start(
        "fake upstream",
        argv,
        log=workdir / f"upstream-{port}.log",
        url=f"http://127.0.0.1:{port}",
    )
    wait_until_answering(server, "/v1/models", STARTUP_TIMEOUT_SECONDS)
    return server


def start_passthrough(
    processes: Processes, workdir: Path, *, upstream: Server, workers: int = 1
) -> Server:
    port = free_port()
    argv = [
        *_python_script("passthrough.py"),
        f"--port={port}",
        f"--upstream={upstream.url}/v1",
        f"--workers={workers}",
    ]
    server = processes.start(
        "pass-through",
        argv,
        log=workdir / f"passthrough-{port}.log",
        url=f"http://127.0.0.1:{port}",
    )
    wait_until_answering(server, "/questions", STARTUP_TIMEOUT_SECONDS)
    return server


@dataclass(frozen=True)
class AskgateOptions:
    workers: int = 1
    database_url: str | None = None  # SQLite in the data directory when None
    daily_token_quota: int | None = None

    def describe(self) -> str:
        database = "SQLite" if self.database_url is None else "PostgreSQL"
        quota = "" if self.daily_token_quota is None else ", quota on"
        return f"{self.workers} worker{'s' * (self.workers > 1)}, {database}{quota}"


def _askgate_environment(
    data_dir: Path, upstream: Server, options: AskgateOptions
) -> dict[str, str]:
    # The caller's own ASKGATE_* settings would change what is measured.
    env = {k: v for k, v in os.environ.items() if not k.startswith("ASKGATE_")}
    env |= UNTHROTTLED
    env |= {
        "ASKGATE_DATA_DIR": str(data_dir),
        "ASKGATE_SECRET_KEY": secrets.token_urlsafe(36),  # 48 characters
        "ASKGATE_LLM_BASE_URL": f"{upstream.url}/v1",
        "ASKGATE_LLM_MODEL": "bench-model",
    }
    if options.database_url is not None:
        env["ASKGATE_DATABASE_URL"] = options.database_url
    if options.daily_token_quota is not None:
        env["ASKGATE_DAILY_TOKEN_QUOTA"] = str(options.daily_token_quota)
    return env


def start_askgate(
    processes: Processes,
    workdir: Path,
    *,
    upstream: Server,
    options: AskgateOptions,
) -> Server:
    """`askgate serve` with a fresh data directory; its log stays in `workdir`."""
    port = free_port()
    data_dir = workdir / f"askgate-{port}"
    data_dir.mkdir()
    argv = [
        str(Path(sys.executable).parent / "askgate"),
        "serve",
        f"--port={port}",
        f"--workers={options.workers}",
    ]
    server = processes.start(
        "askgate",
        argv,
        log=workdir / f"askgate-{port}.log",
        url=f"http://127.0.0.1:{port}",
        env=_askgate_environment(data_dir, upstream, options),
        cwd=data_dir,  # so that no .env file of the caller's is read
    )
    wait_until_answering(server, "/health", STARTUP_TIMEOUT_SECONDS)
    return server


def litellm_path() -> Path:
    """Installed by `make bench-peers` into a venv of its own, beside askgate's."""
    return Path(sys.executable).parent.parent / "peers" / "bin" / "litellm"


def _litellm_config(upstream: Server) -> str:
    # JSON is YAML: no YAML writer needed.
    model = {
        "model_name": "bench-model",
        "litellm_params": {
            "model": "openai/bench-model",
            "api_base": f"{upstream.url}/v1",
            "api_key": "unused",
        },
    }
    return json.dumps({"model_list": [model], "litellm_settings": {"telemetry": False}})


def start_litellm(
    processes: Processes, workdir: Path, *, upstream: Server
) -> tuple[Server, str]:
    """LiteLLM's proxy with no database and no callbacks, in front of the same
    upstream; its master key (it refuses to start without one) is the token."""
    port = free_port()
    home = workdir / f"litellm-{port}"
    home.mkdir()
    config = home / "config.yaml"
    config.write_text(_litellm_config(upstream))
    master_key = f"sk-{secrets.token_hex(32)}"
    env = os.environ | {
        "LITELLM_MASTER_KEY": master_key,
        "LITELLM_LOCAL_MODEL_COST_MAP": "True",  # no download at start
        "LITELLM_TELEMETRY": "False",
    }
    argv = [
        str(litellm_path()),
        f"--config={config}",
        "--host=127.0.0.1",
        f"--port={port}",
    ]
    server = processes.start(
        "LiteLLM",
        argv,
        log=workdir / f"litellm-{port}.log",
        url=f"http://127.0.0.1:{port}",
        env=env,
        cwd=home,  # so that no .env file of the caller's is read
    )
    wait_until_answering(server, "/health/liveliness", PEER_STARTUP_TIMEOUT_SECONDS)
    return server, master_key
