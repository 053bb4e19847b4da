"""The FastAPI application: create_app() and the lifespan that owns long-lived
objects (engine, sessionmakers, the single aiohttp session, the models)."""

import asyncio
import contextlib
import gc
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import aiohttp
from fastapi import APIRouter, FastAPI
from fastapi.middleware.cors import CORSMiddleware
from fastapi_offline import FastAPIOffline

from askgate import __version__
from askgate.api_keys.last_used import LastUsed
from askgate.api_keys.router import admin_router as api_keys_admin_router
from askgate.api_keys.router import router as api_keys_router
from askgate.auth.cache import CallerCache
from askgate.auth.router import router as auth_router
from askgate.auth.security import limit_concurrent_hashing
from askgate.config import Settings, ensure_private_database, ensure_secret_key
from askgate.db import Database, create_engine
from askgate.errors import Conflict, install_error_handlers
from askgate.health import router as health_router
from askgate.llm.models_file import ModelEntry, load_models_file
from askgate.llm.registry import ModelRegistry, build_registry
from askgate.metrics_endpoint import forget_worker
from askgate.metrics_endpoint import router as metrics_router
from askgate.middleware import (
    EXPOSED_HEADERS,
    REQUEST_ID_HEADER,
    BodyLimitMiddleware,
    RequestContextMiddleware,
    SecurityHeadersMiddleware,
)
from askgate.openai_api import errors as openai_errors
from askgate.openai_api.router import router as openai_router
from askgate.questions import retention
from askgate.questions.ledger import Ledger
from askgate.questions.router import router as questions_router
from askgate.quota import service as quota_service
from askgate.runtime import Runtime
from askgate.shutdown import Stopping
from askgate.throttle import Throttle
from askgate.usage.router import router as usage_router
from askgate.users import service as users_service
from askgate.users.router import router as users_router
from askgate.users.schemas import AdminUserCreate, admin_from_settings
from askgate.web import router as web

logger = logging.getLogger("askgate.app")

# How long the lifespan's end waits for cut questions to hand over their writes:
# cancelled, they only store what arrived, so this is a bound, not a wait.
STOP_DRAIN_SECONDS = 10.0

# aiosqlite's DEBUG records carry every SQL parameter, password hashes included;
# quiet it unless explicitly configured, as SQLAlchemy does for its own loggers.
if logging.getLogger("aiosqlite").level == logging.NOTSET:
    logging.getLogger("aiosqlite").setLevel(logging.INFO)

DESCRIPTION = """
A self-hosted, multi-user, ChatGPT-style API in front of any OpenAI-compatible LLM.

1. `POST /auth/register` creates an account.
2. `POST /auth/token` (or **Authorize** above) logs in.
3. `POST /questions` asks; `GET /questions/me` lists your latest questions.
"""


def _models(
    settings: Settings,
    http: aiohttp.ClientSession,
    entries: list[ModelEntry] | None,
) -> ModelRegistry | None:
    models = build_registry(settings, http, entries)
    if models is None:
        logger.warning("No LLM upstream configured: questions will answer 503")
    return models


