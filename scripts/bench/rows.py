"""A row of the table: one scenario against one target, its runs and medians."""

import statistics
from collections.abc import Callable
from dataclasses import dataclass, field

from bench.measure import Measurement

ASKGATE, PASSTHROUGH, LITELLM = "askgate", "pass-through", "LiteLLM"
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
    target: str  # ASKGATE, PASSTHROUGH or a peer (LITELLM)
    reference: "Row | None" = None  # the pass-through row this one is beside
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

    @property
    def log_problems(self) -> int:
        return sum(run.log_problems for run in self.runs)

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
