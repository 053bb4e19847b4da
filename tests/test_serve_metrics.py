"""`askgate serve --workers 2` as a real process: the metrics of both workers
merged by whichever answers the scrape, a killed worker's counts kept and its
live gauges dropped, the multiprocess directory removed at exit; and every line
it logs with ASKGATE_LOG_FORMAT=json is one JSON object."""

import asyncio
import json
import os
import signal
import socket
import sys
from pathlib import Path
from typing import Any

import httpx

from tests.fake_upstream import MODEL, FakeUpstream
from tests.metrics_scrape import Scrape

STARTUP_LIMIT = 120  # seconds: a guard against hanging, not a speed
TOKEN = "serve-metrics-token-0123456789"
SCRAPE_HEADERS = {"Authorization": f"Bearer {TOKEN}"}
QUESTION = "Which worker answers?"
BATCH = 10
MAX_BATCHES = 10


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _fresh_connections(port: int) -> httpx.AsyncClient:
    """A client that opens a new connection per request, so that the kernel
    hands requests to either worker."""
    return httpx.AsyncClient(
        base_url=f"http://127.0.0.1:{port}",
        limits=httpx.Limits(max_keepalive_connections=0),
        timeout=30,
    )


def _log_objects(log: Path) -> list[dict[str, Any]]:
    """Every line the serve wrote; each must be one JSON object."""
    lines = [line for line in log.read_text().splitlines() if line.strip()]
    return [json.loads(line) for line in lines]


def _access(log: Path, method: str, route: str) -> list[dict[str, Any]]:
    return [
        line
        for line in _log_objects(log)
        if line.get("method") == method and line.get("route") == route
    ]


async def _wait_until_ready(
    client: httpx.AsyncClient, process: asyncio.subprocess.Process
) -> None:
    async with asyncio.timeout(STARTUP_LIMIT):
        while True:
            assert process.returncode is None, "serve stopped"
            try:
                if (await client.get("/health/ready")).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            await asyncio.sleep(0.2)


async def _scrape(client: httpx.AsyncClient) -> Scrape:
    response = await client.get("/metrics", headers=SCRAPE_HEADERS)
    assert response.status_code == 200, response.text
    return Scrape(response.text)


def _live_gauge_pids(metrics_dir: Path) -> set[int]:
    return {
        int(path.stem.rsplit("_", 1)[1]) for path in metrics_dir.glob("gauge_live*")
    }


async def test_two_workers_count_every_request_once(
    tmp_path: Path, fake_upstream: FakeUpstream
) -> None:
    temp = tmp_path / "tmp"  # where serve makes its multiprocess directory
    temp.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith("ASKGATE_")}
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    env.update(
        TMPDIR=str(temp),
        ASKGATE_DATA_DIR=str(tmp_path / "data"),
        ASKGATE_LLM_BASE_URL=fake_upstream.base_url,
        ASKGATE_LLM_MODEL=MODEL,
        ASKGATE_LOG_FORMAT="json",
        ASKGATE_METRICS_TOKEN=TOKEN,
        ASKGATE_QUESTIONS_PER_MINUTE="10000",
        ASKGATE_MAX_CONCURRENT_QUESTIONS_PER_USER="100",
    )
    port = _free_port()
    log = tmp_path / "serve.log"
    with log.open("w") as out:
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            *("-m", "askgate.cli", "serve", "--workers", "2", "--port", str(port)),
            cwd=tmp_path,
            env=env,
            stdout=out,
            stderr=asyncio.subprocess.STDOUT,
        )
    sent = 0
    try:
        async with _fresh_connections(port) as client:
            await _wait_until_ready(client, process)
            (metrics_dir,) = temp.glob("askgate-metrics-*")
            account = {"username": "metricsuser", "password": "a long passphrase"}
            registered = await client.post("/auth/register", json=account)
            assert registered.status_code == 201, registered.text
            tokens = (await client.post("/auth/token", data=account)).json()
            headers = {"Authorization": f"Bearer {tokens['access_token']}"}
            pids: set[int] = set()
            # Until both workers have answered questions (the kernel decides).
            for _ in range(MAX_BATCHES):
                asked = await asyncio.gather(
                    *(
                        client.post(
                            "/questions", json={"content": QUESTION}, headers=headers
                        )
                        for _ in range(BATCH)
                    )
                )
                assert [r.status_code for r in asked] == [201] * BATCH
                sent += BATCH
                pids = {line["pid"] for line in _access(log, "POST", "/questions")}
                if len(pids) == 2:
                    break
            assert len(pids) == 2, "every question went to one worker"
            scrapes = [await _scrape(client) for _ in range(6)]

            # A worker killed outright: its counts stay, its live gauges go.
            victim = min(pids)
            assert victim in _live_gauge_pids(metrics_dir)
            os.kill(victim, signal.SIGKILL)
            # Dead once the supervisor has reaped it (a zombie still exists).
            polls = 0
            async with asyncio.timeout(30):  # a bound, not a speed
                while True:
                    after_kill = await _scrape(client)
                    polls += 1
                    if victim not in _live_gauge_pids(metrics_dir):
                        break
                    await asyncio.sleep(0.2)
    finally:
        process.send_signal(signal.SIGTERM)
        async with asyncio.timeout(60):
            await process.wait()

    assert len(fake_upstream.requests) == sent
    for scrape in [*scrapes, after_kill]:
        assert (
            scrape.value("askgate_questions_total", model=MODEL, status="answered")
            == sent
        )
        assert (
            scrape.value(
                "askgate_http_requests_total",
                route="/questions",
                method="POST",
                status="201",
            )
            == sent
        )
        assert (
            scrape.value("askgate_upstream_request_duration_seconds_count", model=MODEL)
            == sent
        )
        assert (
            scrape.value(
                "askgate_http_requests_total",
                route="/auth/register",
                method="POST",
                status="201",
            )
            == 1
        )
        assert scrape.value("askgate_upstream_in_flight", model=MODEL) == 0
    assert scrapes[0].value("askgate_prompt_tokens_total", model=MODEL) == sent * len(
        QUESTION.split()
    )
    # Every earlier scrape, counted by whichever worker answered it (a scrape
    # is counted once answered: the last one is not in its own numbers).
    assert (
        after_kill.value(
            "askgate_http_requests_total", route="/metrics", method="GET", status="200"
        )
        == len(scrapes) + polls - 1
    )
    assert process.returncode == 0
    assert list(temp.glob("askgate-metrics-*")) == []  # removed at exit
    for line in _log_objects(log):  # every line is JSON (json.loads raised)
        assert TOKEN not in json.dumps(line)
        assert QUESTION not in json.dumps(line)
