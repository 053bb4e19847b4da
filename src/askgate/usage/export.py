"""The usage routes' two formats: JSON (a list of rows) or CSV.

CSV is opened in spreadsheets, which run a cell that starts with `=`, `+`,
`-` or `@` (or a tab or carriage return, which some strip first) as a formula:
a username such as `=HYPERLINK(...)` would run on the admin's machine. Such a
text cell is written with a leading `'`, which spreadsheets show as text
(OWASP's advice on CSV injection). Numbers and dates are written as they are.
"""

import csv
import io
from collections.abc import Iterable, Sequence
from datetime import date
from enum import StrEnum
from functools import cache
from typing import Any

from fastapi import Response
from pydantic import TypeAdapter

from askgate.schemas import Schema

CSV_MEDIA_TYPE = "text/csv"
_FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


class Format(StrEnum):
    JSON = "json"
    CSV = "csv"


def safe_cell(value: Any) -> Any:
    """A cell that no spreadsheet takes for a formula."""
    if isinstance(value, str) and value.startswith(_FORMULA_STARTS):
        return "'" + value
    if isinstance(value, date):
        return value.isoformat()
    return value


@cache
def _list_of(schema: type[Schema]) -> TypeAdapter[list[Any]]:
    return TypeAdapter(list[schema])  # type: ignore[valid-type]


def render(
    rows: Iterable[Any], *, schema: type[Schema], as_: Format, filename: str
) -> Response:
    """The rows (objects with the schema's fields) in the format asked for;
    CSV with a header row of the field names, in the schema's order."""
    items = [schema.model_validate(row) for row in rows]
    if as_ is Format.JSON:
        return Response(
            _list_of(schema).dump_json(items), media_type="application/json"
        )
    return Response(
        to_csv(list(schema.model_fields), (item.model_dump() for item in items)),
        media_type=CSV_MEDIA_TYPE,
        headers={"Content-Disposition": f'attachment; filename="{filename}"'},
    )


def to_csv(fields: Sequence[str], rows: Iterable[dict[str, Any]]) -> str:
    out = io.StringIO()
    writer = csv.writer(out)  # RFC 4180: quoted as needed, CRLF line ends
    writer.writerow(fields)
    writer.writerows([safe_cell(row[name]) for name in fields] for row in rows)
    return out.getvalue()
