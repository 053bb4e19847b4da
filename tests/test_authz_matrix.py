"""Who may call what: every route × {anonymous, user, another user, admin, the
user's API key, the admin's API key}.

Question routes work on a question owned by "user"; user routes with an id work on
a separate target account; key routes with an id on a fresh key of "user". A new
route without a row here fails `test_the_matrix_covers_every_documented_route`.
A key is accepted only where a caller asks or reads their own data; elsewhere it
is 403, and it never carries an admin's powers.
"""

import itertools
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from fastapi.routing import APIRoute, iter_route_contexts

from askgate.db import Database
from askgate.users.models import Role
from tests.factories import (
    Account,
    auth_headers,
    create_api_key,
    create_user,
    key_headers,
    login,
)
from tests.fake_upstream import MODEL

ACTORS = ("anonymous", "user", "other", "admin", "user_key", "admin_key")
# Whose account a key actor's key belongs to.
KEY_OWNERS = {"user_key": "user", "admin_key": "admin"}
_names = itertools.count(1)


@dataclass
class World:
    client: httpx.AsyncClient
    accounts: dict[str, Account]  # by actor; "target" is the subject of /users/{id}
    headers: dict[str, dict[str, str]]  # by actor; anonymous sends none
    question_id: int

    def credentials(self, actor: str) -> Account:
        """Whose credentials an auth route sends: the actor's own, or, for an
        anonymous caller, those of "user" (logging in needs no token)."""
        if actor == "anonymous":
            return self.accounts["user"]
        return self.accounts[KEY_OWNERS.get(actor, actor)]


@dataclass
class Call:
    path: str
    json: Any = None
    data: dict[str, str] | None = None


CallBuilder = Callable[[World, str], Awaitable[Call]]


async def _register(world: World, actor: str) -> Call:
    name = f"newcomer{next(_names)}"
    return Call("/auth/register", json={"username": name, "password": "p" * 12})


async def _token(world: World, actor: str) -> Call:
    account = world.credentials(actor)
    return Call(
        "/auth/token", data={"username": account.username, "password": account.password}
    )


async def _refresh(world: World, actor: str) -> Call:
    tokens = await login(world.client, world.credentials(actor))
    return Call("/auth/refresh", json={"refresh_token": tokens["refresh_token"]})


async def _logout(world: World, actor: str) -> Call:
    tokens = await login(world.client, world.credentials(actor))
    return Call("/auth/logout", json={"refresh_token": tokens["refresh_token"]})


async def _me(world: World, actor: str) -> Call:
    return Call("/users/me")


async def _my_usage(world: World, actor: str) -> Call:
    return Call("/users/me/usage")


async def _my_daily_usage(world: World, actor: str) -> Call:
    return Call("/users/me/usage/daily?format=csv")


async def _daily_usage(world: World, actor: str) -> Call:
    return Call("/usage/daily")


async def _leaderboard(world: World, actor: str) -> Call:
    return Call("/usage/leaderboard?by=questions")


async def _update_me(world: World, actor: str) -> Call:
    return Call("/users/me", json={"email": f"{actor}@example.com"})


async def _users(world: World, actor: str) -> Call:
    return Call("/users")


async def _create_user(world: World, actor: str) -> Call:
    name = f"created{next(_names)}"
    return Call("/users", json={"username": name, "password": "p" * 12})


async def _target_user(world: World, actor: str) -> Call:
    return Call(f"/users/{world.accounts['target'].id}")


async def _update_target_user(world: World, actor: str) -> Call:
    return Call(f"/users/{world.accounts['target'].id}", json={"role": "admin"})


async def _ask(world: World, actor: str) -> Call:
    return Call("/questions", json={"content": "Who may ask?"})


async def _my_questions(world: World, actor: str) -> Call:
    return Call("/questions/me")


async def _questions(world: World, actor: str) -> Call:
    return Call("/questions")


async def _question(world: World, actor: str) -> Call:
    return Call(f"/questions/{world.question_id}")


async def _chat_completion(world: World, actor: str) -> Call:
    return Call(
        "/v1/chat/completions",
        json={"model": MODEL, "messages": [{"role": "user", "content": "Who?"}]},
    )


