from typing import Literal

from fastapi import APIRouter
from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError

from askgate.runtime import RuntimeDep
from askgate.schemas import Schema

router = APIRouter(tags=["operations"])

Circuit = Literal["closed", "open", "half_open"]


class UpstreamHealth(Schema):
    model: str
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
        "Always 200; `status` is `ok` when the database answers, an LLM upstream "
        "lists its models and the primary upstream's circuit breaker is `closed`, "
        "`degraded` otherwise. `circuit` is the primary's breaker: `open` while "
        "askgate has stopped calling it after repeated failures, `half_open` while "
        "a trial request decides. `upstreams` lists the primary, then each "
        "fallback, with its breaker and the questions in flight. No authentication."
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
    if runtime.llm is not None:
        llm = "ok" if await runtime.llm.check() else "unreachable"
        circuit = runtime.llm.circuit.value
        upstreams = [
            UpstreamHealth(
                model=upstream.client.model,
                circuit=upstream.breaker.state.value,
                in_flight=upstream.in_flight,
            )
            for upstream in runtime.llm.upstreams
        ]
    healthy = database == "ok" and llm == "ok" and circuit in {None, "closed"}
    return Health(
        status="ok" if healthy else "degraded",
        database=database,
        llm=llm,
        circuit=circuit,
        upstreams=upstreams,
    )
