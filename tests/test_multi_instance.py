"""Two `askgate serve` processes (one with `--workers 2`) on one PostgreSQL and one
Redis, behind nginx running the shipped config (deploy/nginx/askgate.conf, see
tests/nginx_server.py for the only lines the test changes): what one instance
does, the other knows at once.

Requests go straight to an instance's port when it matters which one answers, and
through nginx (TLS, with a throwaway certificate) otherwise. Every test talks from
its own loopback address (127.0.0.x: Linux routes the whole of 127/8 to `lo`), so
the limits keyed on the client's address never carry over from one test to the
next; only 127.0.0.1, where nginx connects from, is a trusted proxy.
"""

import asyncio
import itertools
import json
import os
import socket
import ssl
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from http.cookies import SimpleCookie
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
import pytest_asyncio

from askgate.auth.cookies import REFRESH_COOKIE
from askgate.db import Database, create_engine
from askgate.middleware import WEB_CSP
from askgate.quota.service import PROMPT_OVERHEAD_TOKENS
from askgate.users.models import Role
from tests.factories import PASSWORD, Account, create_user
from tests.fake_upstream import MODEL, FakeUpstream, answer_for
from tests.nginx_server import (
    NginxConfig,
    self_signed_certificate,
    stop_group,
    write_config,
)
from tests.nginx_server import start as start_nginx
from tests.postgres_server import TEMPLATE, PostgresServer, postgres_server
from tests.redis_server import redis_server

__all__ = ["postgres_server", "redis_server"]  # session fixtures used by `cluster`

pytestmark = [pytest.mark.e2e, pytest.mark.asyncio(loop_scope="module")]

SECRET_KEY = "multi-instance-test-secret-key-0123456789-abcdefghij"
# Small limits, so that a test reaches them in a few requests.
QUESTIONS_PER_MINUTE = 10
LOGIN_FAILURES_PER_ACCOUNT = 5
LOGIN_FAILURES_PER_IP = 6
STARTUP_TIMEOUT_SECONDS = 120.0
CONTENT, MAX_TOKENS = "hi", 10
# Redis database of its own: the other tests' FLUSHALL runs only between tests.
REDIS_DB = 5

_addresses = (f"127.0.0.{n}" for n in itertools.count(10))


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass
class Instance:
    port: int
    process: subprocess.Popen[bytes]
    log: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


@dataclass
class Cluster:
    upstream: FakeUpstream
    db: Database
    instances: list[Instance]
    https_url: str
    http_url: str
    nginx: NginxConfig
    tls: ssl.SSLContext

    @asynccontextmanager
    async def client(
        self, target: str, *, source: str
    ) -> AsyncIterator[httpx.AsyncClient]:
        """A client connecting from the loopback address `source`."""
        transport = httpx.AsyncHTTPTransport(local_address=source, verify=self.tls)
        async with httpx.AsyncClient(
            base_url=target, transport=transport, timeout=60
        ) as client:
            yield client

    @asynccontextmanager
    async def clients(
        self, *, source: str
    ) -> AsyncIterator[tuple[httpx.AsyncClient, httpx.AsyncClient, httpx.AsyncClient]]:
        """Instance A (1 worker), instance B (2 workers), and nginx (TLS)."""
        async with (
            self.client(self.instances[0].url, source=source) as a,
            self.client(self.instances[1].url, source=source) as b,
            self.client(self.https_url, source=source) as proxy,
        ):
            yield a, b, proxy