async def _models(world: World, actor: str) -> Call:
    return Call("/v1/models")


async def _model(world: World, actor: str) -> Call:
    return Call(f"/v1/models/{MODEL}")


async def _create_key(world: World, actor: str) -> Call:
    return Call("/users/me/api-keys", json={"name": f"{actor}'s key"})


async def _my_keys(world: World, actor: str) -> Call:
    return Call("/users/me/api-keys")


async def _a_fresh_key_id(world: World) -> int:
    key = await create_api_key(world.client, world.headers["user"])
    return int(key["id"])


async def _users_key(world: World, actor: str) -> Call:
    return Call(f"/users/me/api-keys/{await _a_fresh_key_id(world)}")


async def _keys(world: World, actor: str) -> Call:
    return Call("/api-keys")


async def _any_key(world: World, actor: str) -> Call:
    return Call(f"/api-keys/{await _a_fresh_key_id(world)}")


async def _my_export(world: World, actor: str) -> Call:
    return Call("/users/me/export")


async def _health(world: World, actor: str) -> Call:
    return Call("/health")


async def _live(world: World, actor: str) -> Call:
    return Call("/health/live")


async def _ready(world: World, actor: str) -> Call:
    return Call("/health/ready")


async def _metrics(world: World, actor: str) -> Call:
    return Call("/metrics")


def _same(status: int) -> dict[str, int]:
    return dict.fromkeys(ACTORS, status)


def _login(status: int) -> dict[str, int]:
    """Any login; a key is 403."""
    return {
        "anonymous": 401,
        "user": status,
        "other": status,
        "admin": status,
        "user_key": 403,
        "admin_key": 403,
    }


def _login_or_key(status: int) -> dict[str, int]:
    return {**_login(status), "user_key": status, "admin_key": status}


def _admin_only(status: int) -> dict[str, int]:
    return {**_login(403), "admin": status}


def _owner_or_admin(status: int) -> dict[str, int]:
    """A thing of "user": the admin's powers come with a login only."""
    return {**_login_or_key(status), "other": 404, "admin_key": 404}


def _owner(status: int) -> dict[str, int]:
    """A key of "user", through the owner's own routes: 404 for anyone else."""
    return {**_login(404), "user": status}


# (method, route path as declared, request builder, expected status by actor)
MATRIX: list[tuple[str, str, CallBuilder, dict[str, int]]] = [
    ("POST", "/auth/register", _register, _same(201)),
    ("POST", "/auth/token", _token, _same(200)),
    ("POST", "/auth/refresh", _refresh, _same(200)),
    ("POST", "/auth/logout", _logout, _same(204)),
    ("GET", "/users/me", _me, _login_or_key(200)),
    ("GET", "/users/me/usage", _my_usage, _login_or_key(200)),
    ("GET", "/users/me/usage/daily", _my_daily_usage, _login_or_key(200)),
    ("GET", "/usage/daily", _daily_usage, _admin_only(200)),
    ("GET", "/usage/leaderboard", _leaderboard, _admin_only(200)),
    ("GET", "/users/me/export", _my_export, _login(200)),
    ("PATCH", "/users/me", _update_me, _login(200)),
    # The world's only admin: an active admin always remains.
    ("DELETE", "/users/me", _me, {**_login(204), "admin": 409}),
    ("GET", "/users", _users, _admin_only(200)),
    ("POST", "/users", _create_user, _admin_only(201)),
    ("GET", "/users/{user_id}", _target_user, _admin_only(200)),
    ("PATCH", "/users/{user_id}", _update_target_user, _admin_only(200)),
    ("DELETE", "/users/{user_id}", _target_user, _admin_only(204)),
    ("POST", "/users/me/api-keys", _create_key, _login(201)),
    ("GET", "/users/me/api-keys", _my_keys, _login(200)),
    ("DELETE", "/users/me/api-keys/{key_id}", _users_key, _owner(204)),
    ("GET", "/api-keys", _keys, _admin_only(200)),
    ("DELETE", "/api-keys/{key_id}", _any_key, _admin_only(204)),
    ("POST", "/questions", _ask, _login_or_key(201)),
    ("GET", "/questions/me", _my_questions, _login_or_key(200)),
    ("GET", "/questions", _questions, _admin_only(200)),
    ("GET", "/questions/{question_id}", _question, _owner_or_admin(200)),
    ("DELETE", "/questions/{question_id}", _question, _owner_or_admin(204)),
    ("POST", "/v1/chat/completions", _chat_completion, _login_or_key(200)),
    ("GET", "/v1/models", _models, _login_or_key(200)),
    ("GET", "/v1/models/{name}", _model, _login_or_key(200)),
    ("GET", "/health", _health, _same(200)),
    ("GET", "/health/live", _live, _same(200)),
    ("GET", "/health/ready", _ready, _same(200)),
    # Without ASKGATE_METRICS_TOKEN: open to anyone (tests/test_metrics.py).
    ("GET", "/metrics", _metrics, _same(200)),
]

