"""Ids are INTEGER (32 bits) on PostgreSQL, while the API takes any 63-bit id
(SQLite's). Every route given an id beyond 32 bits, in its path or its query,
answers as for an id that does not exist (404, or nothing found), never a 500:
asyncpg refuses to bind such a number as INTEGER, so each is bound as BIGINT
(askgate.db.id_param)."""

from typing import Any

import httpx
import pytest

from askgate.config import Settings
from tests.postgres_server import (
    BACKENDS,
    postgres_server,
    postgres_url,
    with_database,
)

__all__ = ["postgres_server", "postgres_url"]  # fixtures used through `with_database`

BIG = 2**62


@pytest.fixture(params=BACKENDS)
def settings(settings: Settings, request: pytest.FixtureRequest) -> Settings:
    return with_database(settings, request)


def _integer(schema: dict[str, Any]) -> bool:
    """An integer, or an optional one (`anyOf` integer or null)."""
    kinds = [schema, *schema.get("anyOf", [])]
    return any(kind.get("type") == "integer" for kind in kinds)


def _id_calls(schema: dict[str, Any]) -> list[tuple[str, str, dict[str, int]]]:
    """(method, url, query) for every operation with an integer id parameter,
    each of its ids set to BIG."""
    calls = []
    for path, operations in schema["paths"].items():
        for method, operation in operations.items():
            ids = [
                parameter
                for parameter in operation.get("parameters", [])
                if parameter["name"].endswith("id") and _integer(parameter["schema"])
            ]
            if not ids:
                continue
            url, query = path, {}
            for parameter in ids:
                if parameter["in"] == "path":
                    url = url.replace(f"{{{parameter['name']}}}", str(BIG))
                else:
                    query[parameter["name"]] = BIG
            calls.append((method.upper(), url, query))
    return calls


async def test_an_id_beyond_32_bits_is_never_a_500(
    client: httpx.AsyncClient, admin_headers: dict[str, str]
) -> None:
    schema = (await client.get("/openapi.json")).json()
    calls = _id_calls(schema)
    urls = {url for _, url, _ in calls}
    # The routes with ids today, so that none is missed silently.
    assert {
        f"/questions/{BIG}",
        f"/users/{BIG}",
        f"/api-keys/{BIG}",
        f"/users/me/api-keys/{BIG}",
        "/questions",
        "/questions/me",
        "/api-keys",
        "/usage/daily",
    } <= urls
    answers = {}
    for method, url, query in calls:
        body = {"is_active": True} if method == "PATCH" else None
        response = await client.request(
            method, url, params=query, json=body, headers=admin_headers
        )
        answers[(method, url, tuple(query))] = response.status_code
        if response.status_code == 200:
            assert response.json() == []  # nothing has such an id
    assert {
        call: code for call, code in answers.items() if code not in (200, 404)
    } == {}
