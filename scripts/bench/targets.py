"""The issue's targets, each checked on every row it applies to."""

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from bench.rows import ASKGATE, KIND_NAMES, Row


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
