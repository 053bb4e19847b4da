"""Health: the probes an orchestrator polls, and /health for people.

`/health/live` checks nothing but the process: it answers, unless it is shutting
down. `/health/ready` checks what a question needs: the database (SELECT 1),
Redis when configured (a PING), and one model with an upstream (its own or a
fallback) whose circuit breaker is not open; it never calls an upstream.
`/health` answers anyone from the same cheap checks; only an admin's token adds
the per-upstream detail, which asks every upstream for its models. None of them
is rate limited, and none may be cached.
"""

import asyncio
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Request, Response
from pydantic import Field
from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError

from askgate.api_keys.keys import is_api_key
from askgate.auth.cache import Caller
from askgate.auth.deps import Credential
from askgate.errors import NotAuthenticated
from askgate.llm.registry import ModelRegistry
from askgate.llm.resilience import CircuitState
from askgate.no_store import NoStore
from askgate.runtime import Runtime, RuntimeDep
from askgate.schemas import Schema

router = APIRouter(tags=["operations"], dependencies=[NoStore])

Circuit = Literal["closed", "open", "half_open"]
# A dependency that does not answer within this long is down, for a probe.
CHECK_TIMEOUT_SECONDS = 2.0
SERVICE_UNAVAILABLE = 503


class UpstreamHealth(Schema):
    model: str = Field(
        description="The public name of the model it answers for (a fallback of "
        "ASKGATE_LLM_FALLBACK_URLS: its upstream model)"
    )
    circuit: Circuit
    in_flight: int


class Health(Schema):
    status: Literal["ok", "degraded"]
    database: Literal["ok", "error"]
    llm: Literal["ok", "unreachable", "not_configured"]
    circuit: Circuit | None = None
    upstreams: list[UpstreamHealth] | None = None

    model_config = {
        "json_schema_extra": {
            "examples": [
                {"status": "ok", "database": "ok", "llm": "ok"},
                {
                    "status": "ok",
                    "database": "ok",
                    "llm": "ok",
                    "circuit": "closed",
                    "upstreams": [
                        {"model": "gpt-4o-mini", "circuit": "closed", "in_flight": 2}
                    ],
                },
            ]
        }
    }


class Liveness(Schema):
    status: Literal["ok", "shutting_down"]


class Readiness(Schema):
    status: Literal["ready", "not_ready", "shutting_down"]
    database: Literal["ok", "error"] | None = None
    redis: Literal["ok", "error", "not_configured"] | None = None
    llm: Literal["ok", "circuit_open", "not_configured"] | None = None
    failing: list[str] = Field(
        description="What is not ready: `shutting_down`, `database`, `redis`, `llm`"
    )

    model_config = {
        "json_schema_extra": {
            "examples": [
                {
                    "status": "ready",
                    "database": "ok",
                    "redis": "not_configured",
                    "llm": "ok",
                    "failing": [],
                },
                {
                    "status": "not_ready",
                    "database": "ok",
                    "redis": "error",
                    "llm": "ok",
                    "failing": ["redis"],
                },
            ]
        }
    }


async def _database_ok(runtime: Runtime) -> bool:
    try:
        async with asyncio.timeout(CHECK_TIMEOUT_SECONDS):
            async with runtime.db.read() as session:
                await session.execute(text("SELECT 1"))
    except (SQLAlchemyError, OSError, TimeoutError):
        return False
    return True


async def _redis_state(runtime: Runtime) -> Literal["ok", "error", "not_configured"]:
    if not runtime.limiter.shared:
        return "not_configured"
    return "ok" if await runtime.limiter.ping() else "error"


def _any_model_open_to_calls(models: ModelRegistry) -> bool:
    """At least one model has an upstream (its own or a fallback) that will be
    called (closed, or half-open): the instance can answer questions."""
    return any(
        any(u.breaker.state is not CircuitState.OPEN for u in model.client.upstreams)
        for model in models
    )


def _every_model_has_a_way(models: ModelRegistry) -> bool:
    """Each model has an upstream (its own or a fallback) whose circuit is not
    open: a question to it will be sent somewhere."""
    return all(
        any(u.breaker.state is not CircuitState.OPEN for u in model.client.upstreams)
        for model in models
    )


def _all_closed(models: ModelRegistry) -> bool:
    return all(model.upstream.breaker.state is CircuitState.CLOSED for model in models)


@router.get(
    "/health/live",
    response_model=Liveness,
    summary="Liveness probe",
    description=(
        "200 while the process serves requests; 503 once it was told to stop "
        "(SIGTERM). Checks no dependency. No authentication; never cached."
    ),
    responses={SERVICE_UNAVAILABLE: {"model": Liveness, "description": "Stopping"}},
)
async def live(runtime: RuntimeDep, response: Response) -> Liveness:
    if runtime.shutting_down:
        response.status_code = SERVICE_UNAVAILABLE
        return Liveness(status="shutting_down")
    return Liveness(status="ok")


