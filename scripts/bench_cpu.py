"""CPU per question, in one process: steadier than `make bench` on a noisy machine.

    PYTHONPATH=src:. .venv/bin/python scripts/bench_cpu.py [COUNT]

The app (on a fresh SQLite database migrated by Alembic), the fake upstream of the
tests and an httpx client run in this one process; it asks COUNT plain questions,
then COUNT streamed ones, 32 at once from 8 users, and prints the CPU time of every
thread of the process per question. The client's and the upstream's share is the
same for every version of askgate, so compare two trees side by side, alternating
(each with its own tests/, e.g. a `git worktree add --detach /tmp/old <rev>`):

    PYTHONPATH=/tmp/old/src:/tmp/old .venv/bin/python scripts/bench_cpu.py
"""

import asyncio
import gc
import secrets
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
from tests.factories import auth_headers, create_user
from tests.fake_upstream import MODEL, FakeUpstream

from askgate import migrate
from askgate.app import create_app
from askgate.config import Settings

AT_ONCE = 32
USERS = 8
WARM_UP = 300
QUESTION = "What is the capital of France?"
BODIES = {
    "plain": {"content": QUESTION, "max_tokens": 16},
    "streamed": {"content": QUESTION, "max_tokens": 16, "stream": True},
}


async def ask_many(
    client: httpx.AsyncClient,
    headers: list[dict[str, str]],
    body: dict[str, Any],
    count: int,
) -> None:
    slots = asyncio.Semaphore(AT_ONCE)

    async def one(index: int) -> None:
        async with slots:
            response = await client.post(
                "/questions", json=body, headers=headers[index % len(headers)]
            )
            if response.status_code not in (200, 201) or (
                body.get("stream") and b'"done"' not in response.content
            ):
                raise RuntimeError(f"{response.status_code}: {response.text[:200]}")

    await asyncio.gather(*(one(index) for index in range(count)))


async def main(count: int, database: Path) -> None:
    upstream = FakeUpstream()
    await upstream.start()
    settings = Settings(
        _env_file=None,
        data_dir=database.parent,
        database_url=f"sqlite+aiosqlite:///{database}",
        secret_key=secrets.token_urlsafe(32),
        llm_base_url=upstream.base_url,
        llm_model=MODEL,
        questions_per_minute=10**6,
        max_concurrent_questions_per_user=AT_ONCE,
        log_level="WARNING",
    )
    app = create_app(settings)
    try:
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://b") as c:
                db = app.state.runtime.db
                headers = [
                    await auth_headers(c, await create_user(db)) for _ in range(USERS)
                ]
                for name, body in BODIES.items():
                    await ask_many(c, headers, body, WARM_UP)
                    gc.collect()
                    cpu, wall = time.process_time(), time.perf_counter()
                    await ask_many(c, headers, body, count)
                    cpu = time.process_time() - cpu
                    wall = time.perf_counter() - wall
                    print(
                        f"{name}: {1000 * cpu / count:.3f} ms CPU per question, "
                        f"{count / wall:,.0f} questions/s"
                    )
    finally:
        await upstream.stop()


if __name__ == "__main__":
    directory = Path(tempfile.mkdtemp(prefix="askgate-bench-cpu-"))
    path = directory / "askgate.db"
    migrate.upgrade(f"sqlite+aiosqlite:///{path}")  # before the loop: it runs its own
    asyncio.run(main(int(sys.argv[1]) if len(sys.argv) > 1 else 2000, path))