def serve_environment(
    *, database_url: str, redis_url: str, upstream: FakeUpstream
) -> dict[str, str]:
    """What every instance runs with: the same database, Redis and key."""
    inherited = {k: v for k, v in os.environ.items() if not k.startswith("ASKGATE_")}
    return {
        **inherited,
        "ASKGATE_DATABASE_URL": database_url,
        "ASKGATE_REDIS_URL": redis_url,
        "ASKGATE_SECRET_KEY": SECRET_KEY,
        "ASKGATE_TRUSTED_PROXIES": "127.0.0.1",
        "ASKGATE_LLM_BASE_URL": upstream.base_url,
        "ASKGATE_LLM_MODEL": MODEL,
        "ASKGATE_QUESTIONS_PER_MINUTE": str(QUESTIONS_PER_MINUTE),
        "ASKGATE_LOGIN_FAILURES_PER_ACCOUNT": str(LOGIN_FAILURES_PER_ACCOUNT),
        "ASKGATE_LOGIN_FAILURES_PER_IP": str(LOGIN_FAILURES_PER_IP),
    }


def start_instance(root: Path, env: dict[str, str], *, workers: int) -> Instance:
    port = _free_port()
    log = root / f"serve-{port}.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [
                *(sys.executable, "-m", "askgate.cli", "serve"),
                *("--host", "127.0.0.1", "--port", str(port)),
                *("--workers", str(workers)),
            ],
            cwd=root,  # no .env of the developer's
            # Nothing is written there (the key and the database are given).
            env={**env, "ASKGATE_DATA_DIR": str(root / f"data-{port}")},
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its workers too are stopped by stop_group
        )
    return Instance(port=port, process=process, log=log)


def _read(log: Path) -> str:
    return log.read_text() if log.exists() else f"({log} not written)"


async def wait_until_healthy(
    url: str,
    process: subprocess.Popen[bytes],
    log: Path,
    tls: ssl.SSLContext | None = None,
) -> None:
    """Until /health/live (or /health, before the probes exist) answers 200."""
    deadline = asyncio.get_running_loop().time() + STARTUP_TIMEOUT_SECONDS
    async with httpx.AsyncClient(base_url=url, timeout=5, verify=tls or True) as c:
        while True:
            assert process.poll() is None, _read(log)
            try:
                response = await c.get("/health/live")
                if response.status_code == 404:
                    response = await c.get("/health")
                if response.status_code == 200:
                    return
            except httpx.TransportError:
                pass
            assert asyncio.get_running_loop().time() < deadline, _read(log)
            await asyncio.sleep(0.2)


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def cluster(
    postgres_server: PostgresServer,
    redis_server: int,
    tmp_path_factory: pytest.TempPathFactory,
) -> AsyncIterator[Cluster]:
    root = tmp_path_factory.mktemp("multi")
    database = f"askgate_multi_{uuid.uuid4().hex}"
    await postgres_server.execute(f"CREATE DATABASE {database} TEMPLATE {TEMPLATE}")
    database_url = postgres_server.url(database)
    db = Database(create_engine(database_url))
    upstream = FakeUpstream()
    await upstream.start()
    processes: list[subprocess.Popen[bytes]] = []
    try:
        env = serve_environment(
            database_url=database_url,
            redis_url=f"redis://127.0.0.1:{redis_server}/{REDIS_DB}",
            upstream=upstream,
        )
        instances = [
            start_instance(root, env, workers=1),
            start_instance(root, env, workers=2),
        ]
        processes += [instance.process for instance in instances]
        await asyncio.gather(
            *(wait_until_healthy(i.url, i.process, i.log) for i in instances)
        )
        certificate = self_signed_certificate(root)
        https_port, http_port = _free_port(), _free_port()
        nginx = write_config(
            root / "nginx",
            https_port=https_port,
            http_port=http_port,
            instances=[instance.port for instance in instances],
            certificate=certificate,
        )
        nginx_process = start_nginx(nginx)
        processes.append(nginx_process)
        tls = ssl.create_default_context(cafile=str(certificate.cert))
        https_url = f"https://127.0.0.1:{https_port}"
        await wait_until_healthy(https_url, nginx_process, nginx.error_log, tls)
        yield Cluster(
            upstream=upstream,
            db=db,
            instances=instances,
            https_url=https_url,
            http_url=f"http://127.0.0.1:{http_port}",
            nginx=nginx,
            tls=tls,
        )
    finally:
        # nginx first, then the instances; in threads, so that the fake upstream
        # (on this loop) still answers while they finish what they are doing.
        for process in reversed(processes):
            await asyncio.to_thread(stop_group, process)
        await upstream.stop()
        await db.dispose()
        await postgres_server.execute(f"DROP DATABASE {database} WITH (FORCE)")


