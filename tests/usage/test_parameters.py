"""The usage routes' parameters: a window of days out of bounds is a 400 that
says why, a malformed parameter a 422 that names it (the database plays no
part: SQLite only)."""

from typing import Any

import httpx
import pytest

from askgate.usage.deps import MAX_DAYS


async def get(
    client: httpx.AsyncClient, path: str, headers: dict[str, str]
) -> list[dict[str, Any]]:
    response = await client.get(path, headers=headers)
    assert response.status_code == 200, response.text
    body: list[dict[str, Any]] = response.json()
    return body


@pytest.mark.parametrize(
    ("query", "detail"),
    [
        (
            "from=2026-03-02&to=2026-03-01",
            "`from` (2026-03-02) is after `to` (2026-03-01)",
        ),
        (
            "from=2025-01-01&to=2026-01-02",
            f"From 2025-01-01 to 2026-01-02 is 367 days; ask for at most {MAX_DAYS} "
            "at a time",
        ),
        ("from=3000-01-01", "`from` (3000-01-01) is after `to` ("),
        ("from=2000-01-01", "From 2000-01-01 to "),
    ],
)
async def test_a_window_out_of_bounds_is_a_400_saying_why(
    client: httpx.AsyncClient,
    user_headers: dict[str, str],
    admin_headers: dict[str, str],
    query: str,
    detail: str,
) -> None:
    for path, headers in (
        ("/users/me/usage/daily", user_headers),
        ("/usage/daily", admin_headers),
    ):
        response = await client.get(f"{path}?{query}", headers=headers)
        assert response.status_code == 400, response.text
        assert response.json()["detail"].startswith(detail)


@pytest.mark.parametrize(
    "query",
    [
        "from=2025-01-01&to=2025-12-31",  # 365 days
        "from=2024-01-01&to=2024-12-31",  # 366: a leap year
        "to=0001-01-05",  # the default `from` stops at the first day there is
        "from=2026-03-01&to=2026-03-01",
    ],
)
async def test_a_window_within_bounds_is_answered(
    client: httpx.AsyncClient, user_headers: dict[str, str], query: str
) -> None:
    assert await get(client, f"/users/me/usage/daily?{query}", user_headers) == []


@pytest.mark.parametrize(
    "path",
    [
        "/users/me/usage/daily?from=2026-13-01",
        "/users/me/usage/daily?to=yesterday",
        "/users/me/usage/daily?format=xlsx",
        "/usage/daily?format=xml",
        "/usage/daily?limit=0",
        "/usage/daily?limit=1001",
        "/usage/daily?user_id=0",
        "/usage/daily?model=",
        "/usage/leaderboard?days=0",
        f"/usage/leaderboard?days={MAX_DAYS + 1}",
        "/usage/leaderboard?by=cost",
        "/usage/leaderboard?limit=101",
        "/usage/leaderboard?format=pdf",
    ],
)
async def test_malformed_parameters_are_a_422_naming_them(
    client: httpx.AsyncClient, admin_headers: dict[str, str], path: str
) -> None:
    response = await client.get(path, headers=admin_headers)

    assert response.status_code == 422, response.text
    name = path.split("?")[1].split("=")[0]
    assert [error["loc"] for error in response.json()["detail"]] == [["query", name]]
