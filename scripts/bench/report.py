"""The benchmark's rows: medians over rounds, one Markdown table, the issue's
targets marked met or not, and the raw figures as JSON."""

import json
import statistics
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from bench.measure import Measurement

ASKGATE, PASSTHROUGH = "askgate", "pass-through"
KIND_NAMES = {
    "plain": "plain",
    "streamed": "streamed",
    "me": "GET /users/me",
    "404": "GET /nope (404)",
    "open streams": "open streams",
}


@dataclass
class Row:
    kind: str  # a KIND_NAMES key
    variant: str  # "" for the default settings, else e.g. "quota on"
    connections: int
    target: str  # ASKGATE or PASSTHROUGH
    reference: "Row | None" = None  # the pass-through row an askgate row is beside
    runs: list[Measurement] = field(default_factory=list)

    @property
    def scenario(self) -> str:
        name = KIND_NAMES[self.kind]
        return f"{name}, {self.variant}" if self.variant else name

    def _median(self, figure: Callable[[Measurement], float | None]) -> float | None:
        values = [value for run in self.runs if (value := figure(run)) is not None]
        return statistics.median(values) if values else None

    @property
    def requests_per_second(self) -> float | None:
        return self._median(lambda run: run.requests_per_second)

    @property
    def p50_ms(self) -> float | None:
        return self._median(lambda run: run.p50_ms)

    @property
    def p99_ms(self) -> float | None:
        return self._median(lambda run: run.p99_ms)

    @property
    def cpu_ms_per_request(self) -> float | None:
        return self._median(lambda run: run.cpu_ms_per_request)

    @property
    def peak_rss_mb(self) -> float | None:
        return max((run.peak_rss_mb for run in self.runs), default=None)

    @property
    def errors(self) -> int:
        """Summed over the rounds, not a median: one bad round must show."""
        return sum(run.error_count for run in self.runs)

    def _ratio(self, figure: Callable[["Row"], float | None]) -> float | None:
        if self.reference is None:
            return None
        mine, theirs = figure(self), figure(self.reference)
        return mine / theirs if mine is not None and theirs else None

    @property
    def throughput_ratio(self) -> float | None:
        return self._ratio(lambda row: row.requests_per_second)

    @property
    def p99_ratio(self) -> float | None:
        return self._ratio(lambda row: row.p99_ms)


# --- the table ------------------------------------------------------------------

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


# --- the targets --------------------------------------------------------


@dataclass(frozen=True)
class Check:
    """One of the issue's targets, checked on every row it applies to."""

    name: str
    applies: Callable[[Row], bool]
    figure: Callable[[Row], float | None]
    limit: float
    at_least: bool  # True: figure >= limit; False: figure <= limit
    unit: str = ""
    digits: int = 2

    def evaluate(self, rows: list[Row]) -> dict[str, Any]:
        found = [(row, self.figure(row)) for row in rows if self.applies(row)]
        measured = [(row, value) for row, value in found if value is not None]
        if not measured:
            return {"target": self.name, "met": None, "detail": "not measured"}

        def ok(value: float) -> bool:
            return value >= self.limit if self.at_least else value <= self.limit

        worst_row, worst = (min if self.at_least else max)(
            measured, key=lambda pair: pair[1]
        )
        where = f"{worst_row.scenario}, {worst_row.connections} connections"
        return {
            "target": self.name,
            "met": all(ok(value) for _, value in measured),
            "worst": worst,
            "detail": f"worst {worst:,.{self.digits}f}{self.unit} ({where})",
        }


def _askgate(*kinds: str, one_worker: bool = False) -> Callable[[Row], bool]:
    def applies(row: Row) -> bool:
        return (
            row.target == ASKGATE
            and row.kind in kinds
            and not (one_worker and "workers" in row.variant)
        )

    return applies


CHECKS = [
    Check(
        "plain req/s ≥ 0.5× pass-through (1 worker)",
        _askgate("plain", one_worker=True),
        lambda row: row.throughput_ratio,
        0.5,
        at_least=True,
    ),
    Check(
        "streamed req/s ≥ 0.7× pass-through (1 worker)",
        _askgate("streamed", one_worker=True),
        lambda row: row.throughput_ratio,
        0.7,
        at_least=True,
    ),
    Check(
        "0 errors",
        _askgate(*KIND_NAMES),
        lambda row: row.errors,
        0,
        at_least=False,
        digits=0,
    ),
    Check(
        "CPU per POST /questions ≤ 1.0 ms",
        _askgate("plain", "streamed"),
        lambda row: row.cpu_ms_per_request,
        1.0,
        at_least=False,
        unit=" ms",
    ),
    Check(
        "CPU per GET /users/me ≤ 0.3 ms",
        _askgate("me"),
        lambda row: row.cpu_ms_per_request,
        0.3,
        at_least=False,
        unit=" ms",
    ),
    Check(
        "CPU per 404 ≤ 0.2 ms",
        _askgate("404"),
        lambda row: row.cpu_ms_per_request,
        0.2,
        at_least=False,
        unit=" ms",
    ),
    Check(
        "p99 ≤ 2× pass-through at 64 connections (1 worker)",
        lambda row: (
            _askgate("plain", "streamed", one_worker=True)(row)
            and row.connections == 64
        ),
        lambda row: row.p99_ratio,
        2.0,
        at_least=False,
        unit="×",
    ),
    Check(
        "1,000 open streams: peak RSS ≤ 150 MB",
        _askgate("open streams"),
        lambda row: row.peak_rss_mb,
        150,
        at_least=False,
        unit=" MB",
        digits=0,
    ),
]


def evaluate_targets(rows: list[Row]) -> list[dict[str, Any]]:
    return [check.evaluate(rows) for check in CHECKS]


def targets_text(results: list[dict[str, Any]]) -> str:
    marks = {True: "met", False: "NOT MET", None: "not measured"}
    return "\n".join(
        f"- {result['target']}: **{marks[result['met']]}**"
        + (f" — {result['detail']}" if result["met"] is not None else "")
        for result in results
    )


# --- raw figures ------------------------------------------------------------------


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