def bearer(tokens: dict[str, Any]) -> dict[str, str]:
    return {"Authorization": f"Bearer {tokens['access_token']}"}


async def log_in(
    client: httpx.AsyncClient, username: str, password: str = PASSWORD
) -> httpx.Response:
    return await client.post(
        "/auth/token", data={"username": username, "password": password}
    )


async def tokens_for(client: httpx.AsyncClient, account: Account) -> dict[str, Any]:
    response = await log_in(client, account.username, account.password)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def status_of_me(client: httpx.AsyncClient, tokens: dict[str, Any]) -> int:
    return (await client.get("/users/me", headers=bearer(tokens))).status_code


async def test_nginx_serves_over_tls_only_and_keeps_metrics_private(
    cluster: Cluster,
) -> None:
    source = next(_addresses)
    async with cluster.client(cluster.http_url, source=source) as plain:
        redirect = await plain.get("/health")
    async with cluster.client(cluster.https_url, source=source) as proxy:
        health = await proxy.get("/health")
        metrics = [await proxy.get(path) for path in ("/metrics", "/%6Detrics")]
        too_large = await proxy.post(
            "/auth/register",
            content=b"x" * (64 * 1024 + 1),
            headers={"Content-Type": "application/json"},
        )

    assert redirect.status_code == 301
    assert redirect.headers["location"] == "https://127.0.0.1/health"
    assert health.status_code == 200, health.text
    assert health.headers["strict-transport-security"] == "max-age=63072000"
    assert [response.status_code for response in metrics] == [404, 404]
    assert too_large.status_code == 413
    assert too_large.json() == {
        "detail": "Request body too large: the limit is 65536 bytes"
    }


async def test_a_logout_on_one_instance_ends_the_login_on_the_other(
    cluster: Cluster,
) -> None:
    account = await create_user(cluster.db)
    async with cluster.clients(source=next(_addresses)) as (a, b, proxy):
        tokens = await tokens_for(a, account)
        # Every instance (each worker of B, most likely) has the caller cached.
        for client in (a, b, b, b, proxy, proxy):
            assert await status_of_me(client, tokens) == 200

        logout = await a.post(
            "/auth/logout", json={"refresh_token": tokens["refresh_token"]}
        )
        assert logout.status_code == 204, logout.text

        for client in (b, b, b, proxy, proxy, a):
            assert await status_of_me(client, tokens) == 401
        refreshed = await b.post(
            "/auth/refresh", json={"refresh_token": tokens["refresh_token"]}
        )
        assert refreshed.status_code == 401


async def test_a_password_change_on_one_instance_ends_the_logins_on_the_other(
    cluster: Cluster,
) -> None:
    account = await create_user(cluster.db)
    new_password = "a brand new passphrase"
    async with cluster.clients(source=next(_addresses)) as (a, b, proxy):
        on_a, on_b = await tokens_for(a, account), await tokens_for(b, account)
        for client in (a, b, b, b, proxy, proxy):
            assert await status_of_me(client, on_a) == 200

        change = await b.patch(
            "/users/me",
            json={"password": new_password, "current_password": account.password},
            headers=bearer(on_b),
        )
        assert change.status_code == 200, change.text

        for client in (a, proxy, proxy, b, b, b):
            assert await status_of_me(client, on_a) == 401
            assert await status_of_me(client, on_b) == 401
        refreshed = await a.post(
            "/auth/refresh", json={"refresh_token": on_a["refresh_token"]}
        )
        assert refreshed.status_code == 401
        assert (await log_in(a, account.username)).status_code == 401
        assert (await log_in(a, account.username, new_password)).status_code == 200


