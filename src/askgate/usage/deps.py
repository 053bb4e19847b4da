"""The usage routes' shared query parameters: the window of days and the format."""

from datetime import date, timedelta
from typing import Annotated

from fastapi import Depends, Query

from askgate.db import utcnow
from askgate.errors import InvalidInput
from askgate.usage.export import Format
from askgate.usage.service import Window

DEFAULT_DAYS = 30
# A year, leap day included: what one request may read (the answer's size and
# its cost stay bounded).
MAX_DAYS = 366


def days_before(day: date, days: int) -> date:
    """The first of `days` UTC days ending with `day` (never before year 1)."""
    return date.fromordinal(max(day.toordinal() - (days - 1), 1))


async def get_window(
    first: Annotated[
        date | None,
        Query(
            alias="from",
            description=f"First UTC day (default: {DEFAULT_DAYS - 1} days before "
            "`to`, for 30 days)",
            examples=["2026-11-01"],
        ),
    ] = None,
    last: Annotated[
        date | None,
        Query(
            alias="to",
            description="Last UTC day, included (default: today)",
            examples=["2026-11-30"],
        ),
    ] = None,
) -> Window:
    """`from` to `to`, both included; 400 unless from <= to and the window
    holds at most MAX_DAYS days."""
    last = last or utcnow().date()
    first = first or days_before(last, DEFAULT_DAYS)
    if first > last:
        raise InvalidInput(f"`from` ({first}) is after `to` ({last})")
    days = (last - first).days + 1
    if days > MAX_DAYS:
        raise InvalidInput(
            f"From {first} to {last} is {days} days; ask for at most {MAX_DAYS} "
            "at a time"
        )
    return Window(first, last)


UsageWindow = Annotated[Window, Depends(get_window)]


def last_days(days: int) -> Window:
    """The last `days` UTC days, today included."""
    today = utcnow().date()
    return Window(today - timedelta(days=days - 1), today)


OutputFormat = Annotated[
    Format,
    Query(
        alias="format",
        description="`json` (a list of rows) or `csv` (`text/csv`, a header row "
        "first; a text cell that a spreadsheet would run as a formula starts "
        "with `'`)",
    ),
]
