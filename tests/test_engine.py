"""Every engine askgate makes hides statement parameters: they hold questions,
answers and password hashes, which must never reach an error message or a log."""

import re
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError

from askgate.db import create_engine

ROOT = Path(__file__).resolve().parents[1]
_ENGINE_FACTORIES = re.compile(r"\b(create_async_engine|engine_from_config)\(")


async def test_errors_do_not_show_statement_parameters() -> None:
    engine = create_engine("sqlite+aiosqlite://")
    try:
        async with engine.connect() as connection:
            with pytest.raises(SQLAlchemyError) as failure:
                await connection.execute(
                    text("SELECT * FROM nowhere WHERE secret = :secret"),
                    {"secret": "hunter2-password-hash"},
                )
    finally:
        await engine.dispose()

    assert "hunter2" not in str(failure.value)
    assert "parameters hidden" in str(failure.value)


def test_every_engine_is_made_by_askgate_db() -> None:
    """The server's, the CLI's and Alembic's (src/askgate/migrations/env.py)
    engines all come from askgate.db.create_engine, which sets hide_parameters."""
    sources = list((ROOT / "src").rglob("*.py"))  # the migrations are in there
    makers = [
        path.relative_to(ROOT).as_posix()
        for path in sources
        if _ENGINE_FACTORIES.search(path.read_text())
    ]

    assert makers == ["src/askgate/db.py"]
    assert (
        "from askgate.db import Base, create_engine"
        in (ROOT / "src" / "askgate" / "migrations" / "env.py").read_text()
    )
