"""ASKGATE_LOG_FORMAT=json: every record one JSON object on one line; access lines
with their fields; no secret and no question in any line, as in text. The real
`askgate serve` writes JSON in tests/test_serve_metrics.py."""

import json
import logging
import sys
from typing import Any

import httpx
import pytest

from askgate.logconfig import JsonFormatter, logging_config
from tests.factories import Account

ACCESS_LOGGER = "askgate.access"
FORMATTER = JsonFormatter()


def _lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [FORMATTER.format(record) for record in caplog.records]


def _objects(caplog: pytest.LogCaptureFixture) -> list[dict[str, Any]]:
    lines = _lines(caplog)
    for line in lines:
        assert "\n" not in line
    return [json.loads(line) for line in lines]


async def test_an_access_line_carries_its_fields(
    client: httpx.AsyncClient,
    user: Account,
    user_headers: dict[str, str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger=ACCESS_LOGGER)

    mine = await client.get("/questions/999", headers=user_headers)
    anonymous = await client.get("/no/such/route")

    first, second = _objects(caplog)
    assert mine.status_code == anonymous.status_code == 404
    assert set(first) == {
        "time",
        "level",
        "logger",
        "pid",
        "message",
        "method",
        "path",
        "route",
        "status",
        "duration_ms",
        "request_id",
        "user_id",
    }
    assert first["route"] == "/questions/{question_id}"
    assert (first["method"], first["path"], first["status"]) == (
        "GET",
        "/questions/999",
        404,
    )
    assert first["user_id"] == user.id
    assert first["request_id"] == mine.headers["X-Request-ID"]
    assert first["duration_ms"] >= 0
    assert (first["level"], first["logger"]) == ("INFO", ACCESS_LOGGER)
    assert first["time"].endswith("+00:00")
    assert (second["route"], second["user_id"]) == ("unmatched", None)


def test_other_records_are_one_line_with_their_exception() -> None:
    try:
        raise ValueError("inner\nline")
    except ValueError:
        record = logging.LogRecord(
            "askgate.test",
            logging.ERROR,
            __file__,
            1,
            "first %s\nsecond",
            ("arg",),
            exc_info=sys.exc_info(),
        )

    line = FORMATTER.format(record)

    assert "\n" not in line
    body = json.loads(line)
    assert body["message"] == "first arg\nsecond"
    assert body["level"] == "ERROR"
    assert "ValueError: inner\nline" in body["exception"]


async def test_no_json_line_holds_a_password_a_hash_or_a_question(
    client: httpx.AsyncClient,
    user: Account,
    user_headers: dict[str, str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    question = "my private question about taxes"
    new_password = "second secret passphrase"

    asked = await client.post(
        "/questions", json={"content": question}, headers=user_headers
    )
    failed = await client.post(
        "/auth/token", data={"username": user.username, "password": new_password}
    )
    changed = await client.patch(
        "/users/me",
        json={"password": new_password, "current_password": user.password},
        headers=user_headers,
    )

    assert (asked.status_code, failed.status_code, changed.status_code) == (
        201,
        401,
        200,
    )
    lines = _lines(caplog)
    assert any('"route":"/users/me"' in line for line in lines)
    for line in lines:
        for secret in (user.password, new_password, "$argon2", question):
            assert secret not in line, line


def test_the_json_config_gives_every_handler_the_json_formatter() -> None:
    config = logging_config("INFO", "json")

    for formatter in config["formatters"].values():
        assert formatter == {"()": "askgate.logconfig.JsonFormatter"}
    text = logging_config("INFO")
    assert text["formatters"]["askgate"]["format"].startswith("%(asctime)s")
