"""How fast the history's filters answer at 100,000 questions for one user.

    .venv/bin/python scripts/question_filters_bench.py               # SQLite
    .venv/bin/python scripts/question_filters_bench.py --postgres    # a throwaway
    .venv/bin/python scripts/question_filters_bench.py --database-url URL

Seeds a database migrated by Alembic (askgate.migrate) with one user holding
`--questions` questions (question and answer lengths of a chat, four models,
answered/failed/cancelled, spread over a year, in time order) and five other
users' questions in between, then times GET /questions/me and the admin's
GET /questions in process (httpx over ASGI, the app's own lifespan) and prints
the median and 95th percentile of each case. `--database-url` must name an
empty database; it is left filled.
"""

import argparse
import asyncio
import random
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import ExitStack
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, cast

import httpx
from sqlalchemy import Table, insert

from askgate import migrate
from askgate.app import create_app
from askgate.config import Settings
from askgate.questions.history import searchable
from askgate.questions.models import Question
from askgate.runtime import Runtime
from askgate.users import service as users_service

PASSWORD = "bench password 0123456789"
ADMIN = "bench-admin"
OTHER_USERS = 5
MODELS = [("alpha", 0.55), ("beta", 0.25), ("gamma", 0.15), ("delta", 0.05)]
STATUSES = [("answered", 0.90), ("failed", 0.07), ("cancelled", 0.03)]
START = datetime(2025, 12, 1, tzinfo=UTC)
YEAR = timedelta(days=365)
# Words planted at known rates, to search for.
COMMON = "kubernetes"  # in ~10% of the questions
RARE = "zanzibar"  # in ~0.1%
ACCENTED = "été"  # in ~2%, searched for as "ÉTÉ"
NEVER = "no question holds this phrase"
VOCABULARY = (
    "the of and to in is that for it as with was on be at by this have from or "
    "one had not but what all were when we there can an your which their said if "
    "do will each about how up out them then she many some so these would other "
    "into has more her two like him see time could no make than first been its "
    "who now people my made over did down only way find use may water long little "
    "very after called just where most know get through back much before go good "
    "new write our used me man too any day same right look think also around "
    "another came come work three word must because does part even place well "
    "database index query python server request answer model token stream cache "
    "latency thread process memory network error retry timeout schema migration "
    "café naïve façade Zürich straße déjà-vu coöperate résumé"
)
WORDS = VOCABULARY.split()
BATCH = 2000


def _pick(rng: random.Random, weighted: list[tuple[str, float]]) -> str:
    names, weights = zip(*weighted, strict=True)
    return str(rng.choices(names, weights)[0])


def _text(rng: random.Random, low: int, high: int) -> str:
    words = rng.choices(WORDS, k=rng.randint(low, high))
    if rng.random() < 0.10:
        words.insert(rng.randrange(len(words)), COMMON)
    if rng.random() < 0.001:
        words.insert(rng.randrange(len(words)), RARE)
    if rng.random() < 0.02:
        words.insert(rng.randrange(len(words)), ACCENTED)
    return " ".join(words).capitalize() + "."


