"""Logging set-up shared by `askgate serve` and its uvicorn workers: text lines by
default, or with ASKGATE_LOG_FORMAT=json one JSON object per line for log
shippers."""

import logging
from datetime import UTC, datetime
from typing import Any, Literal

import orjson
from uvicorn.config import LOGGING_CONFIG

from askgate.middleware import ACCESS_FIELDS

LogFormat = Literal["text", "json"]


class JsonFormatter(logging.Formatter):
    """One JSON object per record: `time` (UTC, ISO 8601), `level`, `logger`,
    `pid`, `message`, and `exception` when there is one. An access line (askgate's
    one line per request) carries its fields instead of its text: `method`,
    `path`, `route` (the template), `status`, `duration_ms`, `request_id`,
    `user_id` (null when anonymous).

    Newlines in a message stay inside the JSON string: one record, one line.
    """

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(
                timespec="milliseconds"
            ),
            "level": record.levelname,
            "logger": record.name,
            "pid": record.process,  # which worker of `askgate serve --workers N`
        }
        route = getattr(record, "route", None)
        if route is not None and isinstance(record.args, tuple):
            line["message"] = "request"
            line.update(zip(ACCESS_FIELDS, record.args, strict=True))
            line["route"] = route
            line["duration_ms"] = round(line["duration_ms"], 1)
            if line["user_id"] == "-":
                line["user_id"] = None
        else:
            line["message"] = record.getMessage()
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        elif record.exc_text:
            line["exception"] = record.exc_text
        return orjson.dumps(line, default=str).decode()


def logging_config(level: str, log_format: LogFormat = "text") -> dict[str, Any]:
    """uvicorn's own config plus the `askgate` loggers at `level`; with
    `log_format` json, every handler (uvicorn's too) writes JSON lines.

    Passed to uvicorn, it is applied in every worker process as well.
    """
    formatters: dict[str, Any] = {
        **LOGGING_CONFIG["formatters"],
        "askgate": {
            "format": "%(asctime)s %(levelname)s %(name)s: %(message)s",
        },
    }
    if log_format == "json":
        json_formatter = {"()": f"{__name__}.JsonFormatter"}
        formatters = dict.fromkeys(formatters, json_formatter)
    config: dict[str, Any] = {
        **LOGGING_CONFIG,
        "formatters": formatters,
        "handlers": {
            **LOGGING_CONFIG["handlers"],
            "askgate": {
                "class": "logging.StreamHandler",
                "formatter": "askgate",
                "stream": "ext://sys.stderr",
            },
        },
        "loggers": {
            **LOGGING_CONFIG["loggers"],
            "askgate": {"handlers": ["askgate"], "level": level, "propagate": False},
            "alembic": {"handlers": ["askgate"], "level": "INFO", "propagate": False},
        },
    }
    return config
