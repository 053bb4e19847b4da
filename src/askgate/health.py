from typing import Literal

from fastapi import APIRouter
from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError

from askgate.runtime import RuntimeDep
from askgate.schemas import Schema

router = APIRouter(tags=["operations"])


class Health(Schema):
    status: Literal["ok", "degraded"]
    database: Literal["ok", "error"]
    llm: Literal["ok", "unreachable", "not_configured"]

    model_config = {
        "json_schema_extra": {
            "examples": [{"status": "ok", "database": "ok", "llm": "ok"}]
        }
    }


@router.get(
    "/health",
    response_model=Health,
    summary="Health check",
    description=(
        "Always 200; `status` is `ok` when the database answers and the LLM "
        "upstream lists its models, `degraded` otherwise. No authentication."
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
    if runtime.llm is not None:
        llm = "ok" if await runtime.llm.check() else "unreachable"
    healthy = database == "ok" and llm == "ok"
    return Health(status="ok" if healthy else "degraded", database=database, llm=llm)