@router.get(
    "/health/ready",
    response_model=Readiness,
    response_model_exclude_none=True,
    summary="Readiness probe",
    description=(
        "200 when this instance can answer questions: the database answers "
        "`SELECT 1`, Redis (when ASKGATE_REDIS_URL is set) answers a PING, and at "
        "least one model has an upstream (its own or a fallback) whose circuit "
        "breaker is not open. Calls no "
        "upstream. 503 otherwise, naming what fails in `failing`, and 503 at "
        "once while shutting down. No authentication; never cached."
    ),
    responses={SERVICE_UNAVAILABLE: {"model": Readiness, "description": "Not ready"}},
)
async def ready(runtime: RuntimeDep, response: Response) -> Readiness:
    if runtime.shutting_down:
        response.status_code = SERVICE_UNAVAILABLE
        return Readiness(status="shutting_down", failing=["shutting_down"])
    database_ok, redis = await asyncio.gather(
        _database_ok(runtime), _redis_state(runtime)
    )
    models = runtime.models
    llm: Literal["ok", "circuit_open", "not_configured"] = (
        "not_configured"
        if models is None
        else "ok"
        if _any_model_open_to_calls(models)
        else "circuit_open"
    )
    failing = [
        part
        for part, ok in (
            ("database", database_ok),
            ("redis", redis != "error"),
            ("llm", llm == "ok"),
        )
        if not ok
    ]
    if failing:
        response.status_code = SERVICE_UNAVAILABLE
    return Readiness(
        status="not_ready" if failing else "ready",
        database="ok" if database_ok else "error",
        redis=redis,
        llm=llm,
        failing=failing,
    )


async def _admin_or_none(request: Request, token: Credential) -> Caller | None:
    """An admin's login, or None for anyone else: a user, a key, a token that
    is not valid (health says nothing about the caller, so it refuses nobody)."""
    if not token or is_api_key(token):
        return None
    runtime: Runtime = request.app.state.runtime
    try:
        # Health must answer while the database is down: the caller's lookup
        # then gives up as the database check does, and the view is anonymous.
        async with asyncio.timeout(CHECK_TIMEOUT_SECONDS):
            caller = await runtime.callers.caller(token)
    except (NotAuthenticated, SQLAlchemyError, OSError, TimeoutError):
        return None
    return caller if caller.acts_as_admin else None


AdminOrNone = Annotated[Caller | None, Depends(_admin_or_none)]


@router.get(
    "/health",
    response_model=Health,
    response_model_exclude_none=True,
    summary="Health check",
    description=(
        "Always 200; `status` is `ok` when the "
        "database answers and each model's own upstream has its circuit breaker "
        "`closed`, `degraded` otherwise. `llm` is `unreachable` when some model "
        "has no upstream (its own or a fallback) whose circuit is not open. "
        "Calls no upstream. With an admin's token it also asks each upstream "
        "for its models (then `llm` is `unreachable` when some model reaches "
        "none) and adds `circuit`, the default model's breaker (`open` while "
        "askgate has stopped calling its upstream after repeated failures, "
        "`half_open` while a trial request decides), and `upstreams`: each "
        "model's upstream (by the model's name), then any other fallback, with "
        "its breaker and the questions in flight."
    ),
)
async def health(runtime: RuntimeDep, admin: AdminOrNone) -> Health:
    database: Literal["ok", "error"] = "ok" if await _database_ok(runtime) else "error"
    models = runtime.models
    if models is None:
        return Health(status="degraded", database=database, llm="not_configured")
    if admin is not None:
        return await _detailed(models, database)
    reachable = _every_model_has_a_way(models)
    healthy = database == "ok" and reachable and _all_closed(models)
    return Health(
        status="ok" if healthy else "degraded",
        database=database,
        llm="ok" if reachable else "unreachable",
    )


async def _detailed(models: ModelRegistry, database: Literal["ok", "error"]) -> Health:
    every = models.upstreams
    checks = await asyncio.gather(*(u.client.check() for u in every))
    answers = dict(zip(every, checks, strict=True))
    reachable = all(any(answers[u] for u in model.client.upstreams) for model in models)
    healthy = database == "ok" and reachable and _all_closed(models)
    return Health(
        status="ok" if healthy else "degraded",
        database=database,
        llm="ok" if reachable else "unreachable",
        circuit=models.default.upstream.breaker.state.value,
        upstreams=[
            UpstreamHealth(
                model=upstream.name,
                circuit=upstream.breaker.state.value,
                in_flight=upstream.in_flight,
            )
            for upstream in every
        ],
    )
