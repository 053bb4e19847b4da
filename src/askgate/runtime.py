"""The long-lived objects of one process, created in the app lifespan."""

from dataclasses import dataclass
from typing import Annotated

import aiohttp
from fastapi import Depends, Request

from askgate.config import Settings
from askgate.db import Database
from askgate.llm.client import LLMClient


@dataclass(slots=True)
class Runtime:
    settings: Settings
    db: Database
    http: aiohttp.ClientSession  # the one client session: pooled upstream connections
    llm: LLMClient | None  # None: no upstream configured


def get_runtime(request: Request) -> Runtime:
    runtime: Runtime = request.app.state.runtime
    return runtime


def get_settings(request: Request) -> Settings:
    return get_runtime(request).settings


RuntimeDep = Annotated[Runtime, Depends(get_runtime)]
SettingsDep = Annotated[Settings, Depends(get_settings)]