async def test_the_login_throttle_counts_failures_on_every_instance(
    cluster: Cluster,
) -> None:
    account = await create_user(cluster.db)
    async with cluster.clients(source=next(_addresses)) as (a, b, proxy):
        # 5 failures, spread: no instance alone saw the limit.
        for client in (a, b, a, b, proxy):
            failed = await log_in(client, account.username, "not the password")
            assert failed.status_code == 401, failed.text

        # Locked everywhere, even with the right password.
        for client in (a, b, proxy):
            locked = await log_in(client, account.username)
            assert locked.status_code == 429, locked.text
            assert int(locked.headers["retry-after"]) > 0


async def test_nginx_passes_the_clients_address_and_a_forged_one_is_ignored(
    cluster: Cluster,
) -> None:
    attacker, bystander = next(_addresses), next(_addresses)
    account = await create_user(cluster.db)
    async with cluster.client(cluster.https_url, source=attacker) as proxy:
        # Failed logins for unknown names: only the attacker's address adds up.
        for n in range(LOGIN_FAILURES_PER_IP):
            failed = await log_in(proxy, f"nobody-{uuid.uuid4().hex[:8]}-{n}")
            assert failed.status_code == 401, failed.text
        assert (await log_in(proxy, account.username)).status_code == 429
        # Its own X-Forwarded-For does not get it out: nginx replaces it.
        forged = await proxy.post(
            "/auth/token",
            data={"username": account.username, "password": PASSWORD},
            headers={"X-Forwarded-For": bystander},
        )
        assert forged.status_code == 429

    # Another client through the same nginx is not locked out: askgate keyed
    # the failures on the address nginx saw, not on nginx's own.
    async with cluster.client(cluster.https_url, source=bystander) as proxy:
        assert (await log_in(proxy, account.username)).status_code == 200
        framed = await proxy.post(
            "/auth/token",
            data={"username": account.username, "password": PASSWORD},
            headers={"X-Forwarded-For": attacker},
        )
        assert framed.status_code == 200
    # Straight to an instance from an untrusted peer, the header is ignored too;
    # from the trusted proxy's address it is believed.
    instance = cluster.instances[1].url
    async with cluster.client(instance, source=bystander) as direct:
        ignored = await direct.post(
            "/auth/token",
            data={"username": account.username, "password": PASSWORD},
            headers={"X-Forwarded-For": attacker},
        )
        assert ignored.status_code == 200
    async with cluster.client(instance, source="127.0.0.1") as from_proxy:
        believed = await from_proxy.post(
            "/auth/token",
            data={"username": account.username, "password": PASSWORD},
            headers={"X-Forwarded-For": attacker},
        )
        assert believed.status_code == 429

    # nginx spread the attacker's failures over both instances.
    answered_by = {
        line.rpartition(" upstream=")[2].split()[0]
        for line in cluster.nginx.access_log.read_text().splitlines()
        if line.startswith(f"{attacker} ") and '"POST /auth/token' in line
    }
    assert answered_by == {f"127.0.0.1:{i.port}" for i in cluster.instances}


async def ask(
    client: httpx.AsyncClient,
    tokens: dict[str, Any],
    content: str = CONTENT,
) -> httpx.Response:
    return await client.post(
        "/questions",
        json={"content": content, "max_tokens": MAX_TOKENS},
        headers=bearer(tokens),
    )


async def test_the_question_rate_limit_counts_questions_on_every_instance(
    cluster: Cluster,
) -> None:
    account = await create_user(cluster.db)
    async with cluster.clients(source=next(_addresses)) as (a, b, proxy):
        tokens = await tokens_for(proxy, account)
        remaining = []
        for client in [a] * 5 + [b] * 4 + [proxy]:
            response = await ask(client, tokens)
            assert response.status_code == 201, response.text
            remaining.append(int(response.headers["x-ratelimit-remaining"]))
        assert remaining == list(range(QUESTIONS_PER_MINUTE - 1, -1, -1))

        for client in (a, b, proxy):
            refused = await ask(client, tokens)
            assert refused.status_code == 429, refused.text


