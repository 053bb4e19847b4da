"""The scenario groups: which servers each starts, which rows it measures, in what
order. Rows of a group are interleaved (pass-through, then each other target, for
each scenario in turn) and the whole sequence repeated `rounds` times, so drift on a
shared machine falls on both sides of a ratio alike."""

import json
import sys
import time
from dataclasses import dataclass

from bench.loadgen import Load
from bench.measure import (
    Measurement,
    RunSettings,
    Target,
    measure_load,
    measure_open_streams,
)
from bench.postgres import throwaway_database
from bench.processes import Processes, Server
from bench.rows import ASKGATE, LITELLM, PASSTHROUGH, Row
from bench.servers import (
    AskgateOptions,
    start_askgate,
    start_litellm,
    start_passthrough,
    start_upstream,
)
from bench.users import FixedToken, Users

GROUPS = ("plain", "stream", "me", "404", "quota", "streams1000", "workers")
FLAG_KINDS = {"plain": "plain", "stream": "streamed"}  # --only flag: row kind
CONNECTIONS = (64, 256)
SMALL = 64  # connections for the askgate-only and the workers rows
QUESTION = "What is the capital of France?"
PLAIN_BODY = json.dumps({"content": QUESTION, "max_tokens": 16})
STREAMED_BODY = json.dumps({"content": QUESTION, "max_tokens": 16, "stream": True})
LOADS = {
    "plain": Load("POST", "/questions", PLAIN_BODY),
    "streamed": Load("POST", "/questions", STREAMED_BODY),
    "me": Load("GET", "/users/me"),
    "404": Load("GET", "/nope", expected_status=404, authenticated=False),
}
# The same questions in the OpenAI API that peers such as LiteLLM serve.
OPENAI_LOADS = {
    kind: Load(
        "POST",
        "/v1/chat/completions",
        json.dumps(
            {
                "model": "bench-model",
                "messages": [{"role": "user", "content": QUESTION}],
                "max_tokens": 16,
                "stream": kind == "streamed",
            }
        ),
    )
    for kind in ("plain", "streamed")
}
QUOTA = 1_000_000_000_000  # on, so it is checked and reserved, but never reached


@dataclass(frozen=True)
class Plan:
    only: frozenset[str]
    rounds: int
    settings: RunSettings
    users: int
    chunks: int
    open_streams: int
    slow_chunks: int
    slow_chunk_delay: float
    workers: int
    peers: bool


