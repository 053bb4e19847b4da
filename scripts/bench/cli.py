"""The benchmark: askgate beside a bare aiohttp pass-through, under wrk.

Starts a fake OpenAI-compatible upstream that answers at once, a pass-through (the
floor: aiohttp in, aiohttp out, nothing else) and `askgate serve`, each its own
process on loopback; registers users; loads each server with wrk in turn
(pass-through, then askgate, scenario by scenario, `--rounds` times); and prints
one Markdown table of the medians, with the issue's targets marked met or not.

    make bench                              # everything, under 10 minutes
    make bench BENCH_ARGS="--quick --only plain,stream"
    .venv/bin/python scripts/bench.py --json bench.json

Scenario groups (`--only`, comma-separated; all by default): plain, stream (POST
/questions at 64 and 256 connections), me (GET /users/me), 404 (GET /nope), quota
(plain and streamed with the daily token quota on), streams1000 (1,000 streams open
at once against a slow upstream), workers (`--workers 2` on SQLite and PostgreSQL).
"""

import argparse
import datetime
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, NoReturn

from bench.loadgen import WrkError, wrk_path
from bench.measure import RunSettings
from bench.plan import GROUPS, Bench, Plan
from bench.postgres import bin_dir
from bench.processes import StartError
from bench.report import legend, table, write_json
from bench.rows import Row
from bench.servers import litellm_path
from bench.targets import evaluate_targets, targets_text

QUICK = {"duration": 3.0, "warmup": 1.0, "rounds": 1, "slow_chunks": 12}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--only",
        default=",".join(GROUPS),
        help=f"scenario groups to run, comma-separated (default: {','.join(GROUPS)})",
    )
    parser.add_argument(
        "--duration", type=float, default=8.0, help="measured seconds a run"
    )
    parser.add_argument(
        "--warmup", type=float, default=2.0, help="discarded seconds before each run"
    )
    parser.add_argument(
        "--rounds", type=int, default=2, help="repetitions; the table has medians"
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="a short run: 3 s runs, 1 s warm-up, 1 round, shorter slow streams",
    )
    parser.add_argument("--users", type=int, default=16)
    parser.add_argument(
        "--chunks", type=int, default=8, help="deltas in each streamed answer"
    )
    parser.add_argument("--open-streams", type=int, default=1000)
    parser.add_argument(
        "--slow-chunks",
        type=int,
        default=30,
        help="deltas of each of the open streams (long enough for all to be open)",
    )
    parser.add_argument("--slow-chunk-delay", type=float, default=0.5)
    parser.add_argument("--workers", type=int, default=2, help="for the workers rows")
    parser.add_argument("--wrk-threads", type=int, default=1)
    parser.add_argument(
        "--peers",
        action="store_true",
        help="add LiteLLM's proxy to the plain and streamed rows (make bench-peers)",
    )
    parser.add_argument("--json", type=Path, help="also write the raw figures here")
    parser.add_argument(
        "--keep", action="store_true", help="keep the servers' logs and data"
    )
    args = parser.parse_args(argv)
    if args.quick:
        parser.set_defaults(**QUICK)
        args = parser.parse_args(argv)
    only = {group.strip() for group in args.only.split(",") if group.strip()}
    if unknown := only - set(GROUPS):
        parser.error(f"unknown groups: {', '.join(sorted(unknown))}")
    args.only = frozenset(only)
    return args


def check_prerequisites(only: frozenset[str], *, peers: bool) -> None:
    if wrk_path() is None:
        sys.exit("bench: wrk is not installed: apt-get install wrk (make bench does)")
    if "workers" in only and bin_dir() is None:
        sys.exit("bench: PostgreSQL is not installed: run `make postgresql`")
    if peers and not litellm_path().exists():
        sys.exit("bench: LiteLLM is not installed: run `make bench-peers`")


def _describe_checkout() -> str:
    result = subprocess.run(
        ["git", "describe", "--always", "--dirty"],  # noqa: S607 - git on PATH
        capture_output=True,
        text=True,
        check=False,
        cwd=Path(__file__).parent,
    )
    return result.stdout.strip() or "unknown"


