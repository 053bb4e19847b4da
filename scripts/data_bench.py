"""What a user's data costs at scale, on SQLite: export, retention, deletion.

    PYTHONPATH=src:. .venv/bin/python scripts/data_bench.py [QUESTIONS]

On a fresh SQLite database migrated by Alembic, one user gets QUESTIONS
questions (default 100,000; ~200 bytes of question and answer each) written
straight into the table, all old enough to purge. It prints:

- export: the time to download GET /users/me/export from the app served by
  uvicorn in this process, and the peak of Python memory allocated meanwhile
  (tracemalloc; client included), which stays at a few pages whatever
  QUESTIONS is;
- purge: the time of `purge_older_than` and its longest write transaction
  (one batch: how long a question being stored may wait for it);
- deletion: the time of DELETE /users/me for a user with as many questions
  (their questions in batches, then the account) and its longest write
  transaction.
"""

import asyncio
import secrets
import sys
import tempfile
import time
import tracemalloc
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from typing import Any

import httpx
import uvicorn
from sqlalchemy import event, insert
from tests.factories import auth_headers, create_user
from tests.rows import days_ago

from askgate import migrate
from askgate.app import create_app
from askgate.config import Settings
from askgate.db import Database
from askgate.models import Question, QuestionStatus
from askgate.questions import retention

ANSWER = "An answer of some length, as a model would give it. " * 3


async def fill(db: Database, user_id: int, count: int) -> None:
    created = days_ago(400)
    rows = [
        {
            "user_id": user_id,
            "content": f"Question number {n}: what is the capital of France?",
            "answer": ANSWER,
            "search_text": f"question number {n} {ANSWER.lower()}",
            "model": "m",
            "status": QuestionStatus.ANSWERED,
            "prompt_tokens": 10,
            "completion_tokens": 30,
            "latency_ms": 5,
            "created_at": created,
        }
        for n in range(count)
    ]
    for start in range(0, count, 10_000):
        async with db.write() as session:
            await session.execute(insert(Question), rows[start : start + 10_000])


@contextmanager
def write_transactions(db: Database) -> Iterator[list[float]]:
    """The duration of each write transaction (BEGIN IMMEDIATE to its end)."""
    durations: list[float] = []
    started: dict[int, float] = {}

    def begin(connection: Any) -> None:
        if connection.get_execution_options().get("askgate_write"):
            started[id(connection)] = time.perf_counter()

    def end(connection: Any) -> None:
        start = started.pop(id(connection), None)
        if start is not None:
            durations.append(time.perf_counter() - start)

    sync = db.engine.sync_engine
    listeners = [("begin", begin), ("commit", end), ("rollback", end)]
    for name, listener in listeners:
        event.listen(sync, name, listener)
    try:
        yield durations
    finally:
        for name, listener in listeners:
            event.remove(sync, name, listener)


@asynccontextmanager
async def served(app: Any) -> AsyncIterator[str]:
    """The app (its lifespan already running) on a real socket: httpx's ASGI
    transport would hold the whole body before handing it over."""
    server = uvicorn.Server(
        uvicorn.Config(
            app, host="127.0.0.1", port=0, lifespan="off", log_level="warning"
        )
    )
    task = asyncio.create_task(server.serve())
    while not server.started:
        assert not task.done(), "uvicorn stopped while starting"
        await asyncio.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{server.servers[0].sockets[0].getsockname()[1]}"
    finally:
        server.should_exit = True
        await task


async def download(http: httpx.AsyncClient, url: str, headers: Any) -> int:
    size = 0
    async with http.stream("GET", url, headers=headers, timeout=None) as response:
        async for chunk in response.aiter_bytes():
            size += len(chunk)
    return size


async def main(count: int, tmp: str) -> None:
    path = Path(tmp) / "askgate.db"
    settings = Settings(
        _env_file=None,
        data_dir=Path(tmp),
        database_url=f"sqlite+aiosqlite:///{path}",
        secret_key=secrets.token_urlsafe(32),
        llm_base_url="http://127.0.0.1:9",
        llm_model="m",
    )
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        db: Database = app.state.runtime.db
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(
            transport=transport, base_url="http://bench"
        ) as client:
            user = await create_user(db)
            await fill(db, user.id, count)
            headers = await auth_headers(client, user)

            async with served(app) as url, httpx.AsyncClient() as http:
                start = time.perf_counter()
                size = await download(http, f"{url}/users/me/export", headers)
                elapsed = time.perf_counter() - start
                tracemalloc.start()
                await download(http, f"{url}/users/me/export", headers)
                _, peak = tracemalloc.get_traced_memory()
                tracemalloc.stop()
            print(
                f"export of {count:,} questions: {size / 1e6:.1f} MB in "
                f"{elapsed:.2f} s; peak Python memory {peak / 1e6:.1f} MB"
            )

            with write_transactions(db) as writes:
                start = time.perf_counter()
                deleted = await retention.purge_older_than(db=db, days=30)
                elapsed = time.perf_counter() - start
            print(
                f"purge of {deleted:,} questions: {elapsed:.2f} s in "
                f"{len(writes)} write transactions, the longest "
                f"{max(writes) * 1000:.0f} ms"
            )

            other = await create_user(db)
            await fill(db, other.id, count)
            headers = await auth_headers(client, other)
            with write_transactions(db) as writes:
                start = time.perf_counter()
                response = await client.delete("/users/me", headers=headers)
                elapsed = time.perf_counter() - start
            assert response.status_code == 204, response.text
            print(
                f"deletion of a user with {count:,} questions: {elapsed:.2f} s in "
                f"{len(writes)} write transactions, the longest "
                f"{max(writes) * 1000:.0f} ms"
            )


if __name__ == "__main__":
    with tempfile.TemporaryDirectory() as directory:
        # Before the loop: the migrations run their own.
        migrate.upgrade(f"sqlite+aiosqlite:///{Path(directory) / 'askgate.db'}")
        asyncio.run(main(int(sys.argv[1]) if len(sys.argv) > 1 else 100_000, directory))
