"""The usage routes in CSV (`?format=csv`): the same rows as in JSON, a header
row first, and no cell that a spreadsheet would run as a formula."""

import csv
import io
from typing import Any

import httpx
import pytest

from askgate.db import Database
from tests.factories import Account, auth_headers, create_user

ROUTES = ("/users/me/usage/daily", "/usage/daily", "/usage/leaderboard")


def parse(response: httpx.Response) -> list[list[str]]:
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "text/csv; charset=utf-8"
    assert response.headers["content-disposition"].startswith("attachment; filename=")
    return list(csv.reader(io.StringIO(response.text)))


def as_text(row: dict[str, Any]) -> list[str]:
    return [str(value) for value in row.values()]


async def _ask(client: httpx.AsyncClient, headers: dict[str, str], words: int) -> None:
    response = await client.post(
        "/questions", json={"content": " ".join(["w"] * words)}, headers=headers
    )
    assert response.status_code == 201, response.text


@pytest.mark.parametrize("path", ROUTES)
async def test_csv_holds_the_json_rows_after_a_header(
    client: httpx.AsyncClient,
    db: Database,
    admin: Account,
    admin_headers: dict[str, str],
    path: str,
) -> None:
    other = await create_user(db)
    await _ask(client, admin_headers, words=2)
    await _ask(client, await auth_headers(client, other), words=5)
    # With rows, and (daily) a window without any.
    other_query = (
        "from=2000-01-01&to=2000-12-31" if path.endswith("daily") else "by=questions"
    )
    for query in ("", other_query):
        as_json = await client.get(f"{path}?{query}", headers=admin_headers)
        as_csv = await client.get(f"{path}?{query}&format=csv", headers=admin_headers)

        rows = as_json.json()
        header, *lines = parse(as_csv)
        assert lines == [as_text(row) for row in rows]
        assert as_csv.headers.get("x-total-count") == as_json.headers.get(
            "x-total-count"
        )
        if query == "":
            assert rows, "nothing to compare"
            assert header == list(rows[0])


async def test_the_header_comes_first_even_without_rows(
    client: httpx.AsyncClient, admin_headers: dict[str, str]
) -> None:
    headers = [
        parse(await client.get(f"{path}?format=csv", headers=admin_headers))
        for path in ROUTES
    ]

    assert headers == [
        [
            [
                "day",
                "model",
                "questions",
                "failed",
                "prompt_tokens",
                "completion_tokens",
                "total_tokens",
            ]
        ],
        [
            [
                "day",
                "user_id",
                "username",
                "model",
                "questions",
                "failed",
                "prompt_tokens",
                "completion_tokens",
                "total_tokens",
            ]
        ],
        [
            [
                "user_id",
                "username",
                "questions",
                "failed",
                "prompt_tokens",
                "completion_tokens",
                "total_tokens",
            ]
        ],
    ]
