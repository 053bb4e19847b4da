"""Seed a fresh SQLite database with a large usage history, then time the usage
routes over HTTP.

    .venv/bin/python scripts/usage_seed_bench.py       # 1,000 users, 90 days,
                                                        # 1,000,000 questions
    .venv/bin/python scripts/usage_seed_bench.py --questions 100000 --runs 5

The database is migrated by Alembic (askgate.migrate), then filled with bulk
inserts: the users, the questions (spread over the last `--days` UTC days,
today included, over three models, some users far busier than others, ~5%
failed and ~3% cancelled), and the matching rollups, `usage_daily` summed as
the ledger counts it (and checked against the questions' own totals), then
`usage_user_daily` from it. The app then
runs in process (httpx's ASGITransport, with its lifespan); each route is asked
twice to warm up, then `--runs` times: the table gives the median and the 95th
percentile in milliseconds. It exits 1 if a p95 is over 100 ms.

Not part of `make test`: it is a benchmark (about a minute, and ~160 MB of disk
at the default size, in a new temporary directory unless `--keep FILE`).
"""

import argparse
import asyncio
import itertools
import random
import sqlite3
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
from pydantic import SecretStr

from askgate import migrate
from askgate.app import create_app
from askgate.auth.security import hash_password
from askgate.config import Settings

MODELS = ("default", "fast", "large")
MODEL_WEIGHTS = (6, 3, 1)
QUESTION = "How many tokens is this question?"
PASSWORD = "usage-bench-password-0123"
ADMIN = "bench-admin"
TARGET_MS = 100.0
BATCH = 50_000

Rollup = dict[tuple[int, str, str], list[int]]  # (user, day, model): the 4 counts
Case = tuple[str, str, str]  # label, path, whose login


def _stamp(moment: datetime) -> str:
    """A datetime as askgate stores it on SQLite (UTC, no offset)."""
    return moment.strftime("%Y-%m-%d %H:%M:%S.%f")


def _questions(
    *, users: int, days: int, count: int, rollup: Rollup
) -> Iterator[tuple[object, ...]]:
    """`count` question rows, busy users asking far more than quiet ones; each
    is added to `rollup` as the ledger counts it (user, UTC day, model)."""
    rng = random.Random(8)  # noqa: S311 (made-up data, the same on every run)
    activity = [rng.paretovariate(1.5) for _ in range(users)]
    user_ids = rng.choices(range(1, users + 1), weights=activity, k=count)
    today = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    first = today - timedelta(days=days - 1)
    span = days * 86_400 - 1
    for user_id in user_ids:
        roll = rng.random()
        status = "failed" if roll < 0.05 else "cancelled" if roll < 0.08 else "answered"
        prompt = rng.randint(5, 400)
        completion = None if status == "failed" else rng.randint(1, 800)
        model = rng.choices(MODELS, weights=MODEL_WEIGHTS)[0]
        asked = _stamp(first + timedelta(seconds=rng.randint(0, span)))
        sums = rollup.setdefault((user_id, asked[:10], model), [0, 0, 0, 0])
        sums[0] += 1
        sums[1] += status == "failed"
        sums[2] += prompt
        sums[3] += completion or 0
        answer = None if completion is None else "Some answer."
        yield (user_id, QUESTION, answer, model, status, prompt, completion, 1, asked)


def seed(
    path: Path, *, users: int, days: int, count: int, password_hash: str
) -> tuple[int, int]:
    """Fill the migrated database; returns how many rows each rollup holds."""
    connection = sqlite3.connect(path)
    connection.execute("PRAGMA synchronous=OFF")
    created = _stamp(datetime.now(UTC))
    with connection:
        connection.executemany(
            "INSERT INTO users (id, username, username_canonical, password_hash, "
            "role, is_active, created_at, updated_at) "
            "VALUES (?, ?, ?, ?, 'user', 1, ?, ?)",
            (
                (i, f"user{i:04d}", f"user{i:04d}", password_hash, created, created)
                for i in range(1, users + 1)
            ),
        )
    rollup: Rollup = {}
    rows = _questions(users=users, days=days, count=count, rollup=rollup)
    while batch := list(itertools.islice(rows, BATCH)):
        with connection:
            connection.executemany(
                "INSERT INTO questions (user_id, content, answer, model, status, "
                "prompt_tokens, completion_tokens, latency_ms, created_at) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                batch,
            )
    with connection:
        connection.executemany(
            "INSERT INTO usage_daily (user_id, day, model, questions, failed, "
            "prompt_tokens, completion_tokens) VALUES (?, ?, ?, ?, ?, ?, ?)",
            ((*key, *sums) for key, sums in sorted(rollup.items())),
        )
        connection.execute(
            "INSERT INTO usage_user_daily (user_id, day, questions, failed, "
            "prompt_tokens, completion_tokens) SELECT user_id, day, sum(questions), "
            "sum(failed), sum(prompt_tokens), sum(completion_tokens) "
            "FROM usage_daily GROUP BY user_id, day"
        )
    counted = connection.execute(
        "SELECT count(*), sum(CASE WHEN status = 'failed' THEN 1 ELSE 0 END), "
        "sum(prompt_tokens), sum(completion_tokens) FROM questions"
    ).fetchone()
    rolled = connection.execute(
        "SELECT sum(questions), sum(failed), sum(prompt_tokens), "
        "sum(completion_tokens) FROM usage_daily"
    ).fetchone()
    assert counted == rolled, (counted, rolled)
    connection.execute("ANALYZE")  # as a long-lived database would have it
    connection.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    (user_days,) = connection.execute(
        "SELECT count(*) FROM usage_user_daily"
    ).fetchone()
    connection.close()
    return len(rollup), user_days