CASES = [
    pytest.param(method, builder, actor, expected[actor], id=f"{method} {path} {actor}")
    for method, path, builder, expected in MATRIX
    for actor in ACTORS
]


@pytest.fixture
async def world(
    client: httpx.AsyncClient,
    db: Database,
    user: Account,
    admin: Account,
    user_headers: dict[str, str],
    admin_headers: dict[str, str],
) -> World:
    other = await create_user(db)
    target = await create_user(db)
    asked = await client.post(
        "/questions", json={"content": "Whose is this?"}, headers=user_headers
    )
    assert asked.status_code == 201, asked.text
    users_key = await create_api_key(client, user_headers)
    admins_key = await create_api_key(client, admin_headers)
    return World(
        client=client,
        accounts={"user": user, "other": other, "admin": admin, "target": target},
        headers={
            "anonymous": {},
            "user": user_headers,
            "other": await auth_headers(client, other),
            "admin": admin_headers,
            "user_key": key_headers(users_key["key"]),
            "admin_key": key_headers(admins_key["key"]),
        },
        question_id=asked.json()["id"],
    )


@pytest.mark.parametrize(("method", "builder", "actor", "expected"), CASES)
async def test_status_by_route_and_caller(
    world: World, method: str, builder: CallBuilder, actor: str, expected: int
) -> None:
    call = await builder(world, actor)

    response = await world.client.request(
        method,
        call.path,
        json=call.json,
        data=call.data,
        headers=world.headers[actor],
    )

    assert response.status_code == expected, response.text
    if expected == 401:
        assert response.headers["WWW-Authenticate"] == "Bearer"


def test_the_matrix_is_complete_for_every_caller() -> None:
    for method, path, _builder, expected in MATRIX:
        assert set(expected) == set(ACTORS), f"{method} {path}"
    keys = [(method, path) for method, path, _builder, _expected in MATRIX]
    assert len(keys) == len(set(keys)), "a route has two rows"


def test_the_matrix_covers_every_documented_route(app: FastAPI) -> None:
    documented = {
        (method.upper(), path)
        for path, item in app.openapi()["paths"].items()
        for method in item
    }
    # iter_route_contexts: app.routes holds included routers, not their routes.
    routed = {
        (method, route.path)
        for route in iter_route_contexts(app.routes)
        if isinstance(route.original_route, APIRoute) and route.include_in_schema
        for method in route.methods or ()
    }
    in_matrix = {(method, path) for method, path, _builder, _expected in MATRIX}

    assert routed == documented
    assert in_matrix == documented


@pytest.mark.parametrize("role", [Role.USER, Role.ADMIN])
async def test_a_stale_token_of_a_deleted_account_is_refused(
    client: httpx.AsyncClient,
    db: Database,
    admin_headers: dict[str, str],
    role: Role,
) -> None:
    victim = await create_user(db, role=role)
    headers = await auth_headers(client, victim)
    deleted = await client.delete(f"/users/{victim.id}", headers=admin_headers)
    assert deleted.status_code == 204

    for path in ("/users/me", "/questions/me", "/users"):
        response = await client.get(path, headers=headers)
        assert response.status_code == 401, path
