"""What a run prints and writes: one Markdown table of the medians, and the raw
figures as JSON."""

import json
from collections.abc import Iterable
from dataclasses import asdict
from pathlib import Path
from typing import Any

from bench.rows import Row

HEADER = [
    "scenario",
    "connections",
    "target",
    "req/s",
    "p50 ms",
    "p99 ms",
    "CPU ms/req",
    "peak RSS MB",
    "errors",
    "req/s ratio",
    "p99 ratio",
]


def _number(value: float | None, digits: int) -> str:
    return "–" if value is None else f"{value:,.{digits}f}"


def _cells(row: Row) -> list[str]:
    return [
        row.scenario,
        f"{row.connections:,}",
        row.target,
        _number(row.requests_per_second, 0),
        _number(row.p50_ms, 1),
        _number(row.p99_ms, 1),
        _number(row.cpu_ms_per_request, 2),
        _number(row.peak_rss_mb, 0),
        str(row.errors),
        _number(row.throughput_ratio, 2),
        _number(row.p99_ratio, 2),
    ]


def table(rows: Iterable[Row]) -> str:
    lines = [HEADER, *(_cells(row) for row in rows)]
    widths = [max(len(line[i]) for line in lines) for i in range(len(HEADER))]
    left = {0, 2}  # text columns; numbers align right

    def render(line: list[str]) -> str:
        cells = [
            cell.ljust(width) if i in left else cell.rjust(width)
            for i, (cell, width) in enumerate(zip(line, widths, strict=True))
        ]
        return "| " + " | ".join(cells) + " |"

    rule = [
        "-" * width if i in left else "-" * (width - 1) + ":"
        for i, width in enumerate(widths)
    ]
    return "\n".join([render(lines[0]), render(rule), *map(render, lines[1:])])


def legend(*, rounds: int, seconds: float, warmup: float, slow_delay: float) -> str:
    """What the columns mean, to print (and paste) under the table."""
    return (
        f"Medians of {rounds} round{'s' * (rounds > 1)} of {seconds:g} s, each "
        f"after {warmup:g} s of discarded warm-up. Latency is wrk's, to the last "
        "byte of the response (of the stream). CPU ms/req: user+system CPU of the "
        "server's process tree (all its workers) over the completed requests. "
        "Peak RSS: VmHWM of the server's largest process (with workers, the "
        "largest worker). Errors: socket errors plus unexpected statuses, summed "
        "over the rounds. Ratios: a row over the pass-through row above it. "
        "Open streams: all opened at once, read to their ends, the upstream "
        f"sending a chunk every {slow_delay:g} s; one round."
    )


def _row_json(row: Row) -> dict[str, Any]:
    return {
        "scenario": row.scenario,
        "kind": row.kind,
        "variant": row.variant,
        "connections": row.connections,
        "target": row.target,
        "requests_per_second": row.requests_per_second,
        "p50_ms": row.p50_ms,
        "p99_ms": row.p99_ms,
        "cpu_ms_per_request": row.cpu_ms_per_request,
        "peak_rss_mb": row.peak_rss_mb,
        "errors": row.errors,
        "throughput_ratio": row.throughput_ratio,
        "p99_ratio": row.p99_ratio,
        "runs": [
            asdict(run)
            | {
                "requests_per_second": run.requests_per_second,
                "cpu_ms_per_request": run.cpu_ms_per_request,
            }
            for run in row.runs
        ],
    }


def write_json(
    path: Path,
    *,
    rows: list[Row],
    targets: list[dict[str, Any]],
    about: dict[str, Any],
) -> None:
    document = {**about, "rows": [_row_json(row) for row in rows], "targets": targets}
    path.write_text(json.dumps(document, indent=2) + "\n")