def _cases(days: int) -> list[Case]:
    today = datetime.now(UTC).date()
    every_day = f"from={today - timedelta(days=days - 1)}&to={today}"
    return [
        ("my daily (30 days)", "/users/me/usage/daily", "user"),
        ("my daily (30 days), csv", "/users/me/usage/daily?format=csv", "user"),
        (f"my daily ({days} days)", f"/users/me/usage/daily?{every_day}", "user"),
        ("all daily (30 days), page 1", "/usage/daily", "admin"),
        ("all daily (30 days), page 1, csv", "/usage/daily?format=csv", "admin"),
        ("all daily (30 days), 1000 rows", "/usage/daily?limit=1000", "admin"),
        (
            f"all daily ({days} days), past the end",
            f"/usage/daily?{every_day}&offset=10000000",
            "admin",
        ),
        ("all daily (30 days), model=large", "/usage/daily?model=large", "admin"),
        ("all daily (30 days), user_id=1", "/usage/daily?user_id=1", "admin"),
        (
            f"all daily ({days} days), user_id=1",
            f"/usage/daily?user_id=1&{every_day}",
            "admin",
        ),
        ("leaderboard 7 days, tokens", "/usage/leaderboard?days=7", "admin"),
        (
            "leaderboard 7 days, questions",
            "/usage/leaderboard?days=7&by=questions",
            "admin",
        ),
        ("leaderboard 7 days, csv", "/usage/leaderboard?days=7&format=csv", "admin"),
        ("leaderboard 90 days, tokens", "/usage/leaderboard?days=90", "admin"),
        (
            "leaderboard 90 days, questions",
            "/usage/leaderboard?days=90&by=questions",
            "admin",
        ),
        (
            "leaderboard 90 days, 100 users, csv",
            "/usage/leaderboard?days=90&limit=100&format=csv",
            "admin",
        ),
    ]


async def _login(client: httpx.AsyncClient, username: str) -> dict[str, str]:
    response = await client.post(
        "/auth/token", data={"username": username, "password": PASSWORD}
    )
    response.raise_for_status()
    return {"Authorization": f"Bearer {response.json()['access_token']}"}


async def measure(
    path: Path, *, runs: int, days: int
) -> list[tuple[str, int, list[float]]]:
    """(label, rows answered, milliseconds of each run) of each case."""
    settings = Settings(
        _env_file=None,
        data_dir=path.parent,
        database_url=f"sqlite+aiosqlite:///{path}",
        secret_key="usage-bench-secret-key-" + "x" * 32,
        admin_username=ADMIN,  # created by the lifespan
        admin_password=SecretStr(PASSWORD),
    )
    app = create_app(settings)
    results = []
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(
            transport=transport, base_url="http://bench"
        ) as client:
            logins = {
                "user": await _login(client, "user0001"),
                "admin": await _login(client, ADMIN),
            }
            for label, url, who in _cases(days):
                timings = []
                for attempt in range(runs + 2):
                    started = time.perf_counter()
                    response = await client.get(url, headers=logins[who])
                    elapsed = (time.perf_counter() - started) * 1000
                    response.raise_for_status()
                    if attempt >= 2:
                        timings.append(elapsed)
                if "format=csv" in url:
                    rows = len(response.text.splitlines()) - 1  # the header
                else:
                    rows = len(response.json())
                results.append((label, rows, timings))
    return results


def _p95(timings: list[float]) -> float:
    ordered = sorted(timings)
    return ordered[round(0.95 * (len(ordered) - 1))]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--users", type=int, default=1_000)
    parser.add_argument("--days", type=int, default=90)
    parser.add_argument("--questions", type=int, default=1_000_000)
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument(
        "--keep", type=Path, help="seed this new file (and keep it) instead"
    )
    args = parser.parse_args()
    path = args.keep or Path(tempfile.mkdtemp(prefix="askgate-usage-")) / "askgate.db"
    if path.exists():
        parser.error(f"{path} exists: give a new file")

    started = time.perf_counter()
    migrate.upgrade(f"sqlite+aiosqlite:///{path}")
    password_hash = asyncio.run(hash_password(PASSWORD))
    model_days, user_days = seed(
        path,
        users=args.users,
        days=args.days,
        count=args.questions,
        password_hash=password_hash,
    )
    seeding = time.perf_counter() - started
    size = sum(p.stat().st_size for p in path.parent.glob(f"{path.name}*"))
    print(
        f"Seeded {args.users:,} users, {args.days} days, {args.questions:,} "
        f"questions, {model_days:,} usage_daily and {user_days:,} "
        f"usage_user_daily rows in {seeding:.1f} s "
        f"(migration included); database {size / 1e6:.0f} MB: {path}"
    )

    results = asyncio.run(measure(path, runs=args.runs, days=args.days))
    width = max(len(label) for label, _, _ in results)
    print(f"\n{'request':<{width}}  {'rows':>6}  {'median ms':>9}  {'p95 ms':>7}")
    slow = 0
    for label, rows, timings in results:
        median, p95 = statistics.median(timings), _p95(timings)
        slow += p95 >= TARGET_MS
        flag = "" if p95 < TARGET_MS else f"  (over {TARGET_MS:.0f} ms)"
        print(f"{label:<{width}}  {rows:>6}  {median:>9.1f}  {p95:>7.1f}{flag}")
    print(f"\n{args.runs} runs each after 2 to warm up; target: p95 under 100 ms")
    return 1 if slow else 0


if __name__ == "__main__":
    sys.exit(main())