async def test_the_daily_quota_counts_questions_on_every_instance(
    cluster: Cluster,
) -> None:
    admin = await create_user(cluster.db, role=Role.ADMIN)
    account = await create_user(cluster.db)
    cost = len(CONTENT.split()) + len(answer_for(CONTENT).split())  # the fake's usage
    reservation = MAX_TOKENS + len(CONTENT.encode()) + PROMPT_OVERHEAD_TOKENS
    # Room for three questions, not four.
    quota = 2 * cost + reservation + cost - 1
    async with cluster.clients(source=next(_addresses)) as (a, b, proxy):
        admin_tokens = await tokens_for(a, admin)
        set_quota = await a.patch(
            f"/users/{account.id}",
            json={"daily_token_quota": quota},
            headers=bearer(admin_tokens),
        )
        assert set_quota.status_code == 200, set_quota.text
        tokens = await tokens_for(b, account)

        for client in (b, proxy, a):
            response = await ask(client, tokens)
            assert response.status_code == 201, response.text
        for client in (b, a, proxy):
            refused = await ask(client, tokens)
            assert refused.status_code == 429, refused.text
            assert "quota" in refused.json()["detail"]

        for client in (a, b):
            usage = await client.get("/users/me/usage", headers=bearer(tokens))
            assert usage.status_code == 200, usage.text
            assert usage.json()["used_tokens"] == 3 * cost
            assert usage.json()["reserved_tokens"] == 0
            assert usage.json()["quota"] == quota


async def test_question_ids_stay_unique_under_concurrent_questions(
    cluster: Cluster,
) -> None:
    # 4 each: ASKGATE_MAX_CONCURRENT_QUESTIONS_PER_USER's default.
    accounts = [await create_user(cluster.db) for _ in range(5)]
    per_account = 4
    upstream = cluster.upstream
    async with cluster.clients(source=next(_addresses)) as clients:
        tokens = [await tokens_for(clients[0], account) for account in accounts]
        upstream.gate = asyncio.Event()  # the upstream holds every question
        try:
            tasks = [
                asyncio.create_task(
                    ask(clients[n % 3], tokens[n % 5], content=f"question {n}")
                )
                for n in range(5 * per_account)
            ]
            # All 20 in flight at once (or one already failed: see below).
            while upstream.in_flight < len(tasks) and not any(
                task.done() for task in tasks
            ):
                await asyncio.sleep(0.01)
            upstream.gate.set()
            responses = await asyncio.gather(*tasks)
        finally:
            upstream.gate.set()
            upstream.gate = None

        assert [r.status_code for r in responses] == [201] * len(tasks), [
            r.text for r in responses if r.status_code != 201
        ]
        ids = [response.json()["id"] for response in responses]
        assert len(set(ids)) == len(ids)
        for n, account_tokens in enumerate(tokens):
            listed = await clients[1].get(
                "/questions/me?limit=100", headers=bearer(account_tokens)
            )
            assert listed.status_code == 200, listed.text
            assert sorted(q["id"] for q in listed.json()) == sorted(ids[n::5])


async def _read_events(
    response: httpx.Response,
) -> AsyncIterator[dict[str, Any]]:
    async for line in response.aiter_lines():
        if line.startswith("data: "):
            event: dict[str, Any] = json.loads(line.removeprefix("data: "))
            yield event


async def first_pieces(
    client: httpx.AsyncClient, tokens: dict[str, Any], content: str, *, count: int
) -> list[str]:
    """The text of a streamed answer's first `count` events, then hang up."""
    pieces: list[str] = []
    async with client.stream(
        "POST",
        "/questions",
        json={"content": content, "stream": True},
        headers=bearer(tokens),
    ) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        async for event in _read_events(response):
            assert event["type"] == "delta", event
            pieces.append(event["text"])
            if len(pieces) == count:
                break
    return pieces


