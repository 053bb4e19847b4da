"""SIGTERM in the middle of 20 streams, to a real `askgate serve`: the short
streams finish within the grace period, the long ones are cut when it runs out
and stored as cancelled with what they had sent, no quota stays reserved, and
the process exits 0. On SQLite with one worker and on PostgreSQL with two."""

import asyncio
import json
import os
import signal
import socket
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from askgate.shutdown import CUT_DETAIL
from tests.fake_upstream import MODEL, FakeUpstream, answer_for

STARTUP_LIMIT = 120  # seconds: guards against hanging, not speeds
GRACE_SECONDS = 5
QUICK_TICKS = 3  # pieces after the first: well within the grace
STREAMS = 20
ACCOUNT = {"username": "stopper", "password": "a long test passphrase"}


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass
class Stream:
    content: str
    text: str = ""
    last: dict[str, Any] | None = None
    after_signal: bool = False  # an event arrived after SIGTERM was sent
    started: asyncio.Event = field(default_factory=asyncio.Event)


async def _read(
    client: httpx.AsyncClient,
    headers: dict[str, str],
    stream: Stream,
    signalled: asyncio.Event,
) -> None:
    body = {"content": stream.content, "stream": True}
    async with client.stream(
        "POST", "/questions", json=body, headers=headers
    ) as response:
        assert response.status_code == 200, await response.aread()
        async for line in response.aiter_lines():
            if not line.startswith("data: "):
                continue
            event = json.loads(line.removeprefix("data: "))
            stream.after_signal |= signalled.is_set()
            if event["type"] == "delta":
                stream.text += event["text"]
                stream.started.set()
            else:
                stream.last = event


@pytest.fixture(params=[("sqlite", 1), ("postgresql", 2)], ids=["sqlite", "pg-2"])
def deployment(request: pytest.FixtureRequest, tmp_path: Path) -> tuple[str, int]:
    backend, workers = request.param
    if backend == "postgresql":
        url: str = request.getfixturevalue("postgres_url")
    else:
        url = f"sqlite+aiosqlite:///{tmp_path / 'askgate.db'}"
    return url, workers


async def test_sigterm_lets_streams_finish_then_cuts_and_stores_the_rest(
    tmp_path: Path, fake_upstream: FakeUpstream, deployment: tuple[str, int]
) -> None:
    url, workers = deployment
    fake_upstream.mode = "slow_stream"
    fake_upstream.slow_stream_interval = 0.2
    fake_upstream.slow_stream_ticks = lambda content: (
        QUICK_TICKS + 1 if content.startswith("quick") else 10_000
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("ASKGATE_")}
    env.update(
        ASKGATE_DATA_DIR=str(tmp_path / "data"),
        ASKGATE_DATABASE_URL=url,
        ASKGATE_LLM_BASE_URL=fake_upstream.base_url,
        ASKGATE_LLM_MODEL=MODEL,
        ASKGATE_SHUTDOWN_GRACE_SECONDS=str(GRACE_SECONDS),
        ASKGATE_DAILY_TOKEN_QUOTA="100000000",
        ASKGATE_MAX_CONCURRENT_QUESTIONS_PER_USER=str(STREAMS),
        ASKGATE_QUESTIONS_PER_MINUTE="1000",
    )
    port = _free_port()
    log = tmp_path / "serve.log"
    with log.open("w") as out:
        process = await asyncio.create_subprocess_exec(
            *[sys.executable, "-m", "askgate.cli", "serve", "--port", str(port)],
            *["--workers", str(workers)],
            cwd=tmp_path,
            env=env,
            stdout=out,
            stderr=asyncio.subprocess.STDOUT,
        )
    streams = [
        Stream(f"{'quick' if i % 2 else 'long'} question {i}") for i in range(STREAMS)
    ]
    signalled = asyncio.Event()
    try:
        async with httpx.AsyncClient(
            base_url=f"http://127.0.0.1:{port}", timeout=60
        ) as client:
            async with asyncio.timeout(STARTUP_LIMIT):
                while True:
                    assert process.returncode is None, log.read_text()
                    try:
                        if (await client.get("/health")).status_code == 200:
                            break
                    except httpx.TransportError:
                        pass
                    await asyncio.sleep(0.2)
            assert (await client.post("/auth/register", json=ACCOUNT)).is_success
            token = (await client.post("/auth/token", data=ACCOUNT)).json()
            headers = {"Authorization": f"Bearer {token['access_token']}"}
            readers = [
                asyncio.create_task(_read(client, headers, s, signalled))
                for s in streams
            ]
            async with asyncio.timeout(STARTUP_LIMIT):
                await asyncio.gather(*(s.started.wait() for s in streams))
            signalled.set()
            process.send_signal(signal.SIGTERM)
            async with asyncio.timeout(GRACE_SECONDS + STARTUP_LIMIT):
                await asyncio.gather(*readers)
                returncode = await process.wait()
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()

    output = log.read_text()
    assert returncode == 0, output
    engine = create_async_engine(url)
    try:
        async with engine.connect() as connection:
            rows = {
                row.content: row
                for row in await connection.execute(
                    text("SELECT content, status, answer, error FROM questions")
                )
            }
            reserved = await connection.scalar(
                text("SELECT coalesce(sum(tokens), 0) FROM quota_reservations")
            )
    finally:
        await engine.dispose()

    assert set(rows) == {s.content for s in streams}
    for stream in streams:
        row = rows[stream.content]
        assert stream.last is not None, stream.content
        if stream.content.startswith("quick"):
            # Finished in the grace period, as if nothing had happened.
            assert stream.last["type"] == "done", stream.last
            assert row.status == "answered"
            assert row.answer == stream.text
            assert answer_for(stream.content).split()[-1] in stream.text
        else:
            # Cut when the grace ran out: told so, and kept as cancelled with
            # what it had received (perhaps a piece more, sent as it was cut).
            assert stream.last == {"type": "error", "detail": CUT_DETAIL}
            assert row.status == "cancelled"
            assert row.error == CUT_DETAIL
            assert stream.text
            assert row.answer.startswith(stream.text)
    # The grace was used: the short streams went on after the signal.
    assert any(s.after_signal for s in streams if s.content.startswith("quick"))
    assert reserved == 0
    assert "Traceback" not in output
