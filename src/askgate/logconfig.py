"""Logging set-up shared by `askgate serve` and its uvicorn workers."""

from typing import Any

from uvicorn.config import LOGGING_CONFIG


def logging_config(level: str) -> dict[str, Any]:
    """uvicorn's own config plus the `askgate` loggers at `level`.

    Passed to uvicorn, it is applied in every worker process as well.
    """
    config: dict[str, Any] = {
        **LOGGING_CONFIG,
        "formatters": {
            **LOGGING_CONFIG["formatters"],
            "askgate": {
                "format": "%(asctime)s %(levelname)s %(name)s: %(message)s",
            },
        },
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