async def wait_for_question(
    client: httpx.AsyncClient, tokens: dict[str, Any]
) -> dict[str, Any]:
    """The caller's one question, once stored (a stream is stored as it ends)."""
    async with asyncio.timeout(30):  # a bound on the wait, not on askgate's speed
        while True:
            listed = await client.get("/questions/me", headers=bearer(tokens))
            assert listed.status_code == 200, listed.text
            if listed.json():
                (question,) = listed.json()
                assert isinstance(question, dict)
                return question
            await asyncio.sleep(0.05)


async def test_a_streamed_answer_passes_through_nginx_as_it_is_written(
    cluster: Cluster,
) -> None:
    account = await create_user(cluster.db)
    upstream = cluster.upstream
    content = "one two three four"
    async with cluster.client(cluster.https_url, source=next(_addresses)) as proxy:
        tokens = await tokens_for(proxy, account)
        # The upstream sends the first 3 pieces, then holds the rest back: they
        # can only reach the client if nobody on the way waits for the end.
        upstream.mode, upstream.stall_after = "stall_stream", 3
        try:
            async with asyncio.timeout(30):
                pieces = await first_pieces(proxy, tokens, content, count=3)
        except TimeoutError:
            pytest.fail("the first pieces never came: something on the way buffers")
        finally:
            upstream.mode = "ok"
        assert "".join(pieces) == "You asked: one"
        # nginx passed the hang-up on: askgate stored the question as cancelled.
        cancelled = await wait_for_question(proxy, tokens)
        assert (cancelled["status"], cancelled["answer"]) == (
            "cancelled",
            "You asked: one",
        )

        # Unhindered, the whole answer arrives, one event per piece, then `done`.
        async with proxy.stream(
            "POST",
            "/questions",
            json={"content": content, "stream": True},
            headers=bearer(tokens),
        ) as response:
            events = [event async for event in _read_events(response)]
        answer = answer_for(content)
        assert [e["type"] for e in events] == ["delta"] * len(answer.split()) + ["done"]
        assert events[-1]["question"]["answer"] == answer
        assert events[-1]["question"]["status"] == "answered"


async def test_the_web_page_and_its_secure_login_cookie_through_nginx(
    cluster: Cluster,
) -> None:
    """The page passes through nginx with its own CSP, and its login cookie is
    Secure there (nginx's X-Forwarded-Proto, trusted), not on plain HTTP straight
    to an instance, even when a client claims HTTPS itself."""
    account = await create_user(cluster.db)
    form = {"username": account.username, "password": account.password}
    web = {"X-Askgate-Web": "1"}
    async with cluster.clients(source=next(_addresses)) as (a, b, proxy):
        page = await proxy.get("/")
        logins = {
            "proxy": await proxy.post("/auth/token", data=form, headers=web),
            "a": await a.post("/auth/token", data=form, headers=web),
            "b, claiming https": await b.post(
                "/auth/token", data=form, headers={**web, "X-Forwarded-Proto": "https"}
            ),
        }
        cookies = {
            name: SimpleCookie(login.headers["set-cookie"])[REFRESH_COOKIE]
            for name, login in logins.items()
        }
        origin = urlsplit(cluster.https_url)
        proxy.cookies.clear()
        refreshed = await proxy.post(
            "/auth/refresh",
            headers={
                **web,
                "Origin": f"https://{origin.netloc}",
                "Cookie": f"{REFRESH_COOKIE}={cookies['proxy'].value}",
            },
        )

    assert page.status_code == 200
    assert page.headers["content-security-policy"] == WEB_CSP
    assert all(login.json()["refresh_token"] is None for login in logins.values())
    assert {name: bool(cookie["secure"]) for name, cookie in cookies.items()} == {
        "proxy": True,
        "a": False,
        "b, claiming https": False,
    }
    assert refreshed.status_code == 200, refreshed.text
    assert SimpleCookie(refreshed.headers["set-cookie"])[REFRESH_COOKIE]["secure"]
