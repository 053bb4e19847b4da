"""GET /metrics: askgate's metrics (askgate.metrics) in Prometheus' text format.

Under `askgate serve --workers N` each worker writes its own files; whichever
worker answers a scrape merges every worker's (prometheus-client's
MultiProcessCollector), so the counters are the totals of the whole `serve`.
Before merging, the live gauges (in flight, queued, circuit) of workers that have
exited are dropped: a worker removes its own at shutdown, and a scrape removes
those of one that died without shutting down (killed, crashed).

With ASKGATE_METRICS_TOKEN set the route needs it as a Bearer token; unset, it is
open, and the reverse proxy should not route /metrics from outside.
"""

import contextlib
import os
import re
import secrets
from typing import Annotated

from fastapi import APIRouter, Depends, Header, Response
from prometheus_client import (
    CONTENT_TYPE_PLAIN_0_0_4,
    REGISTRY,
    CollectorRegistry,
    generate_latest,
)
from prometheus_client.multiprocess import MultiProcessCollector, mark_process_dead

from askgate.errors import NotAuthenticated, error_responses
from askgate.metrics import multiprocess_path
from askgate.no_store import NO_STORE_HEADERS
from askgate.runtime import SettingsDep

router = APIRouter(tags=["operations"])

_LIVE_GAUGE_FILE = re.compile(r"gauge_live[a-z]+_(\d+)\.db")
BAD_METRICS_TOKEN = "A valid metrics token is required"


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: alive
        return True
    return True


def forget_dead_workers(path: str) -> None:
    """Drop the live gauges of worker processes that no longer exist."""
    pids = {
        int(match.group(1))
        for name in os.listdir(path)
        if (match := _LIVE_GAUGE_FILE.fullmatch(name))
    }
    for pid in pids:
        if pid != os.getpid() and not _pid_alive(pid):
            # Another worker's scrape may have dropped the same files first.
            with contextlib.suppress(FileNotFoundError):
                mark_process_dead(pid, path)


def forget_worker() -> None:
    """At a worker's shutdown: drop its live gauges (its counters stay)."""
    path = multiprocess_path()
    if path is not None:
        mark_process_dead(os.getpid(), path)


def exposition() -> bytes:
    """Every metric of this process, or of every worker of the `serve`."""
    path = multiprocess_path()
    if path is None:
        return generate_latest(REGISTRY)
    forget_dead_workers(path)
    registry = CollectorRegistry()
    MultiProcessCollector(registry, path)
    return generate_latest(registry)


async def require_metrics_token(
    settings: SettingsDep,
    authorization: Annotated[str | None, Header(include_in_schema=False)] = None,
) -> None:
    expected = settings.metrics_token
    if expected is None:
        return
    scheme, _, token = (authorization or "").partition(" ")
    valid = scheme.lower() == "bearer" and secrets.compare_digest(
        token.encode(), expected.get_secret_value().encode()
    )
    if not valid:
        raise NotAuthenticated(BAD_METRICS_TOKEN)


@router.get(
    "/metrics",
    summary="Prometheus metrics",
    description=(
        "askgate's metrics in Prometheus' text format (version 0.0.4), the totals "
        "of every worker of `askgate serve`. With ASKGATE_METRICS_TOKEN set, it "
        "needs `Authorization: Bearer <that token>`; unset, it is open (keep it "
        "away from the outside at the reverse proxy)."
    ),
    response_class=Response,
    responses={
        200: {"content": {CONTENT_TYPE_PLAIN_0_0_4: {}}},
        **error_responses(401),
    },
    dependencies=[Depends(require_metrics_token)],
)
def metrics() -> Response:
    # A plain `def`: reading the workers' files runs in the thread pool.
    return Response(
        exposition(),
        media_type=CONTENT_TYPE_PLAIN_0_0_4,
        headers=NO_STORE_HEADERS,
    )
