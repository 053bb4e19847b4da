"""The long-lived objects of one process, created in the app lifespan."""

from dataclasses import dataclass
from typing import Annotated

import aiohttp
from fastapi import Depends, Request

from askgate.api_keys.last_used import LastUsed
from askgate.auth.cache import CallerCache
from askgate.config import Settings
from askgate.db import Database
from askgate.llm.registry import ModelRegistry
from askgate.questions.ledger import Ledger
from askgate.shutdown import Stopping
from askgate.throttle import Throttle


@dataclass(slots=True)
class Runtime:
    settings: Settings
    db: Database
    http: aiohttp.ClientSession  # the one client session: pooled upstream connections
    models: ModelRegistry | None  # None: no upstream configured
    limiter: Throttle  # rate limits and login throttling
    callers: CallerCache  # who holds a token or key, kept exact by the auth epoch
    ledger: Ledger  # the group-committed writes of asking
    key_uses: LastUsed  # the throttled writes of API keys' last_used_at
    stopping: Stopping  # the running questions, and the graceful stop
    # Set when the process was told to stop (SIGTERM): the probes answer 503 and the
    # running questions get the grace period (askgate.shutdown sets it).
    shutting_down: bool = False


# async on purpose: FastAPI runs plain `def` dependencies in a worker thread.
async def get_runtime(request: Request) -> Runtime:
    runtime: Runtime = request.app.state.runtime
    return runtime


async def get_settings(request: Request) -> Settings:
    settings: Settings = request.app.state.runtime.settings
    return settings


RuntimeDep = Annotated[Runtime, Depends(get_runtime)]
SettingsDep = Annotated[Settings, Depends(get_settings)]