async def _ensure_first_admin(first: AdminUserCreate | None, db: Database) -> None:
    if first is None:
        return
    try:
        admin = await users_service.ensure_admin(
            db=db, username=first.username, password=first.password
        )
    except Conflict:
        # Another worker created it a moment ago, or a user holds that name.
        logger.warning(
            "ASKGATE_ADMIN_USERNAME %r is taken; no admin created from the environment",
            first.username,
        )
        return
    if admin is not None:
        logger.info("Created the first admin %r from ASKGATE_ADMIN_*", admin.username)


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or Settings()
    first_admin = admin_from_settings(settings)  # a bad one stops startup here
    # Read once; an invalid file stops startup too, naming the entry and field.
    entries = load_models_file(settings.models_file) if settings.models_file else None
    ensure_secret_key(settings)
    ensure_private_database(settings)
    limit_concurrent_hashing(settings.password_hash_concurrency)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        limiter = await Throttle.open(settings)
        db = Database(create_engine(settings.sqlalchemy_url))
        http = aiohttp.ClientSession(
            # No pool limit of its own: each upstream's concurrency cap
            # (ASKGATE_LLM_MAX_CONCURRENCY) is the limit.
            connector=aiohttp.TCPConnector(limit=0, limit_per_host=0),
            raise_for_status=False,
            # No cookie state: an upstream's cookie must not travel from one
            # user's question to the next (and filtering a jar costs every call).
            cookie_jar=aiohttp.DummyCookieJar(),
        )
        ledger = Ledger(
            db, reservation_max_age=quota_service.reservation_max_age(settings)
        )
        callers = CallerCache(db, settings.signing_key())
        key_uses = LastUsed(db)
        stopping = Stopping(
            settings.shutdown_grace_seconds,
            on_begin=lambda: setattr(app.state.runtime, "shutting_down", True),
        )
        purging: asyncio.Task[None] | None = None
        try:
            app.state.runtime = Runtime(
                settings=settings,
                db=db,
                http=http,
                models=_models(settings, http, entries),
                limiter=limiter,
                callers=callers,
                ledger=ledger,
                key_uses=key_uses,
                stopping=stopping,
            )
            stopping.install()
            await _ensure_first_admin(first_admin, db)
            if settings.question_retention_days:
                # Every instance runs it; the database lock lets one at a time.
                purging = asyncio.create_task(
                    retention.keep_for(db=db, days=settings.question_retention_days)
                )
            # Everything built so far (modules, FastAPI's routes and models,
            # SQLAlchemy's mappers: ~150,000 objects) lives as long as the app:
            # left to the cyclic GC, it was walked again and again as requests
            # allocate, a fifth of the CPU of a question. Frozen, it is skipped.
            gc.collect()
            gc.freeze()
            yield
        finally:
            stopping.uninstall()
            gc.unfreeze()
            # The questions cut by a stop store what they got through the ledger.
            await stopping.wait_idle(STOP_DRAIN_SECONDS)
            if purging is not None:
                purging.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await purging
            await ledger.drain()
            await key_uses.drain()
            callers.close()
            await http.close()
            await db.dispose()
            await limiter.close()
            forget_worker()

    app = FastAPIOffline(
        title="askgate",
        version=__version__,
        description=DESCRIPTION,
        lifespan=lifespan,
        # FastAPI's built-in OpenTelemetry hooks look up the global providers
        # (and os.environ) on every request; askgate exports no telemetry.
        telemetry={"tracing": False, "metrics": False, "logs": False},
        # Exact paths only: a miss is one pass over the routes, not three.
        redirect_slashes=False,
    )
    install_error_handlers(app)
    openai_errors.document_no_422(app)
    # The last added runs first: security headers on every response, then the
    # request id, CORS (so a 413 is readable cross-origin), then the body limit.
    app.add_middleware(
        BodyLimitMiddleware,
        max_bytes=settings.max_body_bytes,
        refusals={openai_errors.PREFIX: openai_errors.too_large},
    )
    if settings.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_origins,
            allow_methods=["GET", "POST", "PATCH", "DELETE"],
            allow_headers=["Authorization", "Content-Type", REQUEST_ID_HEADER],
            expose_headers=EXPOSED_HEADERS,
        )
    app.add_middleware(RequestContextMiddleware)
    app.add_middleware(SecurityHeadersMiddleware)
    # The busiest routes first: a request is matched against them in order.
    _add_routes(
        app,
        questions_router,
        openai_router,
        users_router,
        api_keys_router,
        api_keys_admin_router,
        usage_router,
        auth_router,
        health_router,
        metrics_router,
    )
    if settings.web_enabled:
        web.install(app)
    return app


def _add_routes(app: FastAPI, *routers: APIRouter) -> None:
    """Put each router's routes on the app itself instead of including the router.

    The routes already carry their full path, tags and responses. FastAPI (0.16x)
    matches an included router through a wrapper on every request, which cost
    more than half of what a 404 costs askgate.
    """
    for router in routers:
        app.router.routes.extend(router.routes)
