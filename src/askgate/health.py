import asyncio
from typing import Literal

from fastapi import APIRouter
from pydantic import Field
from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError

from askgate.llm.resilience import CircuitState
from askgate.runtime import RuntimeDep
from askgate.schemas import Schema

router = APIRouter(tags=["operations"])

Circuit = Literal["closed", "open", "half_open"]


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
    upstreams: list[UpstreamHealth] = []

    model_config = {
        "json_schema_extra": {
            "examples": [
                {
                    "status": "ok",
                    "database": "ok",
                    "llm": "ok",
                    "circuit": "closed",
                    "upstreams": [
                        {"model": "gpt-4o-mini", "circuit": "closed", "in_flight": 2}
                    ],
                }
            ]
        }
    }


@router.get(
    "/health",
    response_model=Health,
    summary="Health check",
    description=(
        "Always 200; `status` is `ok` when the database answers, each model "
        "reaches an LLM upstream (its own or a fallback) that lists its models, and "
        "each model's own upstream has its circuit breaker `closed`; `degraded` "
        "otherwise. `circuit` is the default model's breaker: `open` while askgate "
        "has stopped calling its upstream after repeated failures, `half_open` "
        "while a trial request decides. `upstreams` lists each model's upstream "
        "(by the model's name), then any other fallback, with its breaker and the "
        "questions in flight. No authentication."
    ),
)
async def health(runtime: RuntimeDep) -> Health:
    try:
        async with runtime.db.read() as session:
            await session.execute(text("SELECT 1"))
        database: Literal["ok", "error"] = "ok"
    except (SQLAlchemyError, OSError):
        database = "error"
    llm: Literal["ok", "unreachable", "not_configured"] = "not_configured"
    circuit: Circuit | None = None
    upstreams: list[UpstreamHealth] = []
    closed = False
    if runtime.models is not None:
        every = runtime.models.upstreams
        checks = await asyncio.gather(*(u.client.check() for u in every))
        answers = dict(zip(every, checks, strict=True))
        reachable = all(
            any(answers[u] for u in model.client.upstreams) for model in runtime.models
        )
        llm = "ok" if reachable else "unreachable"
        circuit = runtime.models.default.upstream.breaker.state.value
        closed = all(
            model.upstream.breaker.state is CircuitState.CLOSED
            for model in runtime.models
        )
        upstreams = [
            UpstreamHealth(
                model=upstream.name,
                circuit=upstream.breaker.state.value,
                in_flight=upstream.in_flight,
            )
            for upstream in every
        ]
    healthy = database == "ok" and llm == "ok" and closed
    return Health(
        status="ok" if healthy else "degraded",
        database=database,
        llm=llm,
        circuit=circuit,
        upstreams=upstreams,
    )