def _about(args: argparse.Namespace, seconds: float) -> dict[str, Any]:
    options = {
        key: sorted(value) if isinstance(value, frozenset) else value
        for key, value in vars(args).items()
        if key not in {"json", "keep", "quick"}
    }
    return {
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "checkout": _describe_checkout(),
        "cpus": os.cpu_count(),
        "options": options,
        "total_seconds": round(seconds, 1),
    }


def _open_streams_note(rows: list[Row]) -> str:
    notes = [
        f"{row.target}: {run.peak_open_streams:,} of {row.connections:,} streams "
        "open at once at the peak"
        for row in rows
        if row.kind == "open streams"
        for run in row.runs
        if run.peak_open_streams is not None
    ]
    return "; ".join(notes)


def _log_note(rows: list[Row]) -> str:
    """Rows whose server logged warnings or errors while measured: wrk sees a
    stream that ends in an error event as a success."""
    return "; ".join(
        f"{row.scenario} × {row.connections} ({row.target}): {row.log_problems}"
        for row in rows
        if row.log_problems
    )


def _stop_on_sigterm(signum: int, frame: object) -> NoReturn:
    sys.exit(128 + signum)  # SystemExit unwinds: every server is stopped


def _plan(args: argparse.Namespace, workdir: Path) -> Plan:
    settings = RunSettings(
        seconds=args.duration,
        warmup_seconds=args.warmup,
        wrk_threads=args.wrk_threads,
        workdir=workdir,
    )
    return Plan(
        only=args.only,
        rounds=args.rounds,
        settings=settings,
        users=args.users,
        chunks=args.chunks,
        open_streams=args.open_streams,
        slow_chunks=args.slow_chunks,
        slow_chunk_delay=args.slow_chunk_delay,
        workers=args.workers,
        peers=args.peers,
    )


def _print_results(
    args: argparse.Namespace,
    rows: list[Row],
    targets: list[dict[str, Any]],
    *,
    seconds: float,
    load: tuple[float, float],
) -> None:
    print(table(rows))
    print()
    print(
        legend(
            rounds=args.rounds,
            seconds=args.duration,
            warmup=args.warmup,
            slow_delay=args.slow_chunk_delay,
        )
    )
    print()
    print(targets_text(targets))
    if note := _open_streams_note(rows):
        print(f"\nOpen streams: {note}.")
    if note := _log_note(rows):
        print(f"\nWARNING/ERROR lines logged during the runs: {note}.")
    # Anything else running on the machine takes cores from the servers.
    print(
        f"\nTook {seconds / 60:.1f} minutes; load average (1 min) "
        f"{load[0]:.1f} at the start, {load[1]:.1f} at the end, on {os.cpu_count()} "
        "cores."
    )


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    check_prerequisites(args.only, peers=args.peers)
    signal.signal(signal.SIGTERM, _stop_on_sigterm)
    workdir = Path(tempfile.mkdtemp(prefix="askgate-bench-"))
    keep = args.keep
    started, load_before = time.monotonic(), os.getloadavg()[0]
    try:
        rows = Bench(_plan(args, workdir)).run()
    except KeyboardInterrupt:
        print("bench: interrupted; every server it started is stopped", file=sys.stderr)
        return 130
    except (StartError, WrkError, RuntimeError, OSError) as exc:
        keep = True  # the servers' logs say what went wrong
        print(f"bench: {exc}", file=sys.stderr)
        return 1
    except BaseException:
        keep = True
        raise
    finally:
        if keep:
            print(f"bench: logs and data kept in {workdir}", file=sys.stderr)
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    seconds, load = time.monotonic() - started, (load_before, os.getloadavg()[0])
    targets = evaluate_targets(rows)
    _print_results(args, rows, targets, seconds=seconds, load=load)
    if args.json is not None:
        about = _about(args, seconds) | {"load_average": load}
        write_json(args.json, rows=rows, targets=targets, about=about)
    return 0
