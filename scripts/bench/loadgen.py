"""Load from `wrk`: one run against one server, its figures parsed from wrk.lua.

wrk reads a chunked (SSE) response to its end, so a stream counts as one request,
its latency measured to the last byte.
"""

import json
import resource
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
MARKER = "WRK_RESULT "
# A slow server must show as high latency, not as timeouts (wrk's default is 2 s).
REQUEST_TIMEOUT_SECONDS = 30


@dataclass(frozen=True)
class Load:
    """What each request of a run is."""

    method: str
    path: str
    body: str = ""
    expected_status: int | None = None  # None: any 2xx
    authenticated: bool = True


@dataclass(frozen=True)
class WrkResult:
    requests: int
    seconds: float
    p50_ms: float
    p99_ms: float
    errors: dict[str, int]  # socket errors by kind, and unexpected statuses
    loadgen_cpu_seconds: float


class WrkError(Exception):
    pass


def wrk_path() -> str | None:
    return shutil.which("wrk")


def write_script(workdir: Path, load: Load) -> Path:
    """wrk.lua, plus the status check when a run expects something else than 2xx."""
    parts = [(HERE / "wrk.lua").read_text()]
    if load.expected_status is not None:
        parts.append((HERE / "expect_status.lua").read_text())
    script = workdir / ("wrk-expect.lua" if len(parts) > 1 else "wrk.lua")
    script.write_text("\n".join(parts))
    return script


def _children_cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _errors(
    figures: dict[str, int | None], load: Load, connections: int
) -> dict[str, int]:
    kinds = ("connect", "read", "write", "timeout")
    errors = {kind: figures[kind] or 0 for kind in kinds}
    # wrk drops the requests still in flight when a run ends, uncounted: a server
    # that answers nothing would show no errors at all.
    if not figures["requests"]:
        errors["no answer"] = connections
    if load.expected_status is None:
        errors["non-2xx"] = figures["status"] or 0
    else:
        errors[f"non-{load.expected_status}"] = figures["unexpected_status"] or 0
    return errors


def run_wrk(
    *,
    url: str,
    load: Load,
    tokens: list[str],
    connections: int,
    seconds: float,
    threads: int,
    workdir: Path,
) -> WrkResult:
    expected = str(load.expected_status or "2xx")
    argv = [
        wrk_path() or "wrk",
        f"--threads={min(threads, connections)}",
        f"--connections={connections}",
        f"--duration={max(1, round(seconds))}s",
        f"--timeout={REQUEST_TIMEOUT_SECONDS}s",
        f"--script={write_script(workdir, load)}",
        url,
        "--",
        load.method,
        load.path,
        load.body,
        expected,
        *(tokens if load.authenticated else []),
    ]
    before = _children_cpu_seconds()
    # Only wrk is reaped meanwhile, so the children's CPU time grows by its own.
    result = subprocess.run(  # noqa: S603 - our own argv
        argv,
        capture_output=True,
        text=True,
        timeout=seconds + 120,
        check=False,
    )
    loadgen_cpu = _children_cpu_seconds() - before
    lines = [line for line in result.stdout.splitlines() if line.startswith(MARKER)]
    if result.returncode != 0 or not lines:
        raise WrkError(f"wrk failed ({result.returncode}): {result.stderr.strip()}")
    figures = json.loads(lines[-1].removeprefix(MARKER))
    return WrkResult(
        requests=figures["requests"],
        seconds=figures["duration_us"] / 1e6,
        p50_ms=figures["p50_us"] / 1000,
        p99_ms=figures["p99_us"] / 1000,
        errors=_errors(figures, load, connections),
        loadgen_cpu_seconds=loadgen_cpu,
    )
