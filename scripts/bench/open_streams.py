"""Many streamed questions held open at once (the open-streams test).

wrk keeps at most one request per connection in flight and cannot say how many
streams were open together, so this client opens every stream at once with
aiohttp, reads each to its end, and counts the peak of streams open together.
"""

import asyncio
import statistics
import time
from dataclasses import dataclass

import aiohttp

from bench.processes import raise_open_files_limit

READ_TIMEOUT_SECONDS = 120
# The last event of a complete stream: askgate's `done` event, or the upstream's
# `[DONE]` that the pass-through relays.
END_MARKERS = (b'"done"', b"[DONE]")


@dataclass(frozen=True)
class StreamsResult:
    opened: int
    completed: int
    errors: dict[str, int]
    peak_open: int
    seconds: float
    p50_ms: float
    p99_ms: float


@dataclass
class _Tally:
    open_now: int = 0
    peak_open: int = 0
    bad_status: int = 0
    incomplete: int = 0
    failed: int = 0


def _percentile(values: list[float], fraction: float) -> float:
    if not values:
        return 0.0
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(values, n=100, method="inclusive")[
        round(fraction * 100) - 1
    ]


async def _one_stream(
    session: aiohttp.ClientSession,
    url: str,
    body: str,
    headers: dict[str, str],
    tally: _Tally,
) -> float | None:
    """Seconds to the end of a complete stream, None when it failed."""
    started = time.perf_counter()
    try:
        async with session.post(url, data=body, headers=headers) as response:
            if response.status != 200:
                tally.bad_status += 1
                return None
            tally.open_now += 1
            tally.peak_open = max(tally.peak_open, tally.open_now)
            tail = b""
            try:
                async for data in response.content.iter_any():
                    tail = (tail + data)[-4096:]
            finally:
                tally.open_now -= 1
    except (aiohttp.ClientError, TimeoutError):
        tally.failed += 1
        return None
    if not any(marker in tail for marker in END_MARKERS):
        tally.incomplete += 1
        return None
    return time.perf_counter() - started


async def _open_streams(
    url: str, body: str, tokens: list[str], count: int
) -> StreamsResult:
    tally = _Tally()
    base_headers = {"Content-Type": "application/json"}
    header_sets = [
        base_headers | {"Authorization": f"Bearer {token}"} for token in tokens
    ] or [base_headers]
    connector = aiohttp.TCPConnector(limit=0)
    timeout = aiohttp.ClientTimeout(total=None, sock_read=READ_TIMEOUT_SECONDS)
    started = time.perf_counter()
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        results = await asyncio.gather(
            *(
                _one_stream(
                    session, url, body, header_sets[i % len(header_sets)], tally
                )
                for i in range(count)
            )
        )
    seconds = time.perf_counter() - started
    latencies = sorted(result * 1000 for result in results if result is not None)
    return StreamsResult(
        opened=count,
        completed=len(latencies),
        errors={
            "non-200": tally.bad_status,
            "cut short": tally.incomplete,
            "socket": tally.failed,
        },
        peak_open=tally.peak_open,
        seconds=seconds,
        p50_ms=_percentile(latencies, 0.5),
        p99_ms=_percentile(latencies, 0.99),
    )


def open_streams(url: str, body: str, tokens: list[str], count: int) -> StreamsResult:
    raise_open_files_limit()  # one socket per stream in this process
    return asyncio.run(_open_streams(url, body, tokens, count))