class Bench:
    """Runs the plan's groups, printing progress to stderr as rows fill in. Each
    group stops the servers it started before the next one starts."""

    def __init__(self, plan: Plan) -> None:
        self.plan = plan
        self.workdir = plan.settings.workdir
        self._started = time.monotonic()

    def run(self) -> list[Row]:
        only, rows = self.plan.only, []
        with Processes() as processes:
            if only & {"plain", "stream", "me", "404", "quota", "workers"}:
                upstream = self._upstream(processes, chunks=self.plan.chunks)
                if only & {"plain", "stream", "me", "404", "quota"}:
                    rows += self._default_group(upstream)
                if "workers" in only:
                    rows += self._workers_group(upstream)
        if "streams1000" in only:
            rows += self._open_streams_group()
        return rows

    # --- servers ------------------------------------------------------------------

    def _upstream(
        self, processes: Processes, *, chunks: int, chunk_delay: float = 0.0
    ) -> Server:
        return start_upstream(
            processes, self.workdir, chunks=chunks, chunk_delay=chunk_delay
        )

    def _passthrough(
        self, processes: Processes, upstream: Server, workers: int = 1
    ) -> Target:
        server = start_passthrough(
            processes, self.workdir, upstream=upstream, workers=workers
        )
        return Target(PASSTHROUGH, server, credentials=None)

    def _askgate(
        self,
        processes: Processes,
        upstream: Server,
        options: AskgateOptions = AskgateOptions(),
    ) -> Target:
        started = time.monotonic()
        server = start_askgate(
            processes, self.workdir, upstream=upstream, options=options
        )
        users = Users.register(server.url, self.plan.users)
        self._say(
            f"askgate ({options.describe()}) answering, {self.plan.users} users "
            f"registered, in {time.monotonic() - started:.1f} s"
        )
        return Target(ASKGATE, server, users)

    def _litellm(self, processes: Processes, upstream: Server) -> Target:
        started = time.monotonic()
        server, key = start_litellm(processes, self.workdir, upstream=upstream)
        self._say(f"LiteLLM answering in {time.monotonic() - started:.1f} s")
        return Target(LITELLM, server, FixedToken(key), openai_api=True)

    # --- groups -------------------------------------------------------------------

    def _default_group(self, upstream: Server) -> list[Row]:
        """Plain and streamed questions beside the pass-through (askgate with its
        default settings, and with the daily quota on), then GET /users/me and a
        404 on askgate alone."""
        only = self.plan.only
        kinds = [kind for flag, kind in FLAG_KINDS.items() if flag in only]
        if not kinds and "quota" in only:
            kinds = list(FLAG_KINDS.values())
        solo: list[str] = [kind for kind in ("me", "404") if kind in only]
        rows = []
        with Processes() as processes:
            askgate = None
            if only & {*FLAG_KINDS, "me", "404"}:
                askgate = self._askgate(processes, upstream)
            if kinds:
                variants = [("", self._passthrough(processes, upstream))]
                if self.plan.peers:
                    variants.append(("", self._litellm(processes, upstream)))
                if askgate is not None and only & FLAG_KINDS.keys():
                    variants.append(("", askgate))
                if "quota" in only:
                    options = AskgateOptions(daily_token_quota=QUOTA)
                    quota = self._askgate(processes, upstream, options)
                    variants.append(("quota on", quota))
                rows += self._compare(upstream, kinds, CONNECTIONS, variants)
            if askgate is not None and solo:
                rows += self._compare(upstream, solo, (SMALL,), [("", askgate)])
        return rows

    def _workers_group(self, upstream: Server) -> list[Row]:
        """`--workers N` askgate on SQLite and on PostgreSQL, beside an N-process
        pass-through."""
        workers = self.plan.workers
        label = f"{workers} workers"
        started = time.monotonic()
        with throwaway_database() as url, Processes() as processes:
            self._say(f"PostgreSQL started in {time.monotonic() - started:.1f} s")
            variants = [
                (label, self._passthrough(processes, upstream, workers)),
                (
                    f"{label}, SQLite",
                    self._askgate(processes, upstream, AskgateOptions(workers)),
                ),
                (
                    f"{label}, PostgreSQL",
                    self._askgate(
                        processes,
                        upstream,
                        AskgateOptions(workers, database_url=url),
                    ),
                ),
            ]
            return self._compare(
                upstream, list(FLAG_KINDS.values()), (SMALL,), variants
            )

    def _open_streams_group(self) -> list[Row]:
        """Many streams open at once against an upstream that sends a chunk every
        `slow_chunk_delay` seconds: what holding them costs."""
        count, rows = self.plan.open_streams, []
        delay, chunks = self.plan.slow_chunk_delay, self.plan.slow_chunks
        # Every event late, plus time to open them all: the tokens must outlive it.
        seconds = (chunks + 3) * delay + 120
        with Processes() as processes:
            upstream = self._upstream(processes, chunks=chunks, chunk_delay=delay)
            targets = [
                self._passthrough(processes, upstream),
                self._askgate(processes, upstream),
            ]
            for target in targets:
                row = Row("open streams", "", count, target.name)
                run = measure_open_streams(
                    target, STREAMED_BODY, count, upstream=upstream, seconds=seconds
                )
                row.runs.append(run)
                self._progress(row, run)
                rows.append(row)
        rows[1].reference = rows[0]
        return rows

    # --- interleaved rounds ---------------------------------------------------------

    def _compare(
        self,
        upstream: Server,
        kinds: list[str],
        connections: tuple[int, ...],
        variants: list[tuple[str, Target]],
    ) -> list[Row]:
        """Rows for each kind × connections × target; the first target is the
        reference of the others when it is the pass-through."""
        cases: list[tuple[str, int, list[tuple[Row, Target]]]] = []
        for kind in kinds:
            for count in connections:
                pairs = [
                    (Row(kind, variant, count, target.name), target)
                    for variant, target in variants
                ]
                reference = pairs[0][0] if pairs[0][0].target == PASSTHROUGH else None
                for row, _ in pairs[1:]:
                    row.reference = reference
                cases.append((kind, count, pairs))
        for _ in range(self.plan.rounds):
            for kind, count, pairs in cases:
                for row, target in pairs:
                    run = measure_load(
                        target,
                        (OPENAI_LOADS if target.openai_api else LOADS)[kind],
                        count,
                        upstream=upstream,
                        settings=self.plan.settings,
                    )
                    row.runs.append(run)
                    self._progress(row, run)
        return [row for _, _, pairs in cases for row, _ in pairs]

    def _progress(self, row: Row, run: Measurement) -> None:
        cpu = run.cpu_ms_per_request
        # Cores busy: a server near 1.0 (per process) is the bottleneck, not wrk.
        busy = f"server {run.server_cpu_seconds / run.seconds:.2f}"
        busy += f", upstream {run.upstream_cpu_seconds / run.seconds:.2f}"
        if run.loadgen_cpu_seconds is not None:
            busy += f", wrk {run.loadgen_cpu_seconds / run.seconds:.2f}"
        self._say(
            f"{row.scenario} × {row.connections} → {row.target}: "
            f"{run.requests_per_second:,.0f} req/s, p99 {run.p99_ms:,.1f} ms, "
            f"CPU {'–' if cpu is None else f'{cpu:.2f}'} ms/req, "
            f"{run.error_count} errors; cores busy: {busy}"
            + (
                f"; {run.log_problems} WARNING/ERROR log lines"
                if run.log_problems
                else ""
            )
        )

    def _say(self, message: str) -> None:
        elapsed = time.monotonic() - self._started
        print(f"[{elapsed:5.0f} s] {message}", file=sys.stderr, flush=True)
