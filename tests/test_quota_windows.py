"""A reservation whose process died stops counting (quota_reservations).

Reservations are held per time window; only the windows younger than the
longest a question can run (quota.reservation_max_age) count. Time is moved by
ageing the stored windows (each one `AGE` windows older), not by waiting.
"""

import asyncio
import os
import signal
import socket
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import text

from askgate.config import Settings
from askgate.db import Database, utcnow
from askgate.quota.service import (
    WINDOW_SECONDS,
    first_live_window,
    reservation_max_age,
    window_of,
)
from tests.factories import Account
from tests.fake_upstream import MODEL, FakeUpstream
from tests.postgres_server import (
    BACKENDS,
    postgres_server,
    postgres_url,
    with_database,
)
from tests.test_quota import estimate, reservation, usage

__all__ = ["postgres_server", "postgres_url"]  # fixtures used through `with_database`

QUOTA = 1000
STARTUP_LIMIT = 120  # seconds: a guard against hanging, not a speed


@pytest.fixture(params=BACKENDS)
def settings(settings: Settings, request: pytest.FixtureRequest) -> Settings:
    settings = with_database(settings, request)
    settings.questions_per_minute = 10_000
    settings.daily_token_quota = QUOTA
    return settings


def age(settings: Settings) -> int:
    """How many windows a reservation must age to stop counting."""
    return int(reservation_max_age(settings) // WINDOW_SECONDS) + 2


async def windows(db: Database, user: Account) -> list[tuple[int, int]]:
    """The user's stored windows and their tokens, oldest first."""
    async with db.read() as session:
        rows = await session.execute(
            text(
                'SELECT "window", tokens FROM quota_reservations '
                'WHERE user_id = :user_id ORDER BY "window"'
            ),
            {"user_id": user.id},
        )
        return [(row[0], row[1]) for row in rows]


async def hold(db: Database, user: Account, window: int, tokens: int) -> None:
    """A reservation left by a process that died before settling it."""
    async with db.write() as session:
        await session.execute(
            text(
                "INSERT INTO token_usage (user_id, day, used) VALUES (:u, :d, 0) "
                "ON CONFLICT DO NOTHING"
            ),
            {"u": user.id, "d": utcnow().date()},
        )
        await session.execute(
            text(
                'INSERT INTO quota_reservations (user_id, day, "window", tokens) '
                "VALUES (:u, :d, :w, :t)"
            ),
            {"u": user.id, "d": utcnow().date(), "w": window, "t": tokens},
        )


async def grow_older(db: Database, user: Account, windows: int) -> None:
    """As if `windows` windows of time had passed for the user's reservations."""
    async with db.write() as session:
        await session.execute(
            text(
                'UPDATE quota_reservations SET "window" = "window" - :n '
                "WHERE user_id = :u"
            ),
            {"n": windows, "u": user.id},
        )


async def ask(
    client: httpx.AsyncClient, headers: dict[str, str], max_tokens: int
) -> httpx.Response:
    return await client.post(
        "/questions",
        json={"content": "hi", "max_tokens": max_tokens},
        headers=headers,
    )


async def test_a_dead_reservation_counts_while_fresh_then_stops(
    client: httpx.AsyncClient,
    settings: Settings,
    db: Database,
    user: Account,
    user_headers: dict[str, str],
) -> None:
    now = utcnow()
    await hold(db, user, window_of(now), 600)  # died just now
    # Died longer ago than a question can run; far enough back that ageing the
    # fresh one below never gives it the same window.
    stale = first_live_window(now, reservation_max_age(settings)) - 2 * age(settings)
    await hold(db, user, stale, 300)

    fresh = await usage(client, user_headers)
    assert (fresh["reserved_tokens"], fresh["remaining"]) == (600, QUOTA - 600)
    needs_500 = 500 - reservation("hi", 0)
    refused = await ask(client, user_headers, needs_500)
    assert refused.status_code == 429, refused.text
    assert "400 of 1000 tokens left today" in refused.json()["detail"]

    await grow_older(db, user, age(settings))

    later = await usage(client, user_headers)
    assert (later["reserved_tokens"], later["remaining"]) == (0, QUOTA)
    answered = await ask(client, user_headers, needs_500)
    assert answered.status_code == 201, answered.text
    after = await usage(client, user_headers)
    assert after["reserved_tokens"] == 0
    assert after["used_tokens"] == sum(answered.json()["usage"].values())
    # Settling deleted the stale windows of the user's day with its own.
    assert await windows(db, user) == []


async def _read_deltas(lines: AsyncIterator[str], count: int) -> None:
    seen = 0
    async for line in lines:
        if line.startswith("data:") and '"delta"' in line:
            seen += 1
            if seen == count:
                return


@pytest.fixture
def slow_upstream(fake_upstream: FakeUpstream) -> FakeUpstream:
    fake_upstream.mode = "slow_stream"  # " tick0", " tick1", ... and no usage
    return fake_upstream


async def test_a_running_question_counts_beside_dead_reservations(
    server_url: str,
    client: httpx.AsyncClient,
    settings: Settings,
    db: Database,
    user: Account,
    user_headers: dict[str, str],
    slow_upstream: FakeUpstream,
) -> None:
    now = utcnow()
    await hold(db, user, first_live_window(now, reservation_max_age(settings)) - 1, 700)
    await hold(db, user, window_of(now) - 1, 100)  # a minute ago: still counts
    held = reservation("Count forever", 100)

    async with (
        httpx.AsyncClient(base_url=server_url) as real_client,
        real_client.stream(
            "POST",
            "/questions",
            json={"content": "Count forever", "max_tokens": 100, "stream": True},
            headers=user_headers,
        ) as response,
    ):
        assert response.status_code == 200
        await asyncio.wait_for(_read_deltas(response.aiter_lines(), 2), timeout=5)
        in_flight = await usage(client, user_headers)
        assert in_flight["reserved_tokens"] == held + 100

    await asyncio.wait_for(runtime_drained(client, user_headers, 100), timeout=10)
    stored = await client.get("/questions/me", headers=user_headers)
    question = stored.json()[0]
    assert question["status"] == "cancelled"
    body = await usage(client, user_headers)
    assert body["used_tokens"] == estimate("Count forever", question["answer"])
    # The dead fresh reservation still counts; the stale one was deleted.
    assert [tokens for _, tokens in await windows(db, user)] == [100]


async def runtime_drained(
    client: httpx.AsyncClient, headers: dict[str, str], reserved: int
) -> None:
    """Until the cancelled stream is settled (only `reserved` is held)."""
    while (await usage(client, headers))["reserved_tokens"] != reserved:
        await asyncio.sleep(0.02)


async def test_settling_a_question_whose_window_went_stale(
    server_url: str,
    client: httpx.AsyncClient,
    settings: Settings,
    db: Database,
    user: Account,
    user_headers: dict[str, str],
    slow_upstream: FakeUpstream,
) -> None:
    """A question that outlived the reservation age (which askgate's deadline
    prevents) settles without making a window negative or failing."""
    async with (
        httpx.AsyncClient(base_url=server_url) as real_client,
        real_client.stream(
            "POST",
            "/questions",
            json={"content": "Count forever", "max_tokens": 100, "stream": True},
            headers=user_headers,
        ) as response,
    ):
        assert response.status_code == 200
        lines = response.aiter_lines()
        await asyncio.wait_for(_read_deltas(lines, 1), timeout=5)
        await grow_older(db, user, age(settings))
        assert (await usage(client, user_headers))["reserved_tokens"] == 0
        await asyncio.wait_for(_read_deltas(lines, 1), timeout=5)

    question: dict[str, Any] = {}

    async def stored() -> None:
        while not question:
            listed = (await client.get("/questions/me", headers=user_headers)).json()
            question.update(listed[0] if listed else {})
            await asyncio.sleep(0.02)

    await asyncio.wait_for(stored(), timeout=10)
    assert question["status"] == "cancelled"
    body = await usage(client, user_headers)
    assert body["used_tokens"] == estimate("Count forever", question["answer"])
    assert body["reserved_tokens"] == 0
    assert await windows(db, user) == []  # the stale window went, never negative


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


async def test_a_killed_process_reservation_stops_counting(
    tmp_path: Path,
    client: httpx.AsyncClient,
    settings: Settings,
    db: Database,
    user: Account,
    user_headers: dict[str, str],
    slow_upstream: FakeUpstream,
) -> None:
    """`askgate serve` reserves for a stream and is killed (SIGKILL) mid-answer:
    its reservation counts at first, then no more once it is old enough."""
    assert settings.secret_key is not None
    env = {k: v for k, v in os.environ.items() if not k.startswith("ASKGATE_")}
    env.update(
        ASKGATE_DATA_DIR=str(tmp_path / "serve-data"),
        ASKGATE_DATABASE_URL=settings.sqlalchemy_url,
        ASKGATE_SECRET_KEY=settings.secret_key.get_secret_value(),
        ASKGATE_LLM_BASE_URL=slow_upstream.base_url,
        ASKGATE_LLM_MODEL=MODEL,
        ASKGATE_DAILY_TOKEN_QUOTA=str(QUOTA),
    )
    port = _free_port()
    log = tmp_path / "serve.log"
    with log.open("w") as out:
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "askgate.cli",
            "serve",
            "--port",
            str(port),
            cwd=tmp_path,
            env=env,
            stdout=out,
            stderr=asyncio.subprocess.STDOUT,
        )
    held = reservation("Count forever", 100)
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as other:
            async with asyncio.timeout(STARTUP_LIMIT):
                while True:
                    assert process.returncode is None, log.read_text()
                    try:
                        if (await other.get("/health")).status_code == 200:
                            break
                    except httpx.TransportError:
                        pass
                    await asyncio.sleep(0.2)
            async with other.stream(
                "POST",
                "/questions",
                json={"content": "Count forever", "max_tokens": 100, "stream": True},
                headers=user_headers,
            ) as response:
                assert response.status_code == 200, log.read_text()
                lines = response.aiter_lines()
                await asyncio.wait_for(_read_deltas(lines, 2), timeout=10)
                process.send_signal(signal.SIGKILL)
                await process.wait()
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()

    dead = await usage(client, user_headers)
    assert (dead["used_tokens"], dead["reserved_tokens"]) == (0, held)

    await grow_older(db, user, age(settings))

    body = await usage(client, user_headers)
    assert (body["reserved_tokens"], body["remaining"]) == (0, QUOTA)
    whole = QUOTA - reservation("hi", 0)  # the whole quota, which the dead held
    answered = await ask(client, user_headers, whole)
    assert answered.status_code == 201, answered.text
    assert await windows(db, user) == []