def _rows(
    rng: random.Random, user_id: int, other_ids: list[int], count: int
) -> Iterator[dict[str, Any]]:
    """`count` questions of the user and, after every fifth, one of another
    user's, in time order; a question ~15-60 words long, its answer ~60-350."""
    owners = (
        owner
        for n in range(count)
        for owner in ([user_id, rng.choice(other_ids)] if n % 5 == 4 else [user_id])
    )
    step = YEAR / (count + count // 5)
    for n, owner in enumerate(owners):
        status = _pick(rng, STATUSES)
        content = _text(rng, 15, 60)
        answer = None if status == "failed" else _text(rng, 60, 350)
        model = _pick(rng, MODELS)
        yield {
            "user_id": owner,
            "api_key_id": None,
            "content": content,
            "answer": answer,
            "search_text": searchable(content, answer),
            "model": model,
            "upstream_model": None if answer is None else f"{model}-upstream",
            "status": status,
            "error": "The LLM upstream answered HTTP 500" if answer is None else None,
            "messages": None,
            "tool_calls": None,
            "prompt_tokens": len(content) // 4,
            "completion_tokens": None if answer is None else len(answer) // 4,
            "latency_ms": rng.randint(200, 9000),
            "created_at": START + step * n,
        }


async def _seed(runtime: Runtime, count: int) -> tuple[int, list[int]]:
    """The users, then the questions; the bench user's id and the others'."""
    users = [
        await users_service.create_user(
            db=runtime.db, username=f"bench-{n}", password=PASSWORD
        )
        for n in range(OTHER_USERS + 1)
    ]
    user_id, other_ids = users[0].id, [user.id for user in users[1:]]
    statement = insert(cast(Table, Question.__table__))
    rows = _rows(random.Random(8), user_id, other_ids, count)  # noqa: S311
    started = time.perf_counter()
    while batch := [row for _, row in zip(range(BATCH), rows, strict=False)]:
        async with runtime.db.write() as session:
            await session.execute(statement, batch)
    if runtime.db.engine.dialect.name == "postgresql":
        # What autovacuum does to a table this size soon after: the planner's
        # statistics, and the visibility map that index-only scans need.
        async with runtime.db.engine.connect() as connection:
            autocommit = await connection.execution_options(
                isolation_level="AUTOCOMMIT"
            )
            await autocommit.exec_driver_sql("VACUUM ANALYZE questions")
    print(f"seeded in {time.perf_counter() - started:.0f}s", file=sys.stderr)
    return user_id, other_ids


async def _login(client: httpx.AsyncClient, username: str) -> dict[str, str]:
    response = await client.post(
        "/auth/token", data={"username": username, "password": PASSWORD}
    )
    response.raise_for_status()
    return {"Authorization": f"Bearer {response.json()['access_token']}"}


async def _time(
    client: httpx.AsyncClient,
    path: str,
    params: dict[str, Any],
    headers: dict[str, str],
    runs: int,
) -> tuple[float, float, int]:
    """Median and 95th percentile in ms, and the rows of the last answer."""
    timings = []
    for _ in range(runs + 1):  # the first warms the caches
        started = time.perf_counter()
        response = await client.get(path, params=params, headers=headers)
        timings.append((time.perf_counter() - started) * 1000)
        response.raise_for_status()
    timings = sorted(timings[1:])
    p95 = timings[min(len(timings) - 1, round(0.95 * (len(timings) - 1)))]
    return statistics.median(timings), p95, len(response.json())


async def _measure(settings: Settings, count: int, runs: int, limit: int) -> None:
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        runtime: Runtime = app.state.runtime
        user_id, _ = await _seed(runtime, count)
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(
            transport=transport, base_url="http://bench", timeout=300
        ) as client:
            user = await _login(client, "bench-0")
            admin = await _login(client, ADMIN)
            newest = await client.get(
                "/questions/me", params={"limit": 1}, headers=user
            )
            top = newest.json()[0]["id"]
            deep = top - int(count * 1.2 * 0.9)  # ~90% of the way back
            window = {"since": "2026-03-01T00:00:00Z", "until": "2026-03-08T00:00:00Z"}
            me = "/questions/me"
            cases: list[tuple[str, str, dict[str, Any], dict[str, str]]] = [
                ("no filter", me, {}, user),
                (f"q common ({COMMON}, ~10%)", me, {"q": COMMON}, user),
                ("q non-ASCII (ÉTÉ, ~2%)", me, {"q": "ÉTÉ"}, user),
                (f"q rare ({RARE}, ~0.1%)", me, {"q": RARE}, user),
                ("q matching nothing", me, {"q": NEVER}, user),
                ("since/until: a week, 9 months back", me, window, user),
                ("since: the last 30 days", me, {"since": "2026-11-01"}, user),
                (
                    "since: the last 4 hours (~45 rows)",
                    me,
                    {"since": "2026-11-30T20:00:00Z"},
                    user,
                ),
                ("until: 9 months back", me, {"until": "2026-03-01"}, user),
                ("status=failed (~7%)", me, {"status": "failed"}, user),
                ("status=cancelled (~3%)", me, {"status": "cancelled"}, user),
                ("model=delta (~5%)", me, {"model": "delta"}, user),
                ("model matching nothing", me, {"model": "retired"}, user),
                (
                    "q common + model + status + since",
                    me,
                    {
                        "q": COMMON,
                        "model": "beta",
                        "status": "answered",
                        "since": "2026-06-01",
                    },
                    user,
                ),
                ("before_id deep, no filter", me, {"before_id": deep}, user),
                (
                    "before_id deep, q common",
                    me,
                    {"before_id": deep, "q": COMMON},
                    user,
                ),
                (
                    "before_id deep, model=delta",
                    me,
                    {"before_id": deep, "model": "delta"},
                    user,
                ),
                (
                    "admin: user_id + q rare (+count)",
                    "/questions",
                    {"user_id": user_id, "q": RARE},
                    admin,
                ),
                (
                    "admin: every user, status=failed (+count)",
                    "/questions",
                    {"status": "failed"},
                    admin,
                ),
                (
                    "admin: every user, q matching nothing",
                    "/questions",
                    {"q": NEVER},
                    admin,
                ),
            ]
            print(f"{count} questions for one user, limit={limit}, {runs} runs each")
            print(f"{'case':<44} {'median ms':>10} {'p95 ms':>8} {'rows':>5}")
            for name, path, params, headers in cases:
                median, p95, rows = await _time(
                    client, path, {"limit": limit, **params}, headers, runs
                )
                print(f"{name:<44} {median:>10.1f} {p95:>8.1f} {rows:>5}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--questions", type=int, default=100_000)
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--limit", type=int, default=50)
    where = parser.add_mutually_exclusive_group()
    where.add_argument("--database-url", help="an empty database (SQLAlchemy URL)")
    where.add_argument(
        "--postgres", action="store_true", help="on a throwaway PostgreSQL cluster"
    )
    args = parser.parse_args()
    with ExitStack() as stack:
        directory = Path(stack.enter_context(tempfile.TemporaryDirectory()))
        url = args.database_url or f"sqlite+aiosqlite:///{directory / 'bench.db'}"
        if args.postgres:
            from bench.postgres import throwaway_database  # scripts/bench

            url = stack.enter_context(throwaway_database())
        migrate.upgrade(url)
        settings = Settings(
            _env_file=None,
            data_dir=directory,
            database_url=url,
            secret_key="bench-secret-key-that-is-long-enough-0123456789",  # noqa: S106
            admin_username=ADMIN,
            admin_password=PASSWORD,
            login_failures_per_ip=1000,
        )
        asyncio.run(_measure(settings, args.questions, args.runs, args.limit))


if __name__ == "__main__":
    main()
