"""One measured run against one server: load, and what the server spent on it.

The load generator and the upstream share the machine's cores with the server, so
the CPU a request costs is read from the server's own process tree, never derived
from wall time. The upstream's and wrk's CPU are kept too: they show whether the
server, rather than what surrounds it, was the bottleneck.
"""

import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from bench.loadgen import Load, WrkResult, run_wrk
from bench.open_streams import open_streams
from bench.processes import Server
from bench.procstat import CpuSnapshot, peak_rss_mb, reset_peak_rss

# Time for cancelled warm-up requests to unwind before the measured run starts.
SETTLE_SECONDS = 0.5
LOG_PROBLEM = re.compile(r"\b(WARNING|ERROR|CRITICAL)\b|^Traceback")


class Credentials(Protocol):
    def tokens(self, needed_for_seconds: float) -> list[str]: ...


@dataclass(frozen=True)
class Target:
    name: str  # "askgate", "pass-through" or a peer's name
    server: Server
    credentials: Credentials | None  # None: no authentication
    openai_api: bool = False  # asked through /v1/chat/completions, not /questions


@dataclass(frozen=True)
class RunSettings:
    seconds: float
    warmup_seconds: float
    wrk_threads: int
    workdir: Path


@dataclass(frozen=True)
class Measurement:
    requests: int
    seconds: float
    p50_ms: float
    p99_ms: float
    errors: dict[str, int]
    server_cpu_seconds: float
    upstream_cpu_seconds: float
    loadgen_cpu_seconds: float | None  # None: the client ran in this process
    peak_rss_mb: float
    log_problems: int  # WARNING/ERROR lines the server logged during the run
    peak_open_streams: int | None = None

    @property
    def requests_per_second(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0

    @property
    def cpu_ms_per_request(self) -> float | None:
        return self.server_cpu_seconds * 1000 / self.requests if self.requests else None

    @property
    def error_count(self) -> int:
        return sum(self.errors.values())


class _Watch:
    """CPU, peak RSS and log lines of a server (and the upstream's CPU) over a run."""

    def __init__(self, server: Server, upstream: Server) -> None:
        self._server, self._upstream = server, upstream
        reset_peak_rss(server.pid)
        self._log_offset = server.log.stat().st_size
        self._server_cpu = CpuSnapshot.of_tree(server.pid)
        self._upstream_cpu = CpuSnapshot.of_tree(upstream.pid)

    def server_cpu(self) -> float:
        return CpuSnapshot.of_tree(self._server.pid).seconds_since(self._server_cpu)

    def upstream_cpu(self) -> float:
        return CpuSnapshot.of_tree(self._upstream.pid).seconds_since(self._upstream_cpu)

    def log_problems(self) -> int:
        with self._server.log.open("rb") as log:
            log.seek(self._log_offset)
            lines = log.read().decode(errors="replace").splitlines()
        return sum(1 for line in lines if LOG_PROBLEM.search(line))


def _tokens(target: Target, seconds: float) -> list[str]:
    credentials = target.credentials
    return credentials.tokens(seconds) if credentials is not None else []


def measure_load(
    target: Target,
    load: Load,
    connections: int,
    *,
    upstream: Server,
    settings: RunSettings,
) -> Measurement:
    """A discarded warm-up, then a measured wrk run."""
    tokens = _tokens(target, settings.warmup_seconds + settings.seconds)

    def wrk(seconds: float) -> WrkResult:
        return run_wrk(
            url=target.server.url,
            load=load,
            tokens=tokens,
            connections=connections,
            seconds=seconds,
            threads=settings.wrk_threads,
            workdir=settings.workdir,
        )

    if settings.warmup_seconds > 0:
        wrk(settings.warmup_seconds)
        time.sleep(SETTLE_SECONDS)
    watch = _Watch(target.server, upstream)
    result = wrk(settings.seconds)
    server_cpu, upstream_cpu = watch.server_cpu(), watch.upstream_cpu()
    return Measurement(
        requests=result.requests,
        seconds=result.seconds,
        p50_ms=result.p50_ms,
        p99_ms=result.p99_ms,
        errors=result.errors,
        server_cpu_seconds=server_cpu,
        upstream_cpu_seconds=upstream_cpu,
        loadgen_cpu_seconds=result.loadgen_cpu_seconds,
        peak_rss_mb=peak_rss_mb(target.server.pid),
        log_problems=watch.log_problems(),
    )


def measure_open_streams(
    target: Target, body: str, count: int, *, upstream: Server, seconds: float
) -> Measurement:
    """`count` streams opened at once and read to their ends; no warm-up."""
    tokens = _tokens(target, seconds)
    watch = _Watch(target.server, upstream)
    result = open_streams(f"{target.server.url}/questions", body, tokens, count)
    server_cpu, upstream_cpu = watch.server_cpu(), watch.upstream_cpu()
    return Measurement(
        requests=result.completed,
        seconds=result.seconds,
        p50_ms=result.p50_ms,
        p99_ms=result.p99_ms,
        errors=result.errors,
        server_cpu_seconds=server_cpu,
        upstream_cpu_seconds=upstream_cpu,
        loadgen_cpu_seconds=None,
        peak_rss_mb=peak_rss_mb(target.server.pid),
        log_problems=watch.log_problems(),
        peak_open_streams=result.peak_open,
    )
